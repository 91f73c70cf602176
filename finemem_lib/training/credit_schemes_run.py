"""Credit quality of the peers' credit schemes beside the house variants, on SFT-start rollouts.

    python -m finemem_lib.training.credit_schemes_run --profile long --seeds 0 1

Rolls out exactly as the credit study does (``python -m finemem_lib.training.study --credit``: same
instances, seeds and batches, so the same rollouts), measures every step's leave-one-step-out value,
and writes, under the profile's results folder:

- ``tables/05_credit_quality_steps.csv``: one row per step with its value, the scheme ingredients and
  A_t of OR-only, Fine-Mem and every scheme (the schemes' A_t can be recomputed from the ingredients);
- ``tables/05_credit_quality_schemes.csv``: Spearman(A_t, v_t) with bootstrap intervals of the four
  house variants and every scheme, pooled and per source;
- ``tables/05_credit_quality_differences.csv``: each scheme and main variant minus OR-only and minus
  Fine-Mem on the same steps (paired bootstrap over groups);
- ``tables/05_credit_quality.csv``: the credit study's table with the scheme rows added, only when the
  rollouts are those of its ``tables/05_credit_steps.csv`` (checked column by column);
- ``runs/05_credit_schemes.json``: provenance and the result of that check.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from finemem_lib.episodes.credit import CreditVariant
from finemem_lib.episodes.credit_schemes_study import (
    INGREDIENTS,
    KEYS,
    REFERENCES,
    measure_schemes,
    profile_schemes,
    schemes_quality,
)
from finemem_lib.infra.atomic import write_csv, write_json
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import ProfilePaths, profile_paths, repo_relative
from finemem_lib.infra.provenance import provenance
from finemem_lib.training.credit_study import MAIN_VARIANTS, credit_variants
from finemem_lib.training.heldout import LOG_PREFIX

STEP_COLUMNS = (*KEYS, "source", "value", "r_global", "r_chunk", "N", *INGREDIENTS)


def compare_with_house_steps(steps: pd.DataFrame, house: pd.DataFrame) -> dict[str, Any]:
    """Whether ``steps`` holds the same rollouts as a committed house step table (values and A_t columns)."""
    columns = [c for c in house.columns if c == "value" or c.startswith("A_")]
    columns = [c for c in columns if c in steps.columns]
    left = steps.set_index(list(KEYS)).sort_index()
    right = house.assign(group=house["group"].astype(str)).set_index(list(KEYS)).sort_index()
    if len(left) != len(right) or not left.index.equals(right.index):
        return {"same_rollouts": False, "why": f"{len(left)} steps here, {len(right)} in the house table"}
    worst = float(np.max(np.abs(left[columns].to_numpy() - right[columns].to_numpy()))) if columns else 0.0
    return {"same_rollouts": worst < 1e-9, "max_abs_difference": worst, "columns": columns}


def with_scheme_rows(house: pd.DataFrame, quality: pd.DataFrame, schemes: Sequence[CreditVariant]) -> pd.DataFrame:
    """The credit study's quality table with the schemes' rows (replacing any earlier ones), by source."""
    names = {s.name for s in schemes}
    rows = pd.concat([house[~house["variant"].isin(names)], quality[quality["variant"].isin(names)]])
    order = {source: i for i, source in enumerate(dict.fromkeys(rows["source"]))}
    return rows.sort_values("source", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)


def measure_credit_schemes(
    profile: Mapping[str, Any],
    paths: ProfilePaths,
    split: str = "train",
    max_instances: int | None = None,
    seeds: Sequence[int] = (0, 1),
    n_boot: int = 1000,
    command: str = "",
    write: bool = True,
) -> dict[str, Any]:
    """Measure every house variant and scheme on the same SFT-start rollouts; write the 05_credit_quality* tables."""
    import torch

    from finemem_lib.agents.policy import load_manager
    from finemem_lib.agents.reasoner_factory import build_reasoner
    from finemem_lib.agents.sft import free_cpu_threads, policy_settings
    from finemem_lib.episodes.rollout import settings_from_config
    from finemem_lib.training.start import heldout_subset, load_training_data, start_model

    threads = (profile.get("training") or {}).get("num_threads") or (profile.get("runtime") or {}).get("threads")
    torch.set_num_threads(int(threads or free_cpu_threads()))
    instances = heldout_subset(load_training_data(profile, paths)[split], max_instances)
    sft_model = start_model(profile, paths)
    policy = load_manager(sft_model, **policy_settings(profile))
    reasoner = build_reasoner(profile.get("reasoner"))
    settings = settings_from_config(dict(profile), training=True)
    variants = credit_variants(profile)
    schemes = profile_schemes(profile)
    started = time.perf_counter()
    steps = measure_schemes(instances, policy, reasoner, settings, variants, schemes, seeds=seeds)
    wall = time.perf_counter() - started
    compared = [*MAIN_VARIANTS, *(s.name for s in schemes)]
    quality, differences = schemes_quality(steps, compared, n_boot=n_boot)
    house_steps = paths.tables / f"{LOG_PREFIX}_credit_steps.csv"
    check = compare_with_house_steps(steps, pd.read_csv(house_steps)) if house_steps.is_file() else {}
    kept = [*STEP_COLUMNS, *(f"A_{n}" for n in REFERENCES), *(f"A_{s.name}" for s in schemes)]
    out: dict[str, Any] = {"steps": steps[kept], "quality": quality, "differences": differences, "wall_s": wall,
                           "house_check": check}  # fmt: skip
    if not write:
        return out
    files = {
        "steps": paths.tables / f"{LOG_PREFIX}_credit_quality_steps.csv",
        "quality": paths.tables / f"{LOG_PREFIX}_credit_quality_schemes.csv",
        "differences": paths.tables / f"{LOG_PREFIX}_credit_quality_differences.csv",
    }
    write_csv(out["steps"], files["steps"], index=False)
    write_csv(quality, files["quality"], index=False)
    write_csv(differences, files["differences"], index=False)
    house_quality = paths.tables / f"{LOG_PREFIX}_credit_quality.csv"
    if check.get("same_rollouts") and house_quality.is_file():
        files["house_quality"] = house_quality
        write_csv(with_scheme_rows(pd.read_csv(house_quality), quality, schemes), house_quality, index=False)
    write_json(
        paths.runs / f"{LOG_PREFIX}_credit_schemes.json",
        provenance(
            profile,
            int(seeds[0]) if seeds else 0,
            command=command,
            split=split,
            instances=len(instances),
            rollout_seeds=list(seeds),
            num_generations=settings.num_generations,
            question_ratio=settings.question_ratio,
            sft_model=repo_relative(sft_model),
            variants=[v.to_dict() for v in variants],
            schemes=[s.to_dict() for s in schemes],
            n_boot=n_boot,
            house_check=check,
            wall_s=round(wall, 1),
            outputs={k: repo_relative(v) for k, v in files.items()},
        ),
    )
    out["files"] = files
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finemem_lib.training.credit_schemes_run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--profile", default="long", help="profile name (configs/<name>.yaml) or a YAML path")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="rollout seeds (the credit study's)")
    parser.add_argument("--instances", type=int, default=None, help="training instances used (default: all)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap draws")
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--data-dir", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    profile = load_profile(args.profile)
    given = list(argv) if argv is not None else sys.argv[1:]
    command = " ".join(["python", "-m", "finemem_lib.training.credit_schemes_run", *given])
    paths = profile_paths(profile, args.results_dir, args.data_dir)
    out = measure_credit_schemes(
        profile, paths, max_instances=args.instances, seeds=args.seeds, n_boot=args.n_boot, command=command
    )
    pooled = out["quality"][out["quality"]["source"] == "all"]
    print(pooled.round(3).to_string(index=False))
    print(out["differences"].round(3).to_string(index=False))
    print(f"same rollouts as the house step table: {out['house_check'] or 'no house table to compare'}")
    print(f"credit measure: {out['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
