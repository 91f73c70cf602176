"""Figures of GRPO runs: learning curves per step and held-out scores per variant (seaborn)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from finemem_lib.plots import save

CURVES = {
    "reward": "step reward r_t (variant's own)",
    "rewards/global": "train global QA (r_global)",
    "rewards/chunk": "chunk QA (r_chunk)",
    "rewards/compression": "compression (r_comp)",
    "format_rate": "format rate (r_fmt)",
    "memory/tokens": "memory length (tokens)",
    "heldout/qa": "held-out global QA",
    "heldout/memory_tokens": "held-out memory length",
}
VARIANT_ORDER = ("or_only", "csr", "eara", "finemem")


def _variants(frame: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(frame["variant"]))
    return [v for v in VARIANT_ORDER if v in present] + [v for v in present if v not in VARIANT_ORDER]


def plot_learning_curves(
    curves: pd.DataFrame, metrics: Mapping[str, str] | None = None, path: str | Path | None = None, cols: int = 4
) -> plt.Figure:
    """One panel per metric against the optimizer step, a line per variant (mean and spread over seeds)."""
    metrics = {k: v for k, v in (metrics or CURVES).items() if k in curves.columns}
    if not metrics:
        raise ValueError(f"none of the metrics are in the log (columns: {sorted(curves.columns)})")
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    order = _variants(curves)
    for ax, (column, title) in zip(axes.flat, metrics.items(), strict=False):
        frame = curves.dropna(subset=[column])
        sns.lineplot(data=frame, x="step", y=column, hue="variant", hue_order=order, errorbar="sd", marker="o", ax=ax)
        ax.set_title(title)
        ax.set_ylabel("")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax is not axes.flat[0] and ax.get_legend() is not None:
            ax.get_legend().remove()
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return save(fig, path)


def plot_heldout(table: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Held-out global QA and memory length after training per variant (a dot per seed; dashed: SFT start)."""
    order = _variants(table)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in ((axes[0], "qa", "held-out global QA"), (axes[1], "memory_tokens", "memory length")):
        sns.barplot(data=table, x="variant", y=f"{key}_final", order=order, errorbar="sd", alpha=0.6, ax=ax)
        sns.stripplot(data=table, x="variant", y=f"{key}_final", order=order, color="black", size=5, ax=ax)
        start = table[f"{key}_initial"].dropna()
        if len(start):
            ax.axhline(float(start.mean()), ls="--", color="grey", label="SFT start")
            ax.legend(loc="lower right")
        ax.set_title(title)
        ax.set_ylabel("")
    fig.tight_layout()
    return save(fig, path)
