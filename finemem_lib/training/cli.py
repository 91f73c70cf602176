"""Train the memory manager with step-credit GRPO from the command line (accelerate can launch it).

Examples::

    python -m finemem_lib.training.cli --profile default --variant finemem --seed 0
    python -m finemem_lib.training.cli --profile long --variant gigpo adrpo --seed 0 1 2   # credit schemes
    python -m finemem_lib.training.cli --profile full --report            # 4 variants x 3 seeds + tables/figures
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml \\
        -m finemem_lib.training.cli --profile smoke --variant or_only --set max_steps=2

A run resumes from the last complete checkpoint in its output folder unless ``--no-resume``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from finemem_lib.core.reward_spec import SCHEMES, TRAINABLE, VARIANTS
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.identity import REUSE_MODES
from finemem_lib.infra.paths import profile_paths
from finemem_lib.training.config import training_settings
from finemem_lib.training.runner import (
    heldout_table,
    load_training_data,
    run_study,
    start_model,
    write_study_report,
)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["max_steps=2", "kl_beta=0"]`` -> ``{"max_steps": 2, "kl_beta": 0}`` (values parsed as YAML)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m finemem_lib.training.cli", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", help="profile name (configs/<name>.yaml) or a YAML path")
    parser.add_argument(
        "--variant", nargs="+", default=None, choices=TRAINABLE, metavar="NAME",
        help=f"paper variants {' '.join(VARIANTS)} or credit schemes {' '.join(SCHEMES)} (default: the profile's)",
    )  # fmt: skip
    parser.add_argument("--seed", nargs="+", type=int, default=None, help="seeds (default: the profile's)")
    parser.add_argument("--sft-model", default=None, help="start model folder (default: the profile's SFT manager)")
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="training KEY=VALUE override")
    parser.add_argument("--no-resume", action="store_true", help="start from the SFT model even if checkpoints exist")
    parser.add_argument(
        "--reuse",
        choices=REUSE_MODES,
        default="auto",
        help="finished runs: reuse only identical ones (config, seed, start weights, data), any, or none",
    )
    parser.add_argument("--retrain", action="store_true", help="same as --reuse never")
    parser.add_argument("--keep-checkpoints", action="store_true")
    parser.add_argument("--report", action="store_true", help="write 03_<profile>_* tables and figures of these runs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_profile(args.profile)
    overrides = parse_overrides(args.overrides)
    training_settings(cfg, **overrides)  # fail early on a bad key
    paths = profile_paths(cfg, args.results_dir, args.data_dir)
    data = load_training_data(cfg, paths)
    sft_model = args.sft_model or start_model(cfg, paths)
    results = run_study(
        cfg,
        paths,
        variants=args.variant,
        seeds=args.seed,
        data=data,
        sft_model=sft_model,
        reuse="never" if args.retrain else args.reuse,
        resume=not args.no_resume,
        keep_checkpoints=args.keep_checkpoints,
        **overrides,
    )
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    table = heldout_table(results)
    print(table.to_string(index=False))
    if args.report:
        given = list(argv) if argv is not None else sys.argv[1:]
        command = shlex.join(["python", "-m", "finemem_lib.training.cli", *given])
        for name, path in write_study_report(cfg, paths, results, command).items():
            print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
