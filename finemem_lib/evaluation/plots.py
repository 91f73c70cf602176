"""Figures of the evaluation: score against memory length per method."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_score_vs_memory(per_instance: pd.DataFrame, path: str | Path | None = None):
    """One panel per benchmark: each method's mean score against its mean memory tokens (bars: instance spread)."""
    import matplotlib.pyplot as plt

    benchmarks = list(dict.fromkeys(per_instance["benchmark"]))
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5.5 * len(benchmarks), 4), squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks, strict=True):
        frame = per_instance[per_instance["benchmark"] == benchmark]
        summary = frame.groupby("method", sort=False).agg(
            score=("score", "mean"), sem=("score", "sem"), tokens=("memory_tokens", "mean")
        )
        for i, (method, row) in enumerate(summary.iterrows()):
            ax.errorbar(
                row["tokens"], row["score"], yerr=row["sem"], fmt="o", color=f"C{i % 10}", capsize=3, label=method
            )
        ax.set_xlabel("memory length (tokens, mean over instances)")
        ax.set_ylabel("score (mean over instances)")
        ax.set_title(benchmark)
        ax.set_ylim(-0.05, 1.05)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
