"""The whole variant and ablation study of a profile in one resumable command (notebook 05 reads its results).

Example::

    python -m finemem_lib.training.study --profile long --plan configs/study_long.yaml
    python -m finemem_lib.training.study --profile long --plan configs/study_long.yaml --stop-at 23:45 --dry-run
    python -m finemem_lib.training.study --profile long --credit --credit-seeds 0 1

This module is the study's front door: its command line, and the names notebook 05 uses, each from
the module that does the job: the plan (:mod:`~finemem_lib.training.plan`), running it
(:mod:`~finemem_lib.training.study_run`), held-out evaluation (:mod:`~finemem_lib.training.heldout`),
statistics (:mod:`~finemem_lib.training.study_stats`), tables (:mod:`~finemem_lib.training.study_tables`),
the credit study (:mod:`~finemem_lib.training.credit_study`) and the figures
(:mod:`finemem_lib.report.study_figures`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from finemem_lib.infra.command_line import start_profile_command
from finemem_lib.infra.paths import ProfilePaths
from finemem_lib.report.study_figures import write_credit_figures, write_study_figures
from finemem_lib.training import credit_study, study_run
from finemem_lib.training.credit_study import MAIN_VARIANTS, advantage_matrices_from_steps, credit_variants
from finemem_lib.training.heldout import (
    LOG_PREFIX,
    evaluate_heldout,
    heldout_path,
    ood_instances,
    ood_path,
    sft_run_name,
)
from finemem_lib.training.loop import claim
from finemem_lib.training.plan import PlannedRun, load_plan, one_group_plan, plan_runs, run_tag
from finemem_lib.training.study_run import finished_runs
from finemem_lib.training.study_stats import (
    bootstrap_means,
    learning_efficiency,
    mean_curve,
    plateau,
    score_matrix,
)
from finemem_lib.training.study_tables import ABLATION_GROUPS, BASE_LABEL, collect, study_summary, write_study_tables

__all__ = [
    "ABLATION_GROUPS",
    "BASE_LABEL",
    "LOG_PREFIX",
    "MAIN_VARIANTS",
    "PlannedRun",
    "advantage_matrices_from_steps",
    "bootstrap_means",
    "claim",
    "collect",
    "credit_variants",
    "evaluate_heldout",
    "heldout_path",
    "learning_efficiency",
    "load_plan",
    "main",
    "mean_curve",
    "measure_credit_quality",
    "one_group_plan",
    "ood_instances",
    "ood_path",
    "plan_runs",
    "plateau",
    "run_plan",
    "run_tag",
    "score_matrix",
    "sft_run_name",
    "study_summary",
    "write_study_figures",
    "write_study_tables",
]


def run_plan(
    profile: Mapping[str, Any], runs: Sequence[PlannedRun], paths: ProfilePaths, *args: Any, **kwargs: Any
) -> list[dict[str, Any]]:
    """:func:`finemem_lib.training.study_run.run_plan` (same arguments), writing the study's figures with its tables."""
    return study_run.run_plan(profile, runs, paths, *args, write_figures=write_study_figures, **kwargs)


def measure_credit_quality(profile: Mapping[str, Any], paths: ProfilePaths, **options: Any) -> dict[str, Any]:
    """:func:`finemem_lib.training.credit_study.measure_credit_quality` (same options), with its figures."""
    return credit_study.measure_credit_quality(profile, paths, draw=write_credit_figures, **options)


# ---------------------------------------------------------------------------- command line
def _stop_time(text: str | None) -> dt.datetime | None:
    """``HH:MM`` (today, UTC) or an ISO time; None for none."""
    if not text:
        return None
    now = dt.datetime.now(dt.timezone.utc)
    try:
        hour, minute = (int(x) for x in text.split(":"))
        return now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        stamp = dt.datetime.fromisoformat(text)
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m finemem_lib.training.study", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="long", help="profile name (configs/<name>.yaml) or a YAML path")
    parser.add_argument("--plan", default=None, help="study plan YAML (e.g. configs/study_long.yaml)")
    parser.add_argument("--credit", action="store_true", help="measure credit quality on SFT-start rollouts first")
    parser.add_argument(
        "--credit-seeds", nargs="+", type=int, default=[0, 1], help="rollout seeds of the credit measure"
    )
    parser.add_argument("--credit-instances", type=int, default=None, help="training instances used (default: all)")
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--stop-at", default=None, help="UTC HH:MM or ISO time after which no new run is launched")
    parser.add_argument(
        "--only", nargs="+", default=None, help="train only these plan groups (the tables still cover the whole plan)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs and which are finished; train nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    start = start_profile_command(build_parser(), "finemem_lib.training.study", argv)
    args, profile, paths, command = start.args, start.profile, start.paths, start.command
    if args.credit:
        credit = measure_credit_quality(
            profile, paths, max_instances=args.credit_instances, seeds=args.credit_seeds, command=command
        )
        print(credit["quality"].round(3).to_string(index=False))
        print(f"credit measure: {credit['wall_s']:.0f} s")
    if not args.plan:
        return 0
    plan = load_plan(args.plan, profile)
    runs = [r for r in plan if r.group in set(args.only)] if args.only else plan
    if args.dry_run:
        finished = finished_runs(profile, runs, paths)
        for r in runs:
            name = f"{r.config(profile)['name']}_{r.variant}_s{r.seed}"
            print(f"{'done' if name in finished else 'todo'}  {r.label:45s} {name}")
        return 0
    started = time.perf_counter()
    done = run_plan(profile, runs, paths, _stop_time(args.stop_at), command, reported=plan)
    print(f"{len(done)} of {len(runs)} runs finished in this call ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
