"""Figures shared by the notebooks (seaborn on matplotlib); each returns its Figure and can save it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from finemem_lib import atomic

sns.set_theme(style="whitegrid", context="notebook")

PNG_METADATA = {"Software": None}  # no matplotlib version stamp: the same figure gives the same bytes


def save(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    """Save ``fig`` as PNG when a path is given (folders are created; written atomically)."""
    if path is not None:
        atomic.save_figure(fig, path, dpi=120, bbox_inches="tight", metadata=PNG_METADATA)
    return fig


def evidence_matrix(evidence_steps: Sequence[Sequence[int]], T: int) -> np.ndarray:
    """``[n, T]`` counts: how many items retrieved for query j were written at step t."""
    matrix = np.zeros((len(evidence_steps), T))
    for j, steps in enumerate(evidence_steps):
        for step in steps:
            matrix[j, step] += 1
    return matrix


def plot_evidence_heatmap(
    evidence_steps: Sequence[Sequence[int]],
    T: int,
    scores: Sequence[float] | None = None,
    path: str | Path | None = None,
) -> plt.Figure:
    """Queries x writer steps heatmap of the retrieved evidence (row labels carry the query score)."""
    matrix = evidence_matrix(evidence_steps, T)
    labels = [f"q{j}" + (f" (s={scores[j]:.2f})" if scores is not None else "") for j in range(len(matrix))]
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * T, 0.8 + 0.35 * max(1, len(matrix))))
    sns.heatmap(
        matrix,
        annot=True,
        fmt=".0f",
        cbar=False,
        cmap="Blues",
        ax=ax,
        yticklabels=labels,
        xticklabels=[f"t={t}" for t in range(T)],
    )
    ax.set_xlabel("step that wrote the retrieved item")
    ax.set_ylabel("global query")
    ax.set_title("Evidence -> writer step")
    return save(fig, path)


def plot_step_series(
    series: Mapping[str, Sequence[float]],
    title: str,
    ylabel: str = "reward",
    path: str | Path | None = None,
) -> plt.Figure:
    """Grouped bars: one group per step, one bar per named series (e.g. beta values or reward variants)."""
    frame = pd.DataFrame(
        [
            {"step": t, "series": name, "value": float(v)}
            for name, values in series.items()
            for t, v in enumerate(values)
        ]
    )
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(frame, x="step", y="value", hue="series", ax=ax)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(title=None, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save(fig, path)
