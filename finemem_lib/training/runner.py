"""Notebook 03's front door: a profile's reward variants x seeds trained from one SFT start, and their report.

The runs are a one-group plan (:func:`finemem_lib.training.plan.one_group_plan`) trained by the same
loop as the study (:func:`finemem_lib.training.loop.train_runs`). What one run does is in
:mod:`finemem_lib.training.run`, its start in :mod:`finemem_lib.training.start`, its checkpoints in
:mod:`finemem_lib.training.checkpoints`; the tables and figures of the runs in
:mod:`finemem_lib.training.study_tables` and :mod:`finemem_lib.report.run_report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finemem_lib.data.instance import Instance
from finemem_lib.infra.paths import ProfilePaths
from finemem_lib.report.run_report import write_study_report
from finemem_lib.training.config import training_settings
from finemem_lib.training.loop import prepare_start, train_runs
from finemem_lib.training.plan import one_group_plan
from finemem_lib.training.run import RunResult, load_run, reusable_run, train_manager
from finemem_lib.training.start import heldout_subset, load_training_data, start_model
from finemem_lib.training.study_tables import curves_table, heldout_table

__all__ = [
    "RunResult",
    "curves_table",
    "heldout_subset",
    "heldout_table",
    "load_run",
    "load_training_data",
    "reusable_run",
    "run_study",
    "start_model",
    "train_manager",
    "write_study_report",
]


def run_study(
    cfg: Mapping[str, Any],
    paths: ProfilePaths,
    variants: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    data: Mapping[str, Sequence[Instance]] | None = None,
    sft_model: str | Path | None = None,
    reuse: str = "auto",
    resume: bool = True,
    keep_checkpoints: bool = False,
    **overrides: Any,
) -> list[RunResult]:
    """Train every (variant, seed) from the same SFT start, variant by variant; finished runs are reused per ``reuse``.

    ``overrides`` replace ``training:`` keys (e.g. ``max_steps=2``); see
    :func:`finemem_lib.training.run.reusable_run`. Each decision is logged at INFO.
    """
    settings = training_settings(cfg)
    start = prepare_start(cfg, paths, data, sft_model)
    plan = one_group_plan(variants or settings.variants, seeds if seeds is not None else settings.seeds)
    steps = train_runs(cfg, plan, paths, start, reuse, resume, keep_checkpoints, **overrides)
    return [result for _, _, result in steps]
