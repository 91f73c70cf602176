"""Figures of the evaluation: score against memory length per method, the ceilings marked apart."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from finemem_lib.evaluation.tables import method_kinds


def plot_score_vs_memory(per_instance: pd.DataFrame, path: str | Path | None = None):
    """One panel per benchmark: each method's mean score against its mean memory tokens (bars: instance spread).

    Ceilings (scripted reference policies) are hollow grey markers labelled ``(ceiling)``, listed after the
    methods: references for what a manager could reach, not methods in the comparison.
    """
    import matplotlib.pyplot as plt

    kinds = method_kinds(per_instance) if not per_instance.empty else {}
    benchmarks = list(dict.fromkeys(per_instance["benchmark"]))
    fig, axes = plt.subplots(1, max(1, len(benchmarks)), figsize=(5.5 * max(1, len(benchmarks)), 4), squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks, strict=False):
        frame = per_instance[per_instance["benchmark"] == benchmark]
        summary = frame.groupby("method", sort=False).agg(
            score=("score", "mean"), sem=("score", "sem"), tokens=("memory_tokens", "mean")
        )
        methods = [m for m in summary.index if kinds.get(m) != "ceiling"]
        for i, method in enumerate(methods):
            row = summary.loc[method]
            ax.errorbar(
                row["tokens"], row["score"], yerr=row["sem"], fmt="o", color=f"C{i % 10}", capsize=3, label=method
            )
        for j, method in enumerate(m for m in summary.index if kinds.get(m) == "ceiling"):
            row = summary.loc[method]
            ax.errorbar(
                row["tokens"],
                row["score"],
                yerr=row["sem"],
                fmt="sD^v<>"[j % 6],
                mfc="none",
                color="0.35",
                capsize=3,
                label=f"{method} (ceiling)",
            )
        ax.set_xlabel("memory length (tokens, mean over instances)")
        ax.set_ylabel("score (mean over instances)")
        ax.set_title(benchmark)
        ax.set_ylim(-0.05, 1.05)
    labelled: dict[str, object] = {}  # every panel's methods and ceilings in one legend (a ceiling may be on one)
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labelled.setdefault(label, handle)
    ordered = sorted(labelled, key=lambda label: label.endswith("(ceiling)"))
    axes[0][-1].legend(
        [labelled[k] for k in ordered], ordered, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8
    )
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
