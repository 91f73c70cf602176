"""``python -m finemem_lib.evaluation --profile P [--methods ...] [--benchmarks memalpha mab]``, or on your own
file with no YAML: ``--parquet my.parquet --split Accurate_Retrieval --rule mysrc=substring_exact_match
--methods rag_bm25 store_everything [--manager DIR]`` (``finemem evaluate`` is the same command).

Evaluates, appends per-question records under ``<results>/eval/``, writes the tables
``<results>/tables/04_<benchmark>.csv`` (paper layout, 95 % intervals), ``04_<benchmark>_long.csv`` and, with
trained managers, ``04_<benchmark>_differences.csv`` (variants' means over seeds vs OR-only and the start),
and prints them. ``<results>`` is ``results/<name>/`` (``results/`` for ``default``), where the name is the
profile's own, or with ``--parquet`` the file's stem (``--name`` sets it). A rerun skips what is already
recorded. A wrong method, benchmark, source or rule is a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from finemem_lib.data.memoryagentbench import MAB_SPLITS
from finemem_lib.evaluation.own_data import OwnDataError, check_rule_sources, own_data_profile, parse_rules
from finemem_lib.evaluation.runner import EvaluationSetupError, preflight, run_evaluation
from finemem_lib.evaluation.seed_means import verdict_sentences
from finemem_lib.evaluation.settings import evaluation_settings
from finemem_lib.evaluation.sources import RULE_FUNCTIONS, UnknownSourceError
from finemem_lib.evaluation.tables import AVERAGING_RULES, paper_differences, paper_tables
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths, repo_relative


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m finemem_lib.evaluation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None, help="profile name or YAML path (default: default)")
    parser.add_argument("--methods", nargs="*", help="method names (default: all of the profile)")
    parser.add_argument("--benchmarks", nargs="*", help="benchmark names (default: evaluation.benchmarks + custom)")
    parser.add_argument("--results-dir", help="write here instead of results/<name>/ (from the current folder)")
    parser.add_argument("--data-dir", help="override paths.data_dir (from the current folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    own = parser.add_argument_group("your own MemoryAgentBench-schema parquet (no YAML needed)")
    own.add_argument("--parquet", help="a parquet file (or folder) with context, questions, answers, metadata.source")
    own.add_argument("--split", default="Accurate_Retrieval", choices=MAB_SPLITS, help="sets the default chunk size")
    own.add_argument("--rule", action="append", default=[], metavar="SOURCE=RULE", help="score SOURCE with RULE")
    own.add_argument("--manager", action="append", default=[], metavar="DIR", help="a trained manager folder")
    own.add_argument("--name", help="the run's name (default: the profile's with --profile, else the file's stem)")
    own.add_argument("--chunk-size", type=int, help="tokens per chunk (default: 2048, 1024 for Test_Time_Learning)")
    own.add_argument("--on-error", default="raise", choices=("raise", "skip"), help="a broken row: stop, or skip it")
    return parser


def _profile(args: argparse.Namespace) -> dict:
    cfg = load_profile(args.profile or "default")
    if args.parquet:
        return own_data_profile(
            cfg,
            args.parquet,
            args.split,
            args.rule,
            args.manager,
            args.name,
            args.chunk_size,
            args.on_error,
            keep_name=args.profile is not None,
        )
    if args.rule or args.manager or args.name:
        raise OwnDataError("--rule, --manager and --name go with --parquet (a profile sets these in its YAML)")
    return cfg


def _no_rule(exc: UnknownSourceError, args: argparse.Namespace) -> str:
    """The one-line error of a source without a rule in ``--parquet`` mode: the flag that fixes it."""
    sources = list(getattr(exc, "sources", []))
    if not args.parquet or not sources:
        return str(exc)
    named = [s for s in parse_rules(args.rule) if s not in sources]
    also = f" (--rule named {named}; rules are per source name)" if named else ""
    return (
        f"data source(s) {sources} of {args.parquet} have no scoring rule{also}: add --rule {sources[0]}=RULE; "
        f"rules: {', '.join(sorted(RULE_FUNCTIONS))}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("bm25s", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:  # setup: every bad name or broken input is one line and exit status 2, before any work
        if args.parquet and args.benchmarks:
            raise OwnDataError("--benchmarks does not go with --parquet: the file is the one benchmark evaluated")
        cfg = _profile(args)
        here = [Path(d).expanduser().resolve() if d else None for d in (args.results_dir, args.data_dir)]
        paths = profile_paths(cfg, *here, create=False)  # folders on the command line: from the current one
        for folder in (paths.tables, paths.figures, *([] if args.parquet else [paths.data])):
            folder.mkdir(parents=True, exist_ok=True)  # an own parquet needs no prepared-data folder
        settings = evaluation_settings(cfg)  # the evaluation section, read once for every step below
        plan = preflight(cfg, paths, args.methods, args.benchmarks, settings=settings)
        if args.parquet:
            check_rule_sources(parse_rules(args.rule), sorted({i.source for b in plan.benchmarks for i in b.instances}))
    except UnknownSourceError as exc:
        print(f"error: {_no_rule(exc, args)}", file=sys.stderr)
        return 2
    except (EvaluationSetupError, OwnDataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for bench in plan.benchmarks:
        if bench.skipped:
            reasons = "; ".join(f"row {r.row}: {r.reason}" for r in bench.skipped[:3])
            print(f"{bench.name}: skipped {len(bench.skipped)} broken row(s) ({reasons})", file=sys.stderr)
    try:
        records = run_evaluation(
            cfg, paths, args.methods, args.benchmarks, progress=not args.no_progress, plan=plan, settings=settings
        )
    except (EvaluationSetupError, UnknownSourceError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for benchmark, (long, wide) in paper_tables(records, settings).items():
        long.to_csv(paths.tables / f"04_{benchmark}_long.csv", index=False)
        wide.to_csv(paths.tables / f"04_{benchmark}.csv")
        print(f"\n{benchmark}\n{wide.to_string()}\n{AVERAGING_RULES['memalpha' if benchmark == 'memalpha' else 'mab']}")
    for benchmark, table in paper_differences(records, settings).items():  # variants' means vs OR-only and start
        table.to_csv(paths.tables / f"04_{benchmark}_differences.csv", index=False)
        print("\n".join(verdict_sentences(table, benchmark)))
    eval_dir, tables = repo_relative(paths.results / "eval"), repo_relative(paths.tables)
    print(f"\n{cfg['name']}: records in {eval_dir}, tables in {tables}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
