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
# # 03 · Step-credit GRPO: training the manager with OR-only, +CSR, +EARA and Fine-Mem rewards
#
# **What you will learn here** (default profile on a laptop: about 5.5 min the first time, to train OR-only and
# Fine-Mem for 12 optimizer steps each on the CPU; seconds when the finished runs are reused):
# 1. how GRPO is turned into *step-credit* GRPO: a training sample is one chunk step with its own advantage A_t,
#    and one update computed by hand (ratio x A_t, clipped), equal to the trainer's loss;
# 2. how to read the learning curves of the reward variants trained from the same SFT start and seeds;
# 3. whether Fine-Mem beat OR-only on held-out questions here, and why a gap smaller than the seed spread
#    says nothing on a miniature this small.
#
# The manager reads a long input chunk by chunk; at step $t$ it sees only the chunk and its memory
# (a fresh context) and emits memory operations. GRPO rolls out $G$ whole episodes per instance and,
# for every chunk step, compares the $G$ rollouts at that step:
# $A_{t,i} = (r_{t,i} - \mathrm{mean}_i\, r_{t,\cdot}) / (\mathrm{std}_i\, r_{t,\cdot} + \epsilon)$.
# **A training sample is one chunk step**: its prompt is that step's own context, its completion the
# step's operations, and every completion token gets $A_t$ (prompt tokens are never scored).
#
# The four reward variants differ only in $r_t$ (notebook 02 shows them on one episode):
#
# | variant | $r_t$ |
# |---|---|
# | OR-only (Mem-α without content reward) | $r_{global} + r_{fmt}(t) + w_2 r_{comp}$ |
# | +CSR | OR-only $+\, w_1 r_{chunk}(t)$ |
# | +EARA | $(1-\beta) r_{global}/T + \beta N_t + r_{fmt}(t) + w_2 r_{comp}$ |
# | Fine-Mem | +EARA $+\, w_1 r_{chunk}(t)$ |
#
# The trainer is TRL's `GRPOTrainer` with the rollout and the sample bookkeeping replaced
# (`finemem_lib.training.grpo`); loss type, clipping, KL to the SFT start, gradient accumulation,
# logging and checkpointing are TRL's. Every variant starts from the same SFT checkpoint with the same
# seeds. The same runs can be launched from a shell (several processes with `accelerate launch`):
# `python -m finemem_lib.training.cli --profile default --report`.

# %% tags=["parameters"]
profile = "default"
results_dir = None
data_dir = None
reuse = "auto"  # finished runs: "auto" reuses only identical ones (same config, seed, start weights, data)

# %%
import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Image, display

from finemem_lib.agents.sft import sft_stats
from finemem_lib.episodes.rollout import settings_from_config
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths, repo_relative
from finemem_lib.training.config import training_settings
from finemem_lib.training.diagnostics import plot_diagnostics
from finemem_lib.training.runner import heldout_table, load_training_data, run_study, start_model, write_study_report
from finemem_lib.training.samples import step_samples
from finemem_lib.training.study_tables import curves_table
from finemem_lib.training.update_by_hand import (
    completion_logps,
    gradient_gap,
    hand_trainer,
    micro_batch,
    move_policy,
    rollout_group,
)

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
for noisy in ("bm25s", "httpx"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

cfg = load_profile(profile)
paths = profile_paths(cfg, results_dir, data_dir)
settings = training_settings(cfg)
rollout_settings = settings_from_config(cfg, training=True)
data = load_training_data(cfg, paths)
print(f"profile {cfg['name']}: {len(data['train'])} training instances, {len(data['test'])} held-out instances")

# %% [markdown]
# ## The starting point: the SFT manager
#
# A small model cold-started on a deliberately imperfect teacher (it misses facts, keeps some
# distractors, rarely updates), so that RL has room to improve: the same SFT manager notebook 02
# evaluated (trained here if it is missing), shared by every variant and seed. (A profile with
# `sft.enabled: false`, like the paper's, starts from `manager.model` directly.)

# %%
start = start_model(cfg, paths)
try:
    stats = {k: v for k, v in sft_stats(start).items() if k in ("parameters", "examples", "epochs", "train_wall_s")}
except FileNotFoundError:
    stats = {}
pd.Series({"start model": repo_relative(start), **stats}, name="GRPO start")

# %% [markdown]
# ## Settings of this profile

# %%
pd.Series(
    {
        "variants": ", ".join(settings.variants),
        "seeds": ", ".join(map(str, settings.seeds)),
        "G (rollouts per instance)": rollout_settings.num_generations,
        "global-question ratio (train)": rollout_settings.question_ratio,
        "beta (EARA), w1 (CSR), w2 (compression)": f"{settings.beta}, {settings.w1}, {settings.w2}",
        "group mode": settings.group_mode,
        "instances per step": settings.instances_per_step,
        "optimizer steps": settings.max_steps if settings.max_steps > 0 else f"{settings.epochs} epochs",
        "learning rate": settings.learning_rate,
        "loss type, clip, KL": f"{settings.loss_type}, {settings.epsilon}, {settings.kl_beta}",
        "sampling temperature": rollout_settings.sampling.temperature,
    },
    name=cfg["name"],
)

# %% [markdown]
# ## One GRPO update by hand
#
# Before the trainer runs for many steps, here is one update computed by hand and checked against the
# trainer's own loss on the same micro-batch. A group of $G$ episodes of one instance gives $G \times T$
# step samples; each sample's completion tokens all carry its step's advantage $A_t$. For a completion token
# $k$ of a sample, with the ratio $\rho_k = \pi_\theta(o_k \mid \cdot) / \pi_{old}(o_k \mid \cdot)$, the loss is
#
# $\ell_k = -\min\big(\rho_k A_t,\ \mathrm{clip}(\rho_k, 1-\epsilon, 1+\epsilon) A_t\big)
#   + \beta_{KL}\,\rho_k\,(e^{d_k} - d_k - 1)$, with $d_k = \log \pi_{ref}(o_k) - \log \pi_\theta(o_k)$
#
# (the second term estimates the KL divergence to the SFT start, weighted by $\rho_k$ as TRL does with
# `use_bias_correction_kl`, its default), averaged over each sample's completion tokens, then over the
# samples of the micro-batch, and divided by the number of micro-batches of a round (TRL's `grpo` loss).
# Right after a rollout $\pi_\theta = \pi_{old}$ and $\rho_k = 1$: the clip only acts on later passes over
# the same round (`num_iterations` > 1). To show it act, the cell first moves the policy a short way down
# the loss, as a first update would, until the ratio of a few tokens leaves $[1-\epsilon, 1+\epsilon]$.
# (When all $G$ rollouts of every group tried score alike, as with a random-weight manager, the advantages
# are zero, the policy does not move and the loss is the KL term alone: the check still holds.)

# %%
trainer = hand_trainer(cfg, paths, data, start, "finemem")  # the trainer a Fine-Mem run builds, not trained
spec = trainer.args.reward  # the reward spec it carries: variant, beta, w1, w2, group mode
group = rollout_group(trainer, data["train"][:16])  # the G episodes of the first instance whose rollouts differ
r = np.stack([episode.step_rewards(spec) for episode in group])  # [G, T] step rewards r_t
axis = 0 if spec.group_mode == "step" else None  # step: normalise each step over the G rollouts
A = (r - r.mean(axis, keepdims=True)) / (r.std(axis, ddof=1, keepdims=True) + 1e-6)
samples, credit = step_samples([group], spec)  # one sample per chunk step, carrying its A_t
assert np.allclose(A, credit.advantages[0], atol=1e-6), "advantages differ from the trainer's"
batch = micro_batch(trainer, samples)  # one micro-batch, padded and masked as the trainer does
old = completion_logps(trainer.model, batch, trainer.temperature).detach()  # log pi_old: the policy that sampled
step_length, clipped = move_policy(trainer, batch, old)  # as after a first update on this round
logp = completion_logps(trainer.model, batch, trainer.temperature)  # log pi_theta
ratio, A_t = torch.exp(logp - old), batch["advantages"][:, None]
surrogate = torch.min(ratio * A_t, ratio.clamp(1 - trainer.epsilon_low, 1 + trainer.epsilon_high) * A_t)
d = batch.get("ref_per_token_logps", logp) - logp  # no reference model when the KL coefficient is 0
kl = (torch.exp(d) - d - 1) * (ratio if trainer.args.use_bias_correction_kl else 1.0)  # k3, importance-weighted
per_token = -surrogate + trainer.beta * kl
mask = batch["completion_mask"]
loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean() / trainer.current_gradient_accumulation_steps
trainer_loss = trainer._compute_loss(trainer.model, {**batch, "old_per_token_logps": old})  # TRL's own loss
torch.testing.assert_close(loss, trainer_loss, rtol=1e-3, atol=1e-6)
gap = gradient_gap(loss, trainer_loss, trainer.model)
assert gap < 1e-2, f"the gradients differ by {gap:.1e}"
pd.Series(
    {
        "G x T step samples": f"{r.shape[0]} x {r.shape[1]}",
        "samples in the micro-batch": int(mask.shape[0]),
        "completion tokens": int(mask.sum()),
        "A_t, min / max": f"{A.min():+.3f} / {A.max():+.3f}",
        "ratio, min / max": f"{ratio[mask.bool()].min():.3f} / {ratio[mask.bool()].max():.3f}",
        "tokens clipped": f"{clipped:.1%}",
        "loss by hand": f"{loss.item():.6f}",
        "loss of the trainer": f"{trainer_loss.item():.6f}",
        "gradients, relative difference": f"{gap:.1e}",
    },
    name="one update",
)

# %%
del trainer  # the hand-made update changed its model; every run below starts again from the SFT manager

# %% [markdown]
# ## Train every variant from the same start
#
# Each run logs, per optimizer step, the reward components of its rollouts, the format rate, the
# memory length and (every few steps, greedy, on held-out instances) the global QA score. Run logs
# with config, seed, package versions and git revision go to `results/runs/03_<run>/`; a run whose
# log already matches this configuration is reused, and a run that was interrupted resumes from its
# last checkpoint.

# %%
results = run_study(cfg, paths, data=data, sft_model=start, reuse=reuse)
command = f"papermill notebooks/03_grpo_training.ipynb -p profile {profile}"
files = write_study_report(cfg, paths, results, command)
table = heldout_table(results)
table

# %% [markdown]
# ## Learning curves
#
# Top row: the variant's own step reward, then its components on the training rollouts: global QA
# (the 20 % question subsample), chunk QA accuracy and compression. Bottom row: format rate, memory
# length, and the held-out global QA and memory length (greedy rollouts on test instances). A line is
# the mean over seeds, the band the spread. Runs with the same seed see the same instances in the
# same order, so the training curves of different variants move together: compare them step by step.

# %%
display(Image(filename=files["curves_figure"]))

# %% [markdown]
# ## What drives the gradient
#
# Per optimizer round: the spread within GRPO groups of each reward term and how closely the advantages follow
# it, the share of groups whose rewards are all equal (no gradient), the store rates of fact and filler
# sentences, and UPDATEs per episode. When the format term's spread dominates the QA terms', the update mostly
# teaches "emit valid calls" (docs/miniature.md).

# %%
diagnostics_figure = paths.figures / f"03_{cfg['name']}_diagnostics.png"
plt.close(plot_diagnostics(curves_table(results), path=diagnostics_figure))
display(Image(filename=str(diagnostics_figure)))

# %% [markdown]
# ## Held-out global QA and memory length after training
#
# A diamond is the mean over seeds (with its spread), a dot one seed, the dashed line the SFT start. The y-axes
# are zoomed to the data, so a small gap looks large: compare it with the spread, not with the axis.

# %%
display(Image(filename=files["heldout_figure"]))

# %%
summary = table.groupby("variant")[["qa_initial", "qa_final", "memory_tokens_initial", "memory_tokens_final"]].agg(
    ["mean", "std"]
)
summary.round(3)

# %% [markdown]
# ## Reading the result
#
# The cell below states, from the numbers above, whether Fine-Mem ended with a higher held-out global
# QA than OR-only on this miniature. The miniature is small (a few-million-parameter manager, a few
# dozen optimizer steps, an offline reader): read a difference smaller than the spread over seeds as
# no difference. The paper's effect sizes are about a few points of QA on far larger models.

# %%
final = table.groupby("variant")["qa_final"].agg(["mean", "std", "count"])
if {"or_only", "finemem"} <= set(final.index):
    delta = final.loc["finemem", "mean"] - final.loc["or_only", "mean"]
    seeds = int(final["count"].min())
    spread = final["std"].fillna(0.0).max()
    if seeds < 2:
        verdict = "measured on one seed only, so this delta has no spread to compare with (see the full profile)"
    elif abs(delta) <= spread:
        verdict = "within the seed spread: no difference on this miniature"
    else:
        verdict = "higher than OR-only" if delta > 0 else "lower than OR-only"
    print(
        f"Fine-Mem held-out QA {final.loc['finemem', 'mean']:.3f} vs OR-only {final.loc['or_only', 'mean']:.3f} "
        f"(delta {delta:+.3f}; {seeds} seed(s) per variant, largest std {spread:.3f}): {verdict}."
    )

# %% [markdown]
# ## Things to try
# * Train all four variants: `python -m finemem_lib.training.cli --profile default --variant or_only csr eara finemem
#   --report` (or set `training.variants` in a copy of the profile) and look for +CSR's higher chunk-QA curve.
# * Give the runs more room: `--set max_steps=48` (about four times longer); watch whether the held-out QA of
#   OR-only and Fine-Mem separate by more than the seed spread (add `--seed 0 1 2`).
# * Watch a run live in TensorBoard: `--set report_to=tensorboard`, then
#   `tensorboard --logdir data/default/grpo` and open http://localhost:6006.
