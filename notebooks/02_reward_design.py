# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Reward design: one real episode, step by step
#
# **What you will learn here** (about 15 s on a laptop once the SFT manager exists; the first run also trains it,
# about 4 min on one CPU core with the default profile):
# 1. what the manager does with each chunk, and what the memory looks like after every step (an episode page
#    you can open in a browser);
# 2. why a single shared reward (OR-only) gives every step of an episode the same credit, with this episode's
#    numbers on screen, and how CSR and EARA give each step its own;
# 3. that EARA only redistributes the global score (Σ_t r_EARA(t) = r_global), and what GRPO makes of the rewards
#    (the advantages A_t of G rollouts);
# 4. where the cold-started manager stands against simple baselines before any RL.
#
# Fine-Mem gives every chunk step `t` of a memory-construction episode its own reward:
#
# * **CSR**, the chunk-level step reward: `r_chunk(t)` = accuracy on small QA tasks about chunk `t`,
#   answered on the memory right after step `t`;
# * **EARA**, evidence-anchored reward attribution: the global score is routed back to the steps
#   that *wrote* the memory items the reasoner retrieved as evidence,
#   `r_EARA(t) = (1 − β) · r_global / T + β · N_t`.
#
# Here the manager is the cold-started (SFT) offline model of this profile, trained on an
# imperfect teacher's traces if it is not there yet (a profile with `sft.enabled: false`, like the
# paper's, uses `manager.model` itself). We roll out one episode on a held-out instance
# and take every reward component apart. At the end, the SFT manager's held-out QA score is put
# beside the baselines on the same questions.

# %% tags=["parameters"]
profile = "default"
results_dir = None
data_dir = None
reuse = "auto"  # the SFT manager: "auto" reuses it only if config, seed, start model and data match; "never"; "always"
instance_index = 0  # which held-out synth_update instance to inspect
beta = 0.5

# %%
import logging

import numpy as np
import pandas as pd

from finemem_lib.agents.policy import load_manager
from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.agents.sft import policy_settings
from finemem_lib.core import rewards
from finemem_lib.data.prepared import load_prepared
from finemem_lib.episodes.rollout import rollout, settings_from_config
from finemem_lib.evaluation import evaluate_baselines, evaluate_manager, summary_table
from finemem_lib.infra.atomic import write_csv
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths, repo_relative
from finemem_lib.report.episode_tables import (
    advantage_table,
    conservation_gap,
    credit_table,
    retrieval_table,
    reward_components,
    stale_items,
    step_table,
)
from finemem_lib.report.plots import (
    plot_evidence_heatmap,
    plot_memory_growth,
    plot_reward_components,
    plot_reward_variants,
)
from finemem_lib.report.viewer import show_episode, write_episode_html
from finemem_lib.training.runner import start_model

logging.basicConfig(level=logging.WARNING, format="%(message)s")
logging.getLogger("finemem_lib").setLevel(logging.INFO)
cfg = load_profile(profile)
paths = profile_paths(cfg, results_dir, data_dir)
w1, w2 = cfg["rewards"]["w1"], cfg["rewards"]["w2"]
test = load_prepared(paths.data, "test")
manager = load_manager(start_model(cfg, paths, reuse_sft=reuse), **policy_settings(cfg))  # the profile's prompts
reasoner = build_reasoner(cfg.get("reasoner"))

# %% [markdown]
# ## One episode of the SFT manager
# A held-out instance whose facts change over time (so UPDATE matters). The manager sees each chunk
# as numbered sentences with the most recent memory items. In the default profile's `review` op style it
# answers with one line per sentence, `N. sentence => keep | skip | update <id>` (the harness writes the
# restated sentence, the manager the decision); the paper profile answers with tool calls.

# %%
candidates = [inst for inst in test if inst.source == "synth_update"] or test
instance = candidates[instance_index % len(candidates)]
episode = rollout([instance], manager, reasoner, settings_from_config(cfg, training=False), seed=cfg["seed"])[0][0]
T = episode.T
print(f"instance {instance.id}: {T} chunks, {len(instance.questions)} global questions")
print("first step's completion:\n" + episode.steps[0].text)
steps = step_table(episode)
steps

# %%
fig = plot_memory_growth(steps, paths.figures / "02_memory_growth.png")
print("final memory:\n" + episode.memory.render(None))

# %% [markdown]
# ## A stale value beside its update
# In `synth_update` a later sentence restates a fact with a new value ("These days Ada works at ...") and the
# question asks for the latest one. A manager that INSERTs the new sentence instead of UPDATEing the old item
# keeps both: BM25 may then retrieve the stale one, and the answer is wrong although the fact *was* stored.
# This is what UPDATE is for, and what the rewards have to teach. The pairs in this episode's memory:

# %%
stale = stale_items(episode, instance)
if stale.empty:
    print("no fact is stored twice in this episode's memory (try another instance_index)")
else:
    print(f"{stale['key'].nunique()} fact(s) stored with an old and a new value; current=False is the stale one")
stale

# %% [markdown]
# ## What each global question retrieved (BM25 top-k), and the evidence → step map

# %%
retrieved = retrieval_table(episode)
fig = plot_evidence_heatmap(
    episode.evidence_steps, T, list(episode.scores), path=paths.figures / "02_evidence_heatmap.png"
)
retrieved

# %% [markdown]
# ## One shared reward gives every step the same credit
# OR-only (Mem-α's reward without its content term) adds the episode's global score r_global to *every* step:
# a step that stored the evidence and a step that stored a distractor get the same global credit, so the policy
# cannot tell which decision earned it. EARA hands the same total out by evidence instead, and CSR adds each
# step's own chunk-QA accuracy. The parts of r_t for this episode:

# %%
credit = credit_table(episode, beta=beta, w1=w1, w2=w2)
print(
    f"r_global = {episode.r_global:.3f}: OR-only gives {episode.r_global:.3f} to each of the {T} steps "
    f"({T * episode.r_global:.3f} in total); EARA at β={beta} gives "
    + ", ".join(f"{v:.3f}" for v in credit["r_EARA (+EARA, Fine-Mem)"])
    + f" (total {credit['r_EARA (+EARA, Fine-Mem)'].sum():.3f})"
)
credit.round(3)

# %% [markdown]
# ## r_chunk, N_t and r_EARA at β = 0 / 0.5 / 1
# β = 0 spreads the global reward uniformly; β = 1 gives each step exactly its evidence
# contribution N_t. Whenever every question retrieved at least one item, Σ_t r_EARA(t) = r_global.

# %%
components = reward_components(episode)
for b in (0.0, 0.5, 1.0):
    gap = conservation_gap(episode, b)
    total = components[f"eara_beta={b}"].sum()
    print(f"β={b}: Σ r_EARA = {total:.4f}, r_global = {episode.r_global:.4f}, gap {gap:.1e}")
    if all(len(s) > 0 for s in episode.evidence_steps):
        assert gap < 1e-9
fig = plot_reward_components(components, path=paths.figures / "02_reward_components.png")
components.round(3)

# %% [markdown]
# ## The four reward variants side by side
# OR-only gives every step the full global reward; +CSR adds each step's own chunk accuracy; +EARA
# replaces the global reward by its evidence-anchored share; Fine-Mem uses both. The format reward
# r_fmt (close to 1 for a manager that learned the call format) and the compression term are the same in
# every variant, so they are drawn apart: the right panel shows only what differs.

# %%
variants = {v: episode.step_rewards(v, beta=beta, w1=w1, w2=w2) for v in rewards.VARIANTS}
shared = episode.r_fmt + w2 * episode.r_comp
fig = plot_reward_variants(variants, shared, path=paths.figures / "02_reward_variants.png")
{v: np.round(r, 3).tolist() for v, r in variants.items()}

# %% [markdown]
# ## What GRPO makes of it: advantages over G rollouts
# GRPO samples G episodes of the same instance and, at each step t, compares the G rollouts' r_t:
# A_t = (r_t − mean) / std over the group. Under OR-only the rollouts' r_global differences land on all of
# their steps alike; under Fine-Mem a rollout's steps can get advantages of different signs.

# %%
group = rollout([instance], manager, reasoner, settings_from_config(cfg, training=True), seed=cfg["seed"])[0]
advantages = advantage_table(group, ("or_only", "finemem"), beta=beta, w1=w1, w2=w2, mode=cfg["rewards"]["group_mode"])
advantages.round(2)

# %% [markdown]
# ## Everything on one page: the episode viewer
# One self-contained HTML file per episode (no network, no server): per step the chunk, the operations and
# whether each executed, the chunk QAs, the memory after the step (updates show the value they replaced), and
# colour-coded r_chunk, N_t, r_t and A_t per variant; per global question the retrieved items and the step
# that wrote each. Below: rollout 0 of the sampled group (it has advantages); the greedy episode above is
# written next to it. Open the files in any browser.

# %%
name = instance.id.replace("/", "_")
episode_kwargs = {"beta": beta, "w1": w1, "w2": w2, "mode": cfg["rewards"]["group_mode"]}
greedy_page = write_episode_html(
    paths.results / "episodes" / f"02_{name}_greedy.html", episode, instance, **episode_kwargs
)
group_page = write_episode_html(
    paths.results / "episodes" / f"02_{name}_rollout0.html", group[0], instance, group=group, **episode_kwargs
)
print(f"episode pages: {repo_relative(greedy_page)}\n               {repo_relative(group_page)}")
show_episode(group[0], instance, group=group, **episode_kwargs)

# %% [markdown]
# ## Where the SFT start stands: held-out QA against the baselines
# One greedy episode per held-out instance, every global question, the same reasoner and BM25
# top-k for every method.

# %%
scores = evaluate_manager("sft_manager", manager, test, reasoner, cfg, seed=cfg["seed"])
baselines = evaluate_baselines(test, reasoner, cfg)
table = summary_table(pd.concat([scores, baselines]))
write_csv(table, paths.tables / "02_sft_vs_baselines.csv")
print(f"SFT manager format rate on held-out episodes: {scores['format_rate'].mean():.3f}")
table

# %% [markdown]
# ## Things to try
# * `beta = 1.0` (parameters cell): r_EARA becomes exactly N_t, so a step that wrote no retrieved evidence gets
#   no global credit at all; look at the advantage table for steps whose sign flips.
# * `instance_index = 1, 2, ...`: find an episode with a stale pair (the "stale value" table) and open its page:
#   the stale item is usually the one BM25 retrieved for the wrong answer.
# * In the profile, set `rewards.group_mode: episode` (Mem-α's normalisation over all G·T values) and compare the
#   advantage table: steps are no longer compared only with the same step of the other rollouts.
