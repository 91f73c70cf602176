# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Does fine-grained credit help? Credit quality, learning curves and ablations
#
# **What you will learn here** (about 2 min on a laptop with the default profile; reading the long
# profile's committed study takes seconds): why OR-only gives every step of a rollout the same credit
# and Fine-Mem does not, seen on advantage matrices; how well each variant's advantage tracks what a
# step was really worth (a measure no published work reports); and what training with each variant
# gave, with intervals. Needs notebook 02's SFT start.
#
# Fine-Mem's argument is about **credit**: with the final score alone (OR-only), every step of a
# rollout gets the same advantage, so a step that stored the fact a later question needs is credited
# exactly like a step that stored a lure. CSR and EARA are meant to give each step an advantage that
# follows what that step was worth. This notebook measures that directly, then shows what training
# with each variant gave.
#
# 1. **Advantage matrices**: A_t (G rollouts x T steps) of one group under each variant, next to the
#    *true marginal value* of each step.
# 2. **Credit quality**: the true marginal value of step t is the change in r_global when the items
#    that step wrote are removed from the final memory (leave-one-step-out; the reader re-answers,
#    nothing is generated). Per variant: Spearman(A_t, value) over the steps of many groups of SFT-start
#    rollouts, with a bootstrap interval over groups. Independent of any training run.
# 3. **The study** (`python -m finemem_lib.training.study --profile long --plan configs/study_long.yaml`):
#    learning curves with bands, held-out QA and memory with intervals over instances and seeds, the
#    paired difference to OR-only, learning efficiency and the ablations. This notebook reads the
#    finished runs from `results/runs/05_*` and trains nothing unless `train = True`.
#
# The long-horizon profile (`configs/long.yaml`): 16 chunks per instance, asked facts drawn chunk by
# chunk across the whole episode, lures that share the questions' words (a lure kept in memory can
# win retrieval and give a wrong answer), and a compression weight that makes memory cost tokens.

# %% tags=["parameters"]
profile = "long"
results_dir = None
data_dir = None
train: bool = False  # True: run (or resume) the study plan from here; False: read the finished runs only
plan = None  # study plan YAML; None: configs/study_<profile>.yaml when it exists
credit_instances = 6  # training instances rolled out here when the credit table is missing (the command: all)
credit_seeds = [0]

# %%
import logging
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from finemem_lib.infra.config import load_profile, repo_root
from finemem_lib.infra.paths import profile_paths, repo_relative
from finemem_lib.training import study

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
for noisy in ("bm25s", "httpx"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

cfg = load_profile(profile)
paths = profile_paths(cfg, results_dir, data_dir)
plan_file = Path(plan) if plan else repo_root() / "configs" / f"study_{cfg['name']}.yaml"
plan_shown = repo_relative(plan_file) if plan_file.is_file() else "none"
print(f"profile {cfg['name']}: results in {repo_relative(paths.results)}; study plan: {plan_shown}")

# %% [markdown]
# ## Credit quality on rollouts of the SFT start
#
# Read from `results/tables/05_credit_*.csv` when they exist (written by
# `python -m finemem_lib.training.study --profile long --credit`); otherwise measured here on the
# profile's training instances (G rollouts each at the training temperature; A_t from the training
# share of global questions, the marginal values from all of them).

# %%
steps_file = paths.tables / "05_credit_steps.csv"
if steps_file.is_file():
    steps = pd.read_csv(steps_file)
    quality = pd.read_csv(paths.tables / "05_credit_quality.csv")
    differences = None  # computed below from the steps table
else:
    measured = study.measure_credit_quality(cfg, paths, max_instances=credit_instances, seeds=credit_seeds)
    steps, quality, differences = measured["steps"], measured["quality"], measured["differences"]
print(f"{steps['group'].nunique()} groups, {len(steps)} steps; share of steps with a non-zero value: "
      f"{(steps['value'] != 0).mean():.2f}")  # fmt: skip
quality[quality["source"] == "all"].round(3)

# %% [markdown]
# ### Advantage matrices of one group
#
# Left: the leave-one-step-out value of each step of each rollout. OR-only gives (nearly) one value per
# rollout: its advantage is constant along a row except for the format term. Fine-Mem's changes along
# the row with the evidence each step wrote and its chunk QA.

# %%
from finemem_lib.report.ablation_plots import plot_advantage_matrices, plot_credit_quality

matrices, values, group_id = study.advantage_matrices_from_steps(steps)
shown = {k: matrices[k] for k in ("or_only", "csr", "eara", "finemem") if k in matrices}
fig = plot_advantage_matrices(shown, values, path=paths.figures / "05_advantage_matrices.png")
fig.suptitle(f"group {group_id}", y=1.03)

# %%
pooled = quality[quality["source"] == "all"]
plot_credit_quality(pooled[pooled["variant"].isin(study.MAIN_VARIANTS)], path=paths.figures / "05_credit_quality.png")
quality.pivot_table(index="variant", columns="source", values="spearman", sort=False).round(3)

# %% [markdown]
# Each variant against OR-only on the same steps (a paired bootstrap: every draw resamples whole groups
# once and scores both advantages on them), written to `tables/05_credit_differences.csv`.

# %%
from finemem_lib.episodes.credit import paired_credit_differences
from finemem_lib.infra.atomic import write_csv

if differences is None:
    others = [c.removeprefix("A_") for c in steps.columns if c.startswith("A_") and c != "A_or_only"]
    differences = paired_credit_differences(steps, others, reference="or_only")
    write_csv(differences, paths.tables / "05_credit_differences.csv", index=False)
differences.round(3)

# %% [markdown]
# ### Credit quality of Fine-Mem's knobs
#
# The same measure for the ablation points of Fine-Mem, on the same rollouts (no training): EARA's
# β (0: spread the final score uniformly over steps; 1: evidence only), CSR's weight w1 and group
# normalisation per episode instead of per step.

# %%
knobs = pooled[pooled["variant"].str.startswith("finemem")]
plot_credit_quality(knobs, path=paths.figures / "05_credit_ablations.png", title="Fine-Mem's knobs")
knobs.round(3)

# %% [markdown]
# ### Other systems' credit schemes on the same rollouts
#
# Each RL memory manager routes the final score to its steps in its own way; here they share one memory,
# one reader and these rollouts (docs/credit_schemes.md gives each formula, its source file and what had
# to change for a flat memory written chunk by chunk):
#
# - `gigpo` (mem-alpha-areal): discounted returns of the per-step scores, normalised per step index, plus
#   the normalised trajectory score; `gigpo_csr` puts the chunk-QA reward in the per-step score.
# - `adrpo` (MemBuilder): the chunk-QA reward per step, its advantage multiplied by α = 4 for the steps
#   that wrote retrieved evidence (`adrpo_dominant`: only the most-retrieved step).
# - `hindsight` (Mem-T): each query's score goes whole to the steps that wrote its retrieved items.
# - `broadcast_traj` (a MemAgent port): OR-only's reward normalised per rollout, then copied to every step.
#
# Read from `tables/05_credit_quality_schemes.csv` when present (written by
# `python -m finemem_lib.training.credit_schemes_run --profile long --seeds 0 1`), otherwise measured here
# on the same instances and seeds as the credit table above. Right panel: each scheme minus OR-only and
# minus Fine-Mem on the same steps (paired bootstrap over groups).

# %%
from finemem_lib.report.credit_schemes_plots import plot_credit_schemes
from finemem_lib.training import credit_schemes_run

schemes_file = paths.tables / "05_credit_quality_schemes.csv"
if schemes_file.is_file():
    scheme_quality = pd.read_csv(schemes_file)
    scheme_differences = pd.read_csv(paths.tables / "05_credit_quality_differences.csv")
else:
    measured = credit_schemes_run.measure_credit_schemes(cfg, paths, max_instances=credit_instances, seeds=credit_seeds)
    scheme_quality, scheme_differences = measured["quality"], measured["differences"]
pooled_schemes = scheme_quality[scheme_quality["source"] == "all"]
plot_credit_schemes(pooled_schemes, scheme_differences, path=paths.figures / "05_credit_quality_schemes.png")
scheme_quality.pivot_table(index="variant", columns="source", values="spearman", sort=False).round(3)

# %%
scheme_differences.pivot_table(index="variant", columns="reference", values=["diff", "lo", "hi"], sort=False).round(3)

# %% [markdown]
# ## The study: learning curves, held-out scores with intervals, efficiency, ablations

# %%
runs = study.load_plan(plan_file, cfg) if plan_file.is_file() else []
if train and runs:
    study.run_plan(
        cfg, runs, paths, command=f"papermill notebooks/05_ablations.ipynb -p profile {profile} -p train True"
    )
files = study.write_study_figures(cfg, runs, paths) if runs else {}
if not files:
    print(
        "The study has not been run for this profile (no finished run in results/runs/05_*). Run it with\n"
        f"  python -m finemem_lib.training.study --profile {cfg['name']} --plan configs/study_{cfg['name']}.yaml\n"
        "or execute this notebook with train=True. Only the credit measure and the advantage matrices are shown."
    )

# %% [markdown]
# ### Learning curves (held-out QA every few steps; mean over seeds, band = 95 % over seeds)
#
# "OR-only stops rising" is judged by `study.plateau`: its mean held-out curve gains less than 0.01
# over its last two evaluations compared with the best value before them.

# %%
for key in ("curves_figure", "memory_curves_figure"):
    if key in files:
        display(Image(filename=files[key]))
if "plateau" in files:
    display(pd.read_csv(files["plateau"]))

# %% [markdown]
# ### Held-out QA and memory length on all held-out instances (95 % bootstrap over instances and seeds)
#
# `diff` is the paired difference to OR-only (instances resampled jointly, seeds independently).
# The paper's ablation (average performance / memory): OR-only 0.627 / 92.4K, +CSR 0.639 / 86.2K,
# +EARA 0.622 / 60.7K, Fine-Mem 0.663 / 79.1K.

# %%
if "heldout" in files:
    display(Image(filename=files["heldout_figure"]))
    display(pd.read_csv(files["heldout"]).round(3))

# %% [markdown]
# ### Learning efficiency: the first step at which each variant reaches OR-only's final held-out score

# %%
if "efficiency" in files:
    if "efficiency_figure" in files:
        display(Image(filename=files["efficiency_figure"]))
    display(pd.read_csv(files["efficiency"]))

# %% [markdown]
# ### Ablations (Fine-Mem; each against its own base point trained as long)
#
# β ∈ {0, 0.25, 0.5, 0.75, 1}, w1 ∈ {0, 0.25, 0.5, 1}, group normalisation per step vs per episode,
# retrieval top-k ∈ {1, 2, 5}. The β runs are also scored on notebook 04's out-of-distribution
# benchmark (the paper finds β = 1 worst out of distribution).

# %%
for group in study.ABLATION_GROUPS:
    for key in (f"ablation_{group}", f"ablation_{group}_ood"):  # _ood: notebook 04's out-of-distribution benchmark
        if key in files:
            display(Image(filename=files[f"{key}_figure"]))
            display(pd.read_csv(files[key]).round(3))

# %% [markdown]
# ### Looking at single episodes
#
# One group of SFT-start rollouts on the first training instance, as an episode page: per chunk step the
# operations and whether each executed, the memory after the step, and r_chunk, N_t, r_t and A_t under
# each variant; per global question the retrieved items and the step that wrote each. Compare the A_t rows
# of OR-only and Fine-Mem for the step that wrote the evidence of a question.

# %%
from finemem_lib.agents.policy import load_manager
from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.agents.sft import policy_settings
from finemem_lib.episodes.rollout import rollout, settings_from_config
from finemem_lib.report.viewer import show_episode, write_episode_html
from finemem_lib.training.runner import load_training_data, start_model

instance = load_training_data(cfg, paths)["train"][0]
policy = load_manager(start_model(cfg, paths), **policy_settings(cfg))
group = rollout(
    [instance], policy, build_reasoner(cfg.get("reasoner")), settings_from_config(dict(cfg), training=True),
    seed=int(cfg["seed"]),
)[0]  # fmt: skip
rewards_cfg = cfg["rewards"]
page_kwargs = {"beta": rewards_cfg["beta"], "w1": rewards_cfg["w1"], "w2": rewards_cfg["w2"],
               "mode": rewards_cfg["group_mode"]}  # fmt: skip
page = paths.results / "episodes" / f"05_{instance.id.replace('/', '_')}_rollout0.html"
write_episode_html(page, group[0], instance, group=group, title=f"SFT start: {instance.id}", **page_kwargs)
print(f"episode page: {repo_relative(page)}")
show_episode(group[0], instance, group=group, **page_kwargs)

# %% [markdown]
# ## Things to try
#
# - Set `credit_instances = 24` (or run `python -m finemem_lib.training.study --profile long --credit`):
#   the intervals of the credit-quality table narrow; does Fine-Mem's lead over OR-only survive?
# - Change `rewards.beta` in the profile to 0 and to 1 and rerun the credit measure: EARA's share of the
#   credit moves from uniform spreading to evidence only. Which β tracks the marginal values best?
# - In `finemem_lib.episodes.credit_schemes_study.profile_schemes`, try GiGPO with γ = 1 or λ = 0, or
#   ADRPO with α = 1 (no attribution): which part of each scheme carries its credit quality?
# - With `profile = "long"` and `train = True`, the study plan resumes run by run; watch the learning
#   curves fill in and whether OR-only's curve has stopped rising (`study.plateau`).
