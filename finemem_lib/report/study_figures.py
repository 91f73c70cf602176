"""Notebook 05's files: the study's summary tables with their figures, and the credit study's figures.

The numbers come from :mod:`finemem_lib.training.study_tables` and :mod:`finemem_lib.training.credit_study`;
this module writes them and draws them (:mod:`finemem_lib.report.ablation_plots`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from finemem_lib.core.reward_spec import VARIANTS
from finemem_lib.infra.atomic import write_csv
from finemem_lib.infra.paths import ProfilePaths
from finemem_lib.report.ablation_plots import (
    plot_advantage_matrices,
    plot_credit_quality,
    plot_curves_with_bands,
    plot_efficiency,
    plot_intervals,
)
from finemem_lib.training.credit_study import advantage_matrices_from_steps
from finemem_lib.training.heldout import LOG_PREFIX
from finemem_lib.training.plan import PlannedRun
from finemem_lib.training.study_tables import SUMMARY_CURVES, study_summary


def write_study_figures(
    profile: Mapping[str, Any],
    runs: Sequence[PlannedRun],
    paths: ProfilePaths,
    n_boot: int = 2000,
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, Path]:
    """Learning curves with bands, held-out intervals, paired differences, efficiency and one figure per ablation.

    The tables are :func:`finemem_lib.training.study_tables.study_summary`'s. Returns the files written
    (none when no run has finished).
    """
    summary = study_summary(profile, runs, paths, n_boot, tables)
    t, f = paths.tables, paths.figures
    files: dict[str, Path] = {}
    if summary.heldout is not None:
        files["heldout"] = t / f"{LOG_PREFIX}_heldout.csv"
        write_csv(summary.heldout, files["heldout"], index=False)
        files["heldout_figure"] = f / f"{LOG_PREFIX}_heldout.png"
        qa = summary.heldout[summary.heldout.metric == "qa"]
        plt.close(plot_intervals(qa, "variant", "held-out QA (95% over instances, seeds)", files["heldout_figure"]))
        for column, mean in summary.curve_means.items():
            name, label = SUMMARY_CURVES[column]
            key = "curves_figure" if column == "heldout/qa" else "memory_curves_figure"
            files[key] = f / f"{LOG_PREFIX}_{name}.png"
            plt.close(plot_curves_with_bands(mean, label, files[key]))
        if summary.curve_means:
            files["curves"] = t / f"{LOG_PREFIX}_curves.csv"
            write_csv(summary.curves, files["curves"], index=False)
            files["plateau"] = t / f"{LOG_PREFIX}_plateau.csv"
            write_csv(summary.plateau, files["plateau"], index=False)
            files["efficiency"] = t / f"{LOG_PREFIX}_efficiency.csv"
            write_csv(summary.efficiency, files["efficiency"], index=False)
            if len(summary.efficiency):
                files["efficiency_figure"] = f / f"{LOG_PREFIX}_efficiency.png"
                plt.close(plot_efficiency(summary.efficiency, files["efficiency_figure"]))
    for key, (table, title) in summary.ablations.items():
        files[key] = t / f"{LOG_PREFIX}_{key}.csv"
        write_csv(table, files[key], index=False)
        files[f"{key}_figure"] = f / f"{LOG_PREFIX}_{key}.png"
        plt.close(plot_intervals(table, "variant", title, files[f"{key}_figure"]))
    return files


def write_credit_figures(quality: pd.DataFrame, steps: pd.DataFrame, files: Mapping[str, Path]) -> None:
    """The credit study's figures: the four variants, Fine-Mem's knobs, and one group's advantage matrices."""
    pooled = quality[quality["source"] == "all"]
    plt.close(plot_credit_quality(pooled[pooled["variant"].isin(VARIANTS)], path=files["figure"]))
    knobs = pooled[pooled["variant"].str.startswith("finemem")]
    plt.close(plot_credit_quality(knobs, path=files["ablations"], title="Fine-Mem's knobs"))
    matrices, values, _ = advantage_matrices_from_steps(steps)
    shown = {k: matrices[k] for k in VARIANTS if k in matrices}
    plt.close(plot_advantage_matrices(shown, values, path=files["matrices"]))
