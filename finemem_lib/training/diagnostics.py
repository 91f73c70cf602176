"""What drives each optimizer step: per-round statistics of the rollouts, logged beside TRL's own metrics.

:func:`round_stats` is called once per rollout round by the trainer and returns ``{name: (sum, count)}``
(averaged over processes like the other round metrics), logged per optimizer step in ``history.csv``:

- ``diag/spread/<component>``: the within-group standard deviation of each additive term of the step
  reward (``global``: r_global or r_EARA; ``format``: r_fmt; ``chunk``: w1 r_chunk; ``compression``:
  w2 r_comp; ``total``: r_t), per step column over the G rollouts (``step`` mode) or over all G x T values
  (``episode`` mode). Only a term with spread moves the advantages; a term whose spread dominates
  ``total`` is what the gradient follows.
- ``diag/corr/<component>``: the correlation, within a group, between the advantages actually used and
  those that term alone would give (1: the advantages are that term's).
- ``diag/zero_var_groups``: the share of normalisation groups (step columns or episodes' groups) whose
  total reward is constant: they carry no gradient.
- ``diag/store_rate/facts`` and ``diag/store_rate/filler``: the share of fact and filler sentences the
  rollouts stored (:mod:`finemem_lib.episodes.behaviour`), ``diag/updates``: executed UPDATEs per episode.

For a credit scheme (a row of :data:`~finemem_lib.core.reward_spec.SCHEME_TABLE`) the components are the
terms its row reads (its hindsight credit is reported as ``global``), ``total`` is the per-step reward its
kernel credits (:func:`finemem_lib.core.credit_schemes.scheme_step_rewards`), the advantages are its
kernel's, and a zero-variance group is one whose advantages are constant. A term a scheme (or a variant)
does not read has zero spread and no correlation (NaN in the history).

The clip fraction (``clip_ratio/*``), KL (``kl``), entropy (``entropy``) and format rate
(``format_rate``) are in the same log, from TRL and the trainer. :func:`plot_diagnostics` draws them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finemem_lib.core import credit_schemes, rewards
from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.core.rewards import TERM_KERNELS, StepInputs
from finemem_lib.data.instance import Instance
from finemem_lib.data.roles import FACT_KINDS, FILLER_KINDS
from finemem_lib.episodes import behaviour
from finemem_lib.episodes.rollout import Episode
from finemem_lib.episodes.scheme_credit import group_scheme_inputs

COMPONENTS = ("global", "format", "chunk", "compression")
STAT_NAMES = (
    *(f"diag/spread/{c}" for c in (*COMPONENTS, "total")),
    *(f"diag/corr/{c}" for c in COMPONENTS),
    "diag/zero_var_groups",
    "diag/store_rate/facts",
    "diag/store_rate/filler",
    "diag/updates",
)


TERM_COMPONENTS = {"global": "global", "eara": "global", "hindsight": "global", "fmt": "format",
                   "comp": "compression", "chunk": "chunk"}  # fmt: skip
"""Reward term of the variant table -> the component it is reported as (r_global, its EARA split or its
hindsight routing: ``global``)."""


def reward_components(group: Sequence[Episode], spec: RewardSpec) -> dict[str, np.ndarray]:
    """``{component: [G, T]}``: the terms the spec's row reads for one group (zeros for unused).

    For a paper variant they add up to its step reward r_t; a credit scheme reads them through its kernel."""
    inputs = StepInputs(
        np.array([e.r_global for e in group], dtype=np.float64),
        np.stack([e.N for e in group]),
        np.stack([e.r_chunk for e in group]),
        np.stack([e.r_fmt for e in group]),
        np.array([e.r_comp for e in group], dtype=np.float64),
    )
    parts = {name: np.zeros(inputs.N.shape) for name in COMPONENTS}
    for term in spec.row.terms:
        if term == "hindsight":
            values = group_scheme_inputs(group).hindsight
        else:
            values = TERM_KERNELS[term](inputs, spec)
        parts[TERM_COMPONENTS[term]] = parts[TERM_COMPONENTS[term]] + values
    return parts


def group_credit(group: Sequence[Episode], spec: RewardSpec) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``(components, total, advantages)`` of one group: what the trainer's A_t is made of, and A_t itself."""
    parts = reward_components(group, spec)
    if spec.row.credit == "grpo":
        total = sum(parts.values())
        return parts, total, rewards.group_advantages(total, spec.group_mode)
    inputs = group_scheme_inputs(group)
    return parts, credit_schemes.scheme_step_rewards(spec, inputs), credit_schemes.scheme_advantages(spec, inputs)


def _spread(values: np.ndarray, mode: str) -> np.ndarray:
    """Within-group standard deviations: one per step column (``step``) or one for the group (``episode``)."""
    if values.shape[0] < 2:
        return np.zeros(values.shape[1] if mode == "step" else 1)
    return values.std(axis=0, ddof=1) if mode == "step" else np.array([values.std(ddof=1)])


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a.ravel(), b.ravel()
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def round_stats(
    groups: Sequence[Sequence[Episode]],
    instances: Sequence[Instance] | Mapping[str, Instance],
    spec: RewardSpec,
) -> dict[str, tuple[float, float]]:
    """``{name: (sum, count)}`` of one rollout round (see the module docstring); instances give sentence kinds."""
    by_id = instances if isinstance(instances, Mapping) else {inst.id: inst for inst in instances}
    sums: dict[str, tuple[float, float]] = {name: (0.0, 0.0) for name in STAT_NAMES}  # same names on every process

    def add(name: str, value: float, count: float = 1.0) -> None:
        s, c = sums.get(name, (0.0, 0.0))
        sums[name] = (s + value, c + count)

    counts: Counter[str] = Counter()
    n_episodes = 0
    mode = spec.group_mode
    for group in groups:
        if not group or len({e.T for e in group}) != 1:
            continue
        for episode in group:
            n_episodes += 1
            if episode.instance_id in by_id:
                counts += behaviour.episode_counts(by_id[episode.instance_id], episode.steps)
        parts, total, advantages = group_credit(group, spec)
        for name, values in [*parts.items(), ("total", total)]:
            spread = _spread(values, mode)
            add(f"diag/spread/{name}", float(spread.sum()), float(spread.size))
            if name != "total":
                corr = _corr(advantages, rewards.group_advantages(values, mode))
                if corr is not None:
                    add(f"diag/corr/{name}", corr)
        constant = _spread(total if spec.row.credit == "grpo" else advantages, mode) == 0
        add("diag/zero_var_groups", float(constant.sum()), float(constant.size))
    for name, count_names in (("facts", FACT_KINDS), ("filler", FILLER_KINDS)):
        seen = sum(counts.get(f"seen/{k}", 0) for k in count_names)
        if seen:
            add(f"diag/store_rate/{name}", float(sum(counts.get(f"stored/{k}", 0) for k in count_names)), float(seen))
    if n_episodes:
        add("diag/updates", float(counts.get("updates", 0)), float(n_episodes))
    return sums


# ---------------------------------------------------------------------------- figure
PANELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Advantage spread per reward term": (
        "within-group sd",
        tuple(f"diag/spread/{c}" for c in (*COMPONENTS, "total")),
    ),
    "Advantages vs each term alone": ("correlation", tuple(f"diag/corr/{c}" for c in COMPONENTS)),
    "Groups with no signal": ("share of groups", ("diag/zero_var_groups",)),
    "Trust region": ("share / KL", ("clip_ratio/region_mean", "kl")),
    "Entropy": ("nats per token", ("entropy",)),
    "Format rate": ("valid executed ops / emitted", ("format_rate",)),
    "Store rates (training rollouts)": ("share stored", ("diag/store_rate/facts", "diag/store_rate/filler")),
    "Held-out QA": ("mean score", ("heldout/qa",)),
}


def plot_diagnostics(curves: pd.DataFrame, path: str | Path | None = None, cols: int = 4) -> Any:
    """One panel per question of :data:`PANELS`, a line per (variant, column), mean over seeds against the step.

    ``curves`` is notebook 03's curves table (:func:`finemem_lib.training.runner.curves_table`): columns
    ``variant``, ``seed``, ``step`` and the logged metrics; panels whose columns are absent are left out.
    """
    import matplotlib.pyplot as plt

    panels = {t: (y, tuple(c for c in cols_ if c in curves.columns)) for t, (y, cols_) in PANELS.items()}
    panels = {t: v for t, v in panels.items() if v[1]}
    if not panels:
        raise ValueError("no diagnostics columns in the curves table (were the runs logged with diagnostics?)")
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    variants = list(dict.fromkeys(curves["variant"])) if "variant" in curves.columns else [None]
    styles = ("-", "--", ":", "-.")
    for ax, (title, (ylabel, columns)) in zip(axes.flat, panels.items(), strict=False):
        for column in columns:
            for i, variant in enumerate(variants):
                frame = curves if variant is None else curves[curves["variant"] == variant]
                series = frame.dropna(subset=[column]).groupby("step")[column].mean()
                if series.empty:
                    continue
                short = column.split("/")[-1] if column.startswith("diag/") else column
                label = short if variant is None else f"{short} ({variant})"
                ax.plot(series.index, series.to_numpy(), styles[i % len(styles)], marker=".", label=label)
        ax.set(title=title, xlabel="optimizer step", ylabel=ylabel)
        ax.legend(fontsize="x-small")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("What drives each GRPO step (mean over seeds)", x=0.01, ha="left")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def diagnostics_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per variant, the mean over steps and seeds of every diagnostics column (a compact table)."""
    columns = [c for c in curves.columns if c.startswith("diag/") or c in ("kl", "entropy", "clip_ratio/region_mean")]
    key = ["variant"] if "variant" in curves.columns else []
    if not key:
        return curves[columns].mean().to_frame("mean").T
    return curves.groupby(key)[columns].mean().reset_index()


def as_history_rows(stats: Mapping[str, Any]) -> dict[str, float]:
    """``{name: (sum, count)}`` -> ``{name: mean}`` (for tests and single-process use)."""
    return {k: (s / c if c else float("nan")) for k, (s, c) in stats.items()}
