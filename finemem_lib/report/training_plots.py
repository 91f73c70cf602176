"""Figures of GRPO runs: learning curves per step and held-out scores per variant (seaborn).

Variants keep the colours and names of notebook 02's figures (:data:`finemem_lib.report.plots.VARIANT_COLOURS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from finemem_lib.report.plots import (
    SFT_COLOUR,
    VARIANT_COLOURS,
    VARIANT_LABELS,
    VARIANT_ORDER,
    caption,
    save,
    seeded_numpy,
)

# log column -> (panel title, y-axis label)
CURVES = {
    "reward": ("Step reward r_t (each variant's own)", "mean r_t"),
    "rewards/global": ("Global QA on training rollouts", "r_global (mean score)"),
    "rewards/chunk": ("Chunk QA on training rollouts", "r_chunk (share answered)"),
    "rewards/compression": ("Compression", "r_comp (1 − memory / input)"),
    "format_rate": ("Format rate", "valid executed ops / emitted"),
    "memory/tokens": ("Memory length, training rollouts", "tokens in final memory"),
    "heldout/qa": ("Held-out global QA (greedy)", "mean score"),
    "heldout/memory_tokens": ("Held-out memory length", "tokens in final memory"),
}


def _variants(frame: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(frame["variant"]))
    return [v for v in VARIANT_ORDER if v in present] + [v for v in present if v not in VARIANT_ORDER]


def _palette(order: list[str]) -> dict[str, object]:
    extra = iter(sns.color_palette("dark"))
    return {VARIANT_LABELS.get(v, v): VARIANT_COLOURS.get(v) or next(extra) for v in order}


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(variant=frame["variant"].map(lambda v: VARIANT_LABELS.get(v, v)))


def plot_learning_curves(
    curves: pd.DataFrame,
    metrics: Mapping[str, tuple[str, str] | str] | None = None,
    path: str | Path | None = None,
    cols: int = 4,
) -> plt.Figure:
    """One panel per metric against the optimizer step, a line per variant (mean and spread over seeds)."""
    metrics = {k: v if isinstance(v, tuple) else (v, "") for k, v in (metrics or CURVES).items() if k in curves.columns}
    if not metrics:
        raise ValueError(f"none of the metrics are in the log (columns: {sorted(curves.columns)})")
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    order = _variants(curves)
    labels = [VARIANT_LABELS.get(v, v) for v in order]
    frame_all = _labelled(curves)
    handles, names = [], []
    for ax, (column, (title, ylabel)) in zip(axes.flat, metrics.items(), strict=False):
        frame = frame_all.dropna(subset=[column])
        sns.lineplot(
            data=frame, x="step", y=column, hue="variant", hue_order=labels, palette=_palette(order), errorbar="sd",
            marker="o", ax=ax,
        )  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend() is not None:
            handles, names = ax.get_legend_handles_labels()
            ax.get_legend().remove()
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    if handles:
        fig.legend(
            handles, names, title="reward variant", loc="upper right", bbox_to_anchor=(1.0, 1.06), ncol=len(names)
        )
    fig.suptitle("GRPO learning curves (line: mean over seeds, band: spread)", x=0.01, ha="left", y=1.06)
    fig.tight_layout()
    caption(
        fig,
        "Same seed, same instances: compare variants step by step; held-out panels are greedy episodes on test data.",
    )
    return save(fig, path)


def _zoomed_limits(values: np.ndarray, pad: float = 0.25) -> tuple[float, float]:
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    return lo - pad * span, hi + pad * span


def plot_heldout(table: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Held-out global QA and memory length after training per variant.

    A dot per seed, the mean ± sd as a bar-free point, the SFT start as a dashed line; the y-axis is
    zoomed to the data (no bars from 0 hiding small gaps), and each mean is written next to its point.
    """
    order = _variants(table)
    labels = [VARIANT_LABELS.get(v, v) for v in order]
    frame = _labelled(table)
    palette = _palette(order)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    panels = (
        (axes[0], "qa", "Held-out global QA after training", "mean score on test questions", "{:.3f}"),
        (axes[1], "memory_tokens", "Final memory length", "tokens in final memory", "{:.1f}"),
    )
    for ax, key, title, ylabel, fmt in panels:
        column = f"{key}_final"
        with seeded_numpy(0):  # the jitter comes from numpy's global generator
            sns.stripplot(
                data=frame, x="variant", y=column, order=labels, hue="variant", hue_order=labels, palette=palette,
                size=6, alpha=0.6, jitter=0.08, legend=False, ax=ax,
            )  # fmt: skip
        sns.pointplot(
            data=frame, x="variant", y=column, order=labels, hue="variant", hue_order=labels, palette=palette,
            errorbar="sd", markers="D", linestyles="none", capsize=0.15, legend=False, ax=ax,
        )  # fmt: skip
        values = [frame[column].to_numpy(dtype=float)]
        start = frame[f"{key}_initial"].dropna()
        if len(start):
            ax.axhline(float(start.mean()), ls="--", color=SFT_COLOUR, label=f"SFT start ({fmt.format(start.mean())})")
            ax.legend(loc="best", fontsize="small")
            values.append(start.to_numpy(dtype=float))
        ax.set_ylim(*_zoomed_limits(np.concatenate(values)))
        means = frame.groupby("variant")[column].mean()
        for x, label in enumerate(labels):
            ax.annotate(fmt.format(means[label]), (x, means[label]), textcoords="offset points", xytext=(10, 5),
                        va="bottom", fontsize=9)  # fmt: skip
        ax.set(title=title, xlabel="reward variant", ylabel=ylabel)
    fig.tight_layout()
    caption(fig, "Diamonds: mean ± sd over seeds, dots: seeds. The y-axis is zoomed: read the gaps against the spread.")
    return save(fig, path)
