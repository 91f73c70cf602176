"""``./reproduce.sh check``: compare the tables of a fresh rerun with the committed ones, table by table.

``python -m finemem_lib.repro.reproduction NEW_TABLES REFERENCE_TABLES`` prints, for every table, one of
``identical`` (same bytes, or every cell equal within float tolerance: the same machine), ``within
intervals`` (every number that moved lies inside the committed cell's 95 % interval and the methods keep
their order) or ``DIFFERENT`` (with the cells and orders that differ), then a count of each. It exits 1
only when a table is different (a missing or extra table is different). The rules, and which tables have
intervals, are in :mod:`finemem_lib.repro.table_compare`. The reference of a profile is
``results/<profile>/tables`` (``results/tables`` for the default profile), committed with the project.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths
from finemem_lib.repro.table_compare import DIFFERENT, IDENTICAL, WITHIN, TableComparison, compare_table

MAX_SHOWN = 12

__all__ = ["TableComparison", "compare_folders", "compare_table", "main", "profile_results", "report"]


def profile_results(profile: str) -> Path:
    """The results folder a profile owns (``results/`` for the default profile, ``results/<profile>/`` else)."""
    cfg = load_profile(profile)
    return profile_paths(cfg, create=False).results


def compare_folders(new_dir: str | Path, ref_dir: str | Path) -> list[TableComparison]:
    """Every table in either folder, compared."""
    new_dir, ref_dir = Path(new_dir), Path(ref_dir)
    names = sorted({p.name for p in new_dir.glob("*.csv")} | {p.name for p in ref_dir.glob("*.csv")})
    return [compare_table(new_dir / n, ref_dir / n, n) for n in names]


def report(comparisons: Sequence[TableComparison]) -> str:
    """One line per table (``identical`` / ``within intervals`` / ``DIFFERENT``), then its first details."""
    lines = []
    for item in comparisons:
        if item.status == WITHIN:
            lines.append(f"within intervals: {item.name} ({item.moved} cells moved, each inside its 95 % interval)")
        else:
            lines.append(f"{'DIFFERENT' if item.status == DIFFERENT else item.status}: {item.name}")
        shown = item.details[:MAX_SHOWN]
        lines += [f"    {d}" for d in shown]
        if len(item.details) > MAX_SHOWN:
            lines.append(f"    ... and {len(item.details) - MAX_SHOWN} more")
    return "\n".join(lines)


def summary(comparisons: Sequence[TableComparison]) -> str:
    counts = {s: sum(c.status == s for c in comparisons) for s in (IDENTICAL, WITHIN, DIFFERENT)}
    return f"{counts[IDENTICAL]} identical, {counts[WITHIN]} within intervals, {counts[DIFFERENT]} different"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finemem_lib.repro.reproduction", description=__doc__.splitlines()[0]
    )
    parser.add_argument("new", help="tables folder of the rerun")
    parser.add_argument("reference", help="committed tables folder")
    parser.add_argument("--profile", default=None, help="named in the summary line")
    args = parser.parse_args(argv)
    if not Path(args.reference).is_dir():
        print(f"check: no reference tables at {args.reference} (commit the profile's tables first)", file=sys.stderr)
        return 1
    comparisons = compare_folders(args.new, args.reference)
    what = f"profile {args.profile}: " if args.profile else ""
    if not comparisons:
        print(f"check: {what}no tables to compare", file=sys.stderr)
        return 1
    print(report(comparisons))
    line = f"check: {what}{summary(comparisons)} (of {len(comparisons)} tables, against {args.reference})"
    if any(not c.ok for c in comparisons):
        print(line, file=sys.stderr)
        return 1
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
