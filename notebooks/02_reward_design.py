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
instance_index = 0  # which held-out synth_update instance to inspect
beta = 0.5

# %%
import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from finemem_lib import rewards
from finemem_lib.agents.policy import load_manager
from finemem_lib.agents.reasoner import build_reasoner
from finemem_lib.agents.sft import policy_settings
from finemem_lib.config import load_profile
from finemem_lib.data.prepared import load_prepared
from finemem_lib.episode_tables import conservation_gap, retrieval_table, reward_components, step_table
from finemem_lib.evaluation import evaluate_baselines, evaluate_manager, summary_table
from finemem_lib.paths import profile_paths
from finemem_lib.plots import plot_evidence_heatmap, plot_step_series, save
from finemem_lib.rollout import rollout, settings_from_config
from finemem_lib.training.runner import start_model

logging.basicConfig(level=logging.WARNING, format="%(message)s")
logging.getLogger("finemem_lib").setLevel(logging.INFO)
cfg = load_profile(profile)
paths = profile_paths(cfg, results_dir, data_dir)
w1, w2 = cfg["rewards"]["w1"], cfg["rewards"]["w2"]
test = load_prepared(paths.data, "test")
manager = load_manager(start_model(cfg, paths), **policy_settings(cfg))  # prompt settings from the profile
reasoner = build_reasoner(cfg.get("reasoner"))

# %% [markdown]
# ## One episode of the SFT manager
# A held-out instance whose facts change over time (so UPDATE matters). The manager sees each chunk
# as numbered sentences with the most recent memory items, and answers with tool calls.

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
fig, ax = plt.subplots(figsize=(6, 3))
sns.lineplot(steps, x="step", y="memory_items", marker="o", ax=ax, label="items")
ax2 = ax.twinx()
sns.lineplot(steps, x="step", y="memory_tokens", marker="s", color="C1", ax=ax2, label="tokens")
ax.set_title("Memory growth over the episode")
fig = save(fig, paths.figures / "02_memory_growth.png")
print("final memory:\n" + episode.memory.render(None))

# %% [markdown]
# ## What each global question retrieved (BM25 top-k), and the evidence → step map

# %%
retrieved = retrieval_table(episode)
fig = plot_evidence_heatmap(
    episode.evidence_steps, T, list(episode.scores), path=paths.figures / "02_evidence_heatmap.png"
)
retrieved

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
fig = plot_step_series(
    {name: components[name] for name in components.columns if name != "r_fmt"},
    "Reward components per step",
    path=paths.figures / "02_reward_components.png",
)
components.round(3)

# %% [markdown]
# ## The four reward variants side by side
# OR-only gives every step the full global reward; +CSR adds each step's own chunk accuracy; +EARA
# replaces the global reward by its evidence-anchored share; Fine-Mem uses both.

# %%
variants = {v: episode.step_rewards(v, beta=beta, w1=w1, w2=w2) for v in rewards.VARIANTS}
fig = plot_step_series(variants, "Step reward by variant", path=paths.figures / "02_reward_variants.png")
{v: np.round(r, 3).tolist() for v, r in variants.items()}

# %% [markdown]
# ## Where the SFT start stands: held-out QA against the baselines
# One greedy episode per held-out instance, every global question, the same reasoner and BM25
# top-k for every method.

# %%
scores = evaluate_manager("sft_manager", manager, test, reasoner, cfg, seed=cfg["seed"])
baselines = evaluate_baselines(test, reasoner, cfg)
table = summary_table(pd.concat([scores, baselines]))
table.to_csv(paths.tables / "02_sft_vs_baselines.csv")
print(f"SFT manager format rate on held-out episodes: {scores['format_rate'].mean():.3f}")
table
