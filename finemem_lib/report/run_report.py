"""Notebook 03's files for some GRPO runs: the held-out table, the training curves, their figures and a study log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt

from finemem_lib.infra import atomic
from finemem_lib.infra.atomic import write_json
from finemem_lib.infra.paths import ProfilePaths, repo_relative
from finemem_lib.infra.provenance import provenance
from finemem_lib.report.training_plots import plot_heldout, plot_learning_curves
from finemem_lib.training.run import RunResult
from finemem_lib.training.study_tables import curves_table, heldout_table


def write_study_report(
    cfg: Mapping[str, Any], paths: ProfilePaths, results: Sequence[RunResult], command: str | None = None
) -> dict[str, str]:
    """Tables, figures and a study log (command, runs, versions, revision) of some runs, named ``03_<profile>_*``.

    Every file is written atomically; the study log stores paths relative to the project root.
    """
    name = cfg.get("name", "profile")
    prefix = f"03_{name}"
    table, curves = heldout_table(results), curves_table(results)
    files = {
        "heldout_table": paths.tables / f"{prefix}_heldout.csv",
        "curves_table": paths.tables / f"{prefix}_curves.csv",
        "curves_figure": paths.figures / f"{prefix}_learning_curves.png",
        "heldout_figure": paths.figures / f"{prefix}_heldout.png",
        "study_log": paths.runs / f"{prefix}_study.json",
    }
    atomic.write_csv(table, files["heldout_table"], index=False)
    atomic.write_csv(curves, files["curves_table"], index=False)
    plt.close(plot_learning_curves(curves, path=files["curves_figure"]))  # saved; notebooks show the files
    plt.close(plot_heldout(table, path=files["heldout_figure"]))
    study = provenance(
        cfg,
        seed=int(cfg.get("seed", 0)),
        command=command or f"python -m finemem_lib.training.cli --profile {name} --report",
        runs=[
            {
                "run": r.name,
                "variant": r.variant,
                "seed": r.seed,
                "wall_s": round(r.wall_s, 1),
                "log": repo_relative(r.run_dir),
            }
            for r in results
        ],
        total_run_wall_s=round(sum(r.wall_s for r in results), 1),
        outputs={k: repo_relative(v) for k, v in files.items() if k != "study_log"},
    )
    write_json(files["study_log"], study)
    return {k: str(v) for k, v in files.items()}
