"""Figures of notebook 05: advantage matrices, credit quality, learning curves with bands, efficiency, ablations."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from finemem_lib.core.reward_spec import ROWS_BY_NAME
from finemem_lib.report.plots import save


def plot_advantage_matrices(
    matrices: Mapping[str, np.ndarray], values: np.ndarray | None = None, path: str | Path | None = None
) -> plt.Figure:
    """One ``G x T`` heatmap of A_t per variant, side by side (shared colour scale); optionally the marginal values."""
    panels = dict(matrices)
    if values is not None:
        panels = {"true marginal value v_t": np.asarray(values), **panels}
    limit = max(float(np.abs(m).max()) for name, m in panels.items() if not name.startswith("true")) or 1.0
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.8), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], panels.items(), strict=True):
        is_value = name.startswith("true")
        scale = (float(np.abs(matrix).max()) or 1.0) if is_value else limit
        sns.heatmap(matrix, ax=ax, cmap="vlag", vmin=-scale, vmax=scale, cbar=True, xticklabels=4, yticklabels=True)
        ax.set_title(name)
        ax.set_xlabel("step t")
        ax.set_ylabel("rollout" if ax is axes[0][0] else "")
    fig.tight_layout()
    return save(fig, path)


def plot_credit_quality(
    table: pd.DataFrame, path: str | Path | None = None, title: str = "credit quality"
) -> plt.Figure:
    """Spearman(A_t, v_t) per variant with its bootstrap interval."""
    frame = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(1.1 * len(frame) + 2, 3.4))
    x = np.arange(len(frame))
    ax.bar(x, frame["spearman"], color=sns.color_palette("deep", len(frame)), alpha=0.7)
    ax.errorbar(x, frame["spearman"], yerr=[frame["spearman"] - frame["lo"], frame["hi"] - frame["spearman"]],
                fmt="none", ecolor="black", capsize=4)  # fmt: skip
    ax.axhline(0, color="grey", lw=1)
    ax.set_xticks(x, frame["variant"], rotation=30, ha="right")
    ax.set_ylabel("Spearman(A_t, leave-one-step-out value)")
    n = int(frame["n_groups"].iloc[0]) if len(frame) else 0
    ax.set_title(f"{title} ({n} groups, 95% bootstrap over groups)")
    fig.tight_layout()
    return save(fig, path)


def plot_curves_with_bands(mean: pd.DataFrame, ylabel: str, path: str | Path | None = None) -> plt.Figure:
    """Mean curve per variant with a +-1.96 standard-error band over seeds (``mean_curve``'s table); a variant
    or scheme of the variant table is drawn in its row's colour, and more than four get a legend beside the axes."""
    many = mean["variant"].nunique() > 4
    fig, ax = plt.subplots(figsize=(8.4 if many else 6, 3.6))
    for variant, frame in mean.groupby("variant", sort=False):
        frame = frame.sort_values("step")
        n = int(frame["count"].max())
        row = ROWS_BY_NAME.get(str(variant))
        (line,) = ax.plot(frame["step"], frame["mean"], marker="o", label=f"{variant} ({n} seeds)",
                          color=row.colour if row is not None else None)  # fmt: skip
        ax.fill_between(frame["step"], frame["mean"] - 1.96 * frame["se"], frame["mean"] + 1.96 * frame["se"],
                        color=line.get_color(), alpha=0.15 if many else 0.2)  # fmt: skip
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    if many:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.legend()
    fig.tight_layout()
    return save(fig, path)


def plot_intervals(table: pd.DataFrame, x: str, title: str, path: str | Path | None = None) -> plt.Figure:
    """Means with their intervals (``bootstrap_means``'s table), and the paired difference where present."""
    has_diff = "diff" in table.columns and table["diff"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_diff else 1, figsize=(10 if has_diff else 5.5, 3.4), squeeze=False)
    pos = np.arange(len(table))
    labels = table[x].astype(str)
    ax = axes[0][0]
    ax.errorbar(pos, table["mean"], yerr=[table["mean"] - table["lo"], table["hi"] - table["mean"]], fmt="o", capsize=4)
    ax.set_xticks(pos, labels, rotation=30, ha="right")
    ax.set_title(title)
    if has_diff:
        ax = axes[0][1]
        d = table["diff"].fillna(0.0)
        ax.errorbar(
            pos, d, yerr=[d - table["diff_lo"].fillna(0.0), table["diff_hi"].fillna(0.0) - d], fmt="o", capsize=4
        )
        ax.axhline(0, color="grey", lw=1)
        ax.set_xticks(pos, labels, rotation=30, ha="right")
        ax.set_title("paired difference to the reference (95%)")
    fig.tight_layout()
    return save(fig, path)


def plot_efficiency(table: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """The step at which each variant first reaches OR-only's final held-out score (missing: never), with its
    bootstrap interval over seeds when the table has one."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    frame = table.copy()
    reached = frame["first_step"].notna()
    shown = frame.loc[reached]
    errors = None
    if {"lo", "hi"} <= set(frame.columns):  # bootstrap interval over seeds
        errors = [(shown["first_step"] - shown["lo"]).clip(lower=0), (shown["hi"] - shown["first_step"]).clip(lower=0)]
    ax.bar(shown["variant"], shown["first_step"], yerr=errors, capsize=4, alpha=0.7)
    for name in frame.loc[~reached, "variant"]:
        ax.bar(name, 0, color="none")
        ax.annotate("never", (name, 0), ha="center", va="bottom")
    target = float(frame["target"].iloc[0]) if len(frame) else float("nan")
    ax.set_ylabel("first step >= OR-only final")
    ax.set_title(f"learning efficiency (target {target:.3f})")
    fig.tight_layout()
    return save(fig, path)
