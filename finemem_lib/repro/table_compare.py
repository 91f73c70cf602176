"""How one table of a rerun compares with its committed reference: identical, within intervals, or different.

A table is read as a grid of text cells (the CSV as written, nothing rounded). Rows before the first row
holding a number are header rows; a column's name is its text in them (``04_mab.csv`` has three).

- **identical**: the same bytes, or every cell equal (text exactly, numbers within :data:`RTOL` / :data:`ATOL`).
- **within intervals**: not identical, but every number that moved has a 95 % interval in the reference
  and lies inside it, every other cell is equal as above, and the methods keep their order (below).
- **different**: anything else, a changed text cell, a changed shape, or a number without an interval
  that moved.

Where intervals come from, in the reference table:

- a cell written ``m [lo, hi]`` (the papers' layouts): ``m`` must lie in ``[lo, hi]``;
- columns ``lo`` and ``hi`` after an estimate column (``mean, lo, hi``; ``spearman, lo, hi``;
  ``diff, lo, hi``), and ``X_lo`` / ``X_hi`` beside a column ``X`` (``diff, diff_lo, diff_hi``): the
  estimate of a row must lie in that row's ``[lo, hi]``; the bounds themselves may move (a bootstrap over
  other numbers gives other bounds); a row whose bounds are empty has no interval.

Order of methods: a row's method is its first text cell, its group the row's other text cells. For each
column with intervals (only ``avg`` where the table has an ``avg`` column or rows) and each group, every
two methods that the reference orders (values not equal within tolerance) must be ordered the same way
in the rerun.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

RTOL = 1e-9  # numbers equal within float tolerance: the last bits of a float, nothing more
ATOL = 1e-12
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_INTERVAL_CELL = re.compile(rf"^\s*({_NUMBER})\s*\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]\s*$")
_NUMBER_CELL = re.compile(rf"^\s*{_NUMBER}\s*$")
HEADLINE = "avg"

IDENTICAL, WITHIN, DIFFERENT = "identical", "within intervals", "different"


@dataclass
class TableComparison:
    """The outcome for one table, with the cells behind it."""

    name: str
    status: str  # identical | within intervals | different
    details: list[str] = field(default_factory=list)  # what made it different, or the cells that moved
    moved: int = 0  # cells that moved inside their interval

    @property
    def ok(self) -> bool:
        return self.status != DIFFERENT


def _number(cell: str) -> float | None:
    return float(cell) if _NUMBER_CELL.match(cell) else None


def _interval_cell(cell: str) -> tuple[float, float, float] | None:
    found = _INTERVAL_CELL.match(cell)
    return (float(found[1]), float(found[2]), float(found[3])) if found else None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)


def _inside(value: float, lo: float, hi: float) -> bool:
    return lo - ATOL - RTOL * abs(lo) <= value <= hi + ATOL + RTOL * abs(hi)


def read_grid(text: str) -> list[list[str]]:
    """The CSV as rows of text cells."""
    return [row for row in csv.reader(io.StringIO(text))]


def _is_data_row(row: list[str]) -> bool:
    return any(_number(c) is not None or _interval_cell(c) is not None for c in row)


@dataclass
class _Layout:
    """Header rows, column names and the interval columns of a reference grid."""

    header_rows: int
    names: list[str]
    bounds: dict[int, tuple[int, int]]  # estimate column -> (lo column, hi column)
    bound_columns: set[int]


def _layout(grid: list[list[str]]) -> _Layout:
    header_rows = next((i for i, row in enumerate(grid) if _is_data_row(row)), len(grid))
    width = max((len(row) for row in grid), default=0)
    names = [
        " ".join(grid[r][c] for r in range(header_rows) if c < len(grid[r]) and grid[r][c]).strip()
        for c in range(width)
    ]
    index = {name: i for i, name in enumerate(names) if name}
    bounds: dict[int, tuple[int, int]] = {}
    for i, name in enumerate(names):
        if not name.endswith("lo") or name[:-2] + "hi" not in index:
            continue
        prefix = name[:-2]
        estimate = index.get(prefix.rstrip("_")) if prefix.rstrip("_") else None
        if estimate is None and prefix == "" and i > 0:
            estimate = i - 1
        if estimate is not None:
            bounds[estimate] = (i, index[prefix + "hi"])
    return _Layout(header_rows, names, bounds, {c for pair in bounds.values() for c in pair})


def _label(row: list[str]) -> tuple[str, tuple[str, ...]]:
    """(method, group): the row's first text cell and its other text cells."""
    texts = [c for c in row if c and _number(c) is None and _interval_cell(c) is None]
    return (texts[0] if texts else "", tuple(texts[1:]))


def _where(r: int, c: int, row: list[str], layout: _Layout) -> str:
    method = _label(row)[0]
    return f"row {r}{f' ({method})' if method else ''}, {layout.names[c] or f'column {c}'}"


def compare_grids(name: str, new: list[list[str]], ref: list[list[str]]) -> TableComparison:
    """Compare two grids cell by cell under the rules of this module."""
    if len(new) != len(ref):
        return TableComparison(name, DIFFERENT, [f"rows: {len(new)} in the rerun, {len(ref)} in the reference"])
    widths = [r for r, (a, b) in enumerate(zip(new, ref, strict=True)) if len(a) != len(b)]
    if widths:
        row = widths[0]
        detail = f"row {row}: {len(new[row])} cells in the rerun, {len(ref[row])} in the reference"
        return TableComparison(name, DIFFERENT, [detail])
    layout = _layout(ref)
    problems: list[str] = []
    moved: list[str] = []
    estimates: dict[tuple[int, int], tuple[float, float]] = {}  # (row, column) -> (reference, rerun)
    for r, (a_row, b_row) in enumerate(zip(new, ref, strict=True)):
        for c, (a, b) in enumerate(zip(a_row, b_row, strict=True)):
            where = _where(r, c, b_row, layout)
            ia, ib = _interval_cell(a), _interval_cell(b)
            if ib is not None and ia is not None:
                estimates[(r, c)] = (ib[0], ia[0])
                if a == b:
                    continue
                if _inside(ia[0], ib[1], ib[2]):
                    moved.append(f"{where}: rerun {a} vs reference {b}")
                else:
                    problems.append(f"{where}: rerun {ia[0]:g} outside the reference's 95 % interval {b}")
                continue
            na, nb = _number(a), _number(b)
            if na is None or nb is None:
                if a != b:
                    problems.append(f"{where}: rerun {a or '(empty)'} vs reference {b or '(empty)'}")
                continue
            interval = _row_interval(b_row, c, layout)
            if interval is not None:
                estimates[(r, c)] = (nb, na)
            if _close(na, nb):
                continue
            if c in layout.bound_columns:
                moved.append(f"{where}: rerun {a} vs reference {b} (an interval bound)")
            elif interval is not None and _inside(na, *interval):
                moved.append(f"{where}: rerun {a} vs reference {b}, inside [{interval[0]:g}, {interval[1]:g}]")
            elif interval is not None:
                problems.append(
                    f"{where}: rerun {a} outside the reference's 95 % interval [{interval[0]:g}, {interval[1]:g}]"
                )
            else:
                problems.append(f"{where}: rerun {a} vs reference {b} (no interval: must match within float tolerance)")
    problems += _order_changes(ref, estimates, layout)
    if problems:
        return TableComparison(name, DIFFERENT, problems + moved, moved=len(moved))
    if moved:
        return TableComparison(name, WITHIN, moved, moved=len(moved))
    return TableComparison(name, IDENTICAL, ["equal within float tolerance, different bytes"])


def _row_interval(row: list[str], column: int, layout: _Layout) -> tuple[float, float] | None:
    if column not in layout.bounds:
        return None
    lo, hi = (_number(row[i]) if i < len(row) else None for i in layout.bounds[column])
    return (lo, hi) if lo is not None and hi is not None else None


def _order_changes(
    ref: list[list[str]], estimates: dict[tuple[int, int], tuple[float, float]], layout: _Layout
) -> list[str]:
    """Pairs of methods the reference orders one way and the rerun the other (or ties), per column and group."""
    columns = sorted({c for _, c in estimates})
    if any(layout.names[c] == HEADLINE for c in columns):
        columns = [c for c in columns if layout.names[c] == HEADLINE]
    groups: dict[tuple[int, tuple[str, ...]], list[tuple[str, float, float]]] = {}
    for (r, c), (ref_value, new_value) in estimates.items():
        method, group = _label(ref[r])
        if c in columns:
            groups.setdefault((c, group), []).append((method, ref_value, new_value))
    if any(HEADLINE in group for _, group in groups):
        groups = {k: v for k, v in groups.items() if HEADLINE in k[1]}
    changes = []
    for (c, group), rows in sorted(groups.items()):
        for (m1, r1, n1), (m2, r2, n2) in combinations(rows, 2):
            if _close(r1, r2) or ((r1 > r2) == (n1 > n2) and not _close(n1, n2)):
                continue
            where = layout.names[c] + (f" ({', '.join(group)})" if group else "")
            changes.append(
                f"order of methods in {where}: {m1} {'above' if r1 > r2 else 'below'} {m2} in the reference "
                f"({r1:g} vs {r2:g}), not in the rerun ({n1:g} vs {n2:g})"
            )
    return changes


def compare_table(new_path: Path | None, ref_path: Path | None, name: str) -> TableComparison:
    """Compare one CSV with its reference: bytes first, then cells."""
    if new_path is None or not new_path.is_file():
        return TableComparison(name, DIFFERENT, ["missing: the rerun wrote no such table"])
    if ref_path is None or not ref_path.is_file():
        return TableComparison(name, DIFFERENT, ["extra: no committed reference for this table"])
    if new_path.read_bytes() == ref_path.read_bytes():
        return TableComparison(name, IDENTICAL)
    try:
        new, ref = read_grid(new_path.read_text()), read_grid(ref_path.read_text())
    except (UnicodeDecodeError, csv.Error) as exc:
        return TableComparison(name, DIFFERENT, [f"cannot be read as CSV: {exc}"])
    return compare_grids(name, new, ref)
