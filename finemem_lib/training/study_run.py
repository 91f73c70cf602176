"""Running a study plan: every planned run trained (or reused) and scored on held-out data, tables kept current.

Every run starts from the profile's SFT manager; a finished run whose config matches is reused, a killed
one resumes from its last checkpoint, so the same call continues a study run by run. Per run, after
training, the final manager is evaluated greedily on every held-out instance (and on the
out-of-distribution benchmark where its group asks for it); the SFT start likewise once per retrieval
setting. The study's tables (and, given ``write_figures``, its figures) are rewritten after every run
that changed a number.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from finemem_lib.infra.paths import ProfilePaths
from finemem_lib.training.heldout import (
    LOG_PREFIX,
    evaluate_heldout,
    heldout_path,
    older_than_model,
    ood_instances,
    ood_path,
    sft_run_name,
    stale,
)
from finemem_lib.training.loop import prepare_start, train_runs
from finemem_lib.training.plan import PlannedRun
from finemem_lib.training.run import RunResult
from finemem_lib.training.study_tables import collect, write_study_tables

logger = logging.getLogger(__name__)

FigureWriter = Callable[..., Any]  # (profile, runs, paths, tables=...) -> files, e.g. report.study_figures'


def run_plan(
    profile: Mapping[str, Any],
    runs: Sequence[PlannedRun],
    paths: ProfilePaths,
    stop_at: dt.datetime | None = None,
    command: str = "",
    write_figures: FigureWriter | None = None,
    reported: Sequence[PlannedRun] | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate the planned runs in order, reusing finished ones; stop launching at ``stop_at`` (UTC).

    The study's tables and figures cover the finished runs of ``reported`` (default: ``runs``), so a call that
    trains one group of a plan still writes the tables of the whole plan."""
    threads = (profile.get("training") or {}).get("num_threads")
    if threads:
        torch.set_num_threads(int(threads))  # the held-out evaluations too, not only training
    start = prepare_start(profile, paths)
    data, sft_model = start.data, start.sft_model
    ood = None
    unwritten = False  # a run was trained or scored since the tables were last written

    def score(cfg: Mapping[str, Any], model: Any, instances: Any, out: Path, variant: str) -> None:
        nonlocal unwritten
        evaluate_heldout(cfg, model, instances, out, variant, start.reasoner)
        unwritten = True

    def write_outputs() -> None:
        nonlocal unwritten
        covered = runs if reported is None else reported
        tables = collect(profile, covered, paths)  # read once for both
        write_study_tables(profile, covered, paths, command, tables)
        if write_figures is not None:
            write_figures(profile, covered, paths, tables=tables)
        unwritten = False

    def score_start(planned: PlannedRun, cfg: Mapping[str, Any]) -> None:
        sft_name = sft_run_name(cfg, str(profile.get("name")))
        sft_out = heldout_path(paths, sft_name)
        if not sft_out.is_file() or older_than_model(sft_out, sft_model):
            logger.info("evaluating the SFT start (%s) on %d held-out instances", sft_name, len(data["test"]))
            score(cfg, sft_model, data["test"], sft_out, "sft")

    def score_run(planned: PlannedRun, cfg: Mapping[str, Any], name: str, result: RunResult, trained: bool) -> None:
        nonlocal ood, unwritten
        unwritten = unwritten or trained
        out = heldout_path(paths, name)
        if not out.is_file() or stale(out, result.run_dir):
            score(cfg, result.model_dir, data["test"], out, planned.variant)
        if planned.ood:
            if ood is None:
                ood = ood_instances(profile, paths)
            sft_ood = ood_path(paths, sft_run_name(cfg, str(profile.get("name"))))
            if not sft_ood.is_file() or older_than_model(sft_ood, sft_model):
                score(cfg, sft_model, ood, sft_ood, "sft")
            out = ood_path(paths, name)
            if not out.is_file() or stale(out, result.run_dir):
                logger.info("scoring %s on the out-of-distribution benchmark (%d instances)", name, len(ood))
                score(cfg, result.model_dir, ood, out, planned.variant)

    done = []
    steps = train_runs(
        profile, runs, paths, start, log_prefix=LOG_PREFIX, stop_at=stop_at, claims=True,
        before_run=score_start, after_run=score_run,
    )  # fmt: skip
    for planned, name, result in steps:
        sft_name = sft_run_name(planned.config(profile), str(profile.get("name")))
        done.append({"planned": planned, "run": name, "sft": sft_name, "wall_s": result.wall_s})
        if unwritten:  # a reused run changes no table: rewriting them (and the figures) took seconds per run
            write_outputs()
    if unwritten or (done and not (paths.tables / f"{LOG_PREFIX}_study_runs.csv").is_file()):
        write_outputs()  # scored before a stop, or every run reused and the tables never written
    return done


def finished_runs(profile: Mapping[str, Any], runs: Sequence[PlannedRun], paths: ProfilePaths) -> set[str]:
    """Names of the planned runs that have finished (for a dry run)."""
    return set(collect(profile, runs, paths)["runs"].get("run", pd.Series(dtype=str)))
