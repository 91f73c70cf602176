"""``./reproduce.sh check``: compare the tables of a fresh rerun with the committed ones, cell by cell.

``python -m finemem_lib.repro.reproduction NEW_TABLES REFERENCE_TABLES`` prints, for every table, whether it
is byte-identical and, where not, which rows and columns differ (values side by side); it exits 1 when
any table differs, is missing, or is extra. The reference of a profile is ``results/<profile>/tables``
(``results/tables`` for the default profile), committed with the project.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths

MAX_SHOWN = 12


def profile_results(profile: str) -> Path:
    """The results folder a profile owns (``results/`` for the default profile, ``results/<profile>/`` else)."""
    cfg = load_profile(profile)
    return profile_paths(cfg, create=False).results


@dataclass
class TableDiff:
    """How one table of a rerun compares with its reference."""

    name: str
    status: str  # identical | differs | missing | extra
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "identical"


def _cell_differences(new: pd.DataFrame, ref: pd.DataFrame) -> list[str]:
    details = []
    if list(new.columns) != list(ref.columns):
        added, dropped = set(new.columns) - set(ref.columns), set(ref.columns) - set(new.columns)
        details.append(f"columns differ: new {sorted(added) or '-'}, missing {sorted(dropped) or '-'}")
    if len(new) != len(ref):
        details.append(f"rows: {len(new)} in the rerun, {len(ref)} in the reference")
    shared = [c for c in ref.columns if c in new.columns]
    rows = min(len(new), len(ref))
    for column in shared:
        a, b = new[column].iloc[:rows].astype(str), ref[column].iloc[:rows].astype(str)
        for row in (a != b).to_numpy().nonzero()[0]:
            details.append(f"row {row}, {column}: rerun {a.iloc[row]} vs reference {b.iloc[row]}")
    return details


def compare_table(new_path: Path | None, ref_path: Path | None, name: str) -> TableDiff:
    """Compare one CSV with its reference: bytes first, then cells (read as text, so nothing is rounded)."""
    if new_path is None or not new_path.is_file():
        return TableDiff(name, "missing", ["the rerun wrote no such table"])
    if ref_path is None or not ref_path.is_file():
        return TableDiff(name, "extra", ["no committed reference for this table"])
    if new_path.read_bytes() == ref_path.read_bytes():
        return TableDiff(name, "identical")
    try:
        # Every cell as its text: an empty cell is "", not a missing value (which never equals itself).
        new = pd.read_csv(new_path, dtype=str, keep_default_na=False)
        ref = pd.read_csv(ref_path, dtype=str, keep_default_na=False)
        details = _cell_differences(new, ref) or ["same cells, different bytes (line endings or quoting)"]
    except (ValueError, pd.errors.ParserError) as exc:
        details = [f"cannot be read as CSV: {exc}"]
    return TableDiff(name, "differs", details)


def compare_folders(new_dir: str | Path, ref_dir: str | Path) -> list[TableDiff]:
    """Every table in either folder, compared."""
    new_dir, ref_dir = Path(new_dir), Path(ref_dir)
    names = sorted({p.name for p in new_dir.glob("*.csv")} | {p.name for p in ref_dir.glob("*.csv")})
    return [compare_table(new_dir / n, ref_dir / n, n) for n in names]


def report(diffs: Sequence[TableDiff]) -> str:
    lines = []
    for diff in diffs:
        lines.append(
            f"{'ok' if diff.ok else 'DIFFERS' if diff.status == 'differs' else diff.status.upper()}: {diff.name}"
        )
        shown = diff.details[:MAX_SHOWN]
        lines += [f"    {d}" for d in shown]
        if len(diff.details) > MAX_SHOWN:
            lines.append(f"    ... and {len(diff.details) - MAX_SHOWN} more differences")
    return "\n".join(lines)


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
    diffs = compare_folders(args.new, args.reference)
    print(report(diffs))
    bad = [d for d in diffs if not d.ok]
    what = f"profile {args.profile}: " if args.profile else ""
    if not diffs:
        print(f"check: {what}no tables to compare", file=sys.stderr)
        return 1
    if bad:
        print(f"check: {what}{len(bad)} of {len(diffs)} tables differ from {args.reference}", file=sys.stderr)
        return 1
    print(f"check: {what}all {len(diffs)} tables identical to {args.reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
