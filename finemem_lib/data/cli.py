"""Prepare a profile's data from the command line: build (synthetic) or load (hub) it and write it.

Examples::

    python -m finemem_lib.data --profile default
    python -m finemem_lib.data --profile paper --data-dir /scratch/finemem-data

Later notebooks and ``finemem train`` read the prepared splits from ``<data-dir>/<profile>``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from finemem_lib.data.memalpha import DataNotAvailableError
from finemem_lib.data.prepared import prepare_profile_data
from finemem_lib.infra.config import load_profile, profile_names
from finemem_lib.infra.paths import profile_paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m finemem_lib.data", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", help=f"profile ({', '.join(profile_names())}) or a YAML path")
    parser.add_argument("--data-dir", default=None, help="where prepared data goes (default: the profile's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_profile(args.profile)
    paths = profile_paths(cfg, data_dir=args.data_dir)
    try:
        _, manifest = prepare_profile_data(cfg, paths.data)
    except DataNotAvailableError as exc:
        print(f"finemem data: {exc}", file=sys.stderr)
        return 2
    for split, info in manifest["splits"].items():
        print(f"{split:>28}: {info['instances']:4d} instances -> {paths.data / info['file']}")
    if manifest.get("chunk_qa_status"):
        print(manifest["chunk_qa_status"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
