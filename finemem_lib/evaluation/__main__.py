"""``python -m finemem_lib.evaluation --profile P [--methods ...] [--benchmarks memalpha mab]``.

Evaluates, appends per-question records under ``<results>/eval/``, writes the tables
``<results>/tables/04_<benchmark>.csv`` (paper layout, 95 % intervals) and ``04_<benchmark>_long.csv``,
and prints them. A rerun skips what is already recorded.
"""

from __future__ import annotations

import argparse
import logging
import sys

from finemem_lib.evaluation.runner import EvaluationSetupError, run_evaluation
from finemem_lib.evaluation.sources import UnknownSourceError
from finemem_lib.evaluation.tables import AVERAGING_RULES, paper_tables
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finemem_lib.evaluation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default", help="profile name or YAML path (default: default)")
    parser.add_argument("--methods", nargs="*", help="method names (default: all of the profile)")
    parser.add_argument("--benchmarks", nargs="*", help="benchmark names (default: evaluation.benchmarks + custom)")
    parser.add_argument("--results-dir", help="override paths.results_dir")
    parser.add_argument("--data-dir", help="override paths.data_dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("bm25s", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = load_profile(args.profile)
    paths = profile_paths(cfg, args.results_dir, args.data_dir)
    try:
        records = run_evaluation(cfg, paths, args.methods, args.benchmarks, progress=not args.no_progress)
    except (EvaluationSetupError, UnknownSourceError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for benchmark, (long, wide) in paper_tables(records, cfg).items():
        long.to_csv(paths.tables / f"04_{benchmark}_long.csv", index=False)
        wide.to_csv(paths.tables / f"04_{benchmark}.csv")
        print(f"\n{benchmark}\n{wide.to_string()}\n{AVERAGING_RULES['memalpha' if benchmark == 'memalpha' else 'mab']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
