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
from finemem_lib.infra.atomic import write_csv
from finemem_lib.infra.command_line import start_profile_command
from finemem_lib.infra.paths import ProfilePaths
from finemem_lib.training.credit_study import (
    MAIN_VARIANTS,
    CreditMeasure,
    credit_rollouts,
    write_credit_log,
    write_credit_tables,
)
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


def measure_credit_schemes(profile: Mapping[str, Any], paths: ProfilePaths, **options: Any) -> dict[str, Any]:
    """Measure every house variant and scheme on the same SFT-start rollouts; write the 05_credit_quality* tables.

    ``options`` are those of :class:`~finemem_lib.training.credit_study.CreditMeasure` (``split``,
    ``max_instances``, ``seeds``, ``n_boot``, ``command``, ``write``).
    """
    measure = CreditMeasure(**options)
    seeds, n_boot = measure.seeds, measure.n_boot
    setup = credit_rollouts(profile, paths, measure)
    schemes = profile_schemes(profile)
    started = time.perf_counter()
    steps = measure_schemes(
        setup.instances, setup.policy, setup.reasoner, setup.settings, setup.variants, schemes, seeds=seeds
    )
    wall = time.perf_counter() - started
    compared = [*MAIN_VARIANTS, *(s.name for s in schemes)]
    quality, differences = schemes_quality(steps, compared, n_boot=n_boot)
    house_steps = paths.tables / f"{LOG_PREFIX}_credit_steps.csv"
    check = compare_with_house_steps(steps, pd.read_csv(house_steps)) if house_steps.is_file() else {}
    kept = [*STEP_COLUMNS, *(f"A_{n}" for n in REFERENCES), *(f"A_{s.name}" for s in schemes)]
    out: dict[str, Any] = {"steps": steps[kept], "quality": quality, "differences": differences, "wall_s": wall,
                           "house_check": check}  # fmt: skip
    if not measure.write:
        return out
    files = write_credit_tables(
        paths, {"steps": ("credit_quality_steps", out["steps"]), "quality": ("credit_quality_schemes", quality),
                "differences": ("credit_quality_differences", differences)}
    )  # fmt: skip
    house_quality = paths.tables / f"{LOG_PREFIX}_credit_quality.csv"
    if check.get("same_rollouts") and house_quality.is_file():
        files["house_quality"] = house_quality
        write_csv(with_scheme_rows(pd.read_csv(house_quality), quality, schemes), house_quality, index=False)
    write_credit_log(
        paths.runs / f"{LOG_PREFIX}_credit_schemes.json",
        profile,
        setup,
        measure,
        wall,
        files,
        schemes=[s.to_dict() for s in schemes],
        n_boot=n_boot,
        house_check=check,
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
    start = start_profile_command(build_parser(), "finemem_lib.training.credit_schemes_run", argv, relative_args=False)
    args = start.args
    out = measure_credit_schemes(
        start.profile,
        start.paths,
        max_instances=args.instances,
        seeds=args.seeds,
        n_boot=args.n_boot,
        command=start.command,
    )
    pooled = out["quality"][out["quality"]["source"] == "all"]
    print(pooled.round(3).to_string(index=False))
    print(out["differences"].round(3).to_string(index=False))
    print(f"same rollouts as the house step table: {out['house_check'] or 'no house table to compare'}")
    print(f"credit measure: {out['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
