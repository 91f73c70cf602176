"""Dataset rows in general: reading parquet safely, the loaders' errors, and the rows a load left out.

Shared by the Memalpha and MemoryAgentBench loaders (:mod:`finemem_lib.data.memalpha`,
:mod:`finemem_lib.data.memoryagentbench`), which re-export these names.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from finemem_lib.data.instance import Instance


class DataSchemaError(ValueError):
    """A dataset row that does not fit the expected schema (the message names file, row, instance and column).

    ``column`` is the column at fault when known.
    """

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class SkippedRow:
    """A row left out by ``on_error="skip"``: where it is, which instance and column, and why."""

    file: str
    row: int
    instance_id: str | None
    column: str | None
    reason: str


class LoadedInstances(list):
    """The instances of a load (a plain list) and, in ``skipped``, the rows left out by ``on_error="skip"``."""

    def __init__(self, instances: Iterable[Instance] = (), skipped: Iterable[SkippedRow] = ()) -> None:
        super().__init__(instances)
        self.skipped: list[SkippedRow] = list(skipped)

    def extend_load(self, other: Iterable[Instance]) -> None:
        """Add another load's instances and the rows it left out."""
        self.extend(other)
        self.skipped.extend(getattr(other, "skipped", ()))

    def skip_counts(self) -> dict[str, Any]:
        """How many rows were left out, and how many per column at fault (``"?"``: the row as a whole)."""
        by_column = Counter(row.column or "?" for row in self.skipped)
        return {"skipped_rows": len(self.skipped), "by_column": dict(sorted(by_column.items()))}


@dataclass(frozen=True)
class InvalidText:
    """A parquet cell whose bytes are not valid UTF-8 (kept so that the row, not the file, is refused)."""

    error: str


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """A table's rows as dicts; a cell that is not valid UTF-8 becomes :class:`InvalidText`."""
    try:
        return table.to_pylist()
    except UnicodeDecodeError:
        pass
    rows = []
    for i in range(table.num_rows):
        row: dict[str, Any] = {}
        for name in table.column_names:
            try:
                row[name] = table.column(name).slice(i, 1).to_pylist()[0]
            except UnicodeDecodeError as exc:
                row[name] = InvalidText(f"byte {exc.object[exc.start]:#04x} at offset {exc.start}: {exc.reason}")
        rows.append(row)
    return rows


def read_parquet_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of one parquet file; a file that is not readable parquet (e.g. truncated) is a
    :class:`DataSchemaError` naming it."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataSchemaError(
            f"{path}: not a readable parquet file, perhaps truncated ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    return table_rows(table)


def invalid_text_error(row: Mapping[str, Any], where: str) -> DataSchemaError | None:
    """An error naming the first cell of ``row`` that is not valid UTF-8, or None."""
    for column, value in row.items():
        if isinstance(value, InvalidText):
            return DataSchemaError(f"{where} column {column!r}: not valid UTF-8 text ({value.error})", column)
    return None


def row_instance_id(row: Mapping[str, Any]) -> str | None:
    """``"<data_source>/<instance_id>"`` of a row when both are plain values, else None (for messages)."""
    source, number = row.get("data_source"), row.get("instance_id")
    if isinstance(source, str) and isinstance(number, str | int) and not isinstance(number, bool):
        return f"{source}/{number}"[:200]
    return None


class DataNotAvailableError(FileNotFoundError):
    """A dataset that is neither on disk nor reachable; the message says what to run or pass."""


def find_split_files(data_dir: str | Path, split: str) -> list[Path]:
    """Parquet files of ``split`` under ``data_dir``: ``split.parquet``, ``split-*.parquet`` or ``data/split-*``.

    ``data_dir`` may also be a single parquet file, which is returned as is.
    """
    root = Path(data_dir)
    if root.is_file():
        return [root]
    patterns = (f"{split}.parquet", f"{split}-*.parquet", f"data/{split}.parquet", f"data/{split}-*.parquet")
    for pattern in patterns:
        found = sorted(root.glob(pattern))
        if found:
            return found
    return sorted(p for p in root.rglob("*.parquet") if p.name.split("-")[0].split(".")[0] == split)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ).lower() in ("1", "true", "yes")


def hub_rows(
    repo_id: str, split: str, config: str | None = None, profile_key: str = "data.memalpha.local_dir"
) -> list[dict[str, Any]]:
    """Rows of a Hub dataset split through ``datasets`` (and its cache); clear error when unavailable."""
    import datasets

    try:
        dataset = datasets.load_dataset(repo_id, config, split=split)
    except Exception as exc:
        local = f"data/hub/{repo_id.split('/')[-1]}"
        hint = (
            f"on a machine with network run `hf download {repo_id} --repo-type dataset --local-dir {local}` "
            f"and pass data_dir='{local}' (in a profile: {profile_key}: {local})"
        )
        state = "offline (HF_HUB_OFFLINE=1) and not in the datasets cache" if _offline() else "not reachable"
        raise DataNotAvailableError(
            f"dataset {repo_id} split {split!r} is {state}: {type(exc).__name__}: {str(exc)[:200]}. To fix: {hint}, "
            "or unset HF_HUB_OFFLINE with network access to fill the cache."
        ) from None
    return list(dataset)
