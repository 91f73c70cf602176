"""Per-question evaluation records in JSONL, appended after each instance, resumable without loss or duplicates.

One file per (benchmark, method): a header line (``"type": "header"``: method, benchmark, model, config hash,
git revision, package versions) and then one ``"type": "record"`` line per question. The lines of one
instance are written with a single ``write`` followed by ``fsync``, each carrying ``q`` (the question's
index) and ``n_questions``. On reopening, an instance counts as finished only when all its questions are
there; a torn last line or an instance cut short (the process was killed mid-write) is dropped and the file
rewritten atomically, so a rerun evaluates exactly the unfinished instances. A file whose header has a
different config hash belongs to another configuration: it is moved aside (``*.stale-<time>.jsonl``) and
the evaluation starts afresh.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from finemem_lib.infra.paths import repo_relative

logger = logging.getLogger(__name__)


class RecordStore:
    """The JSONL records of one (benchmark, method)."""

    def __init__(self, path: str | Path, header: Mapping[str, Any]) -> None:
        if "config_hash" not in header:
            raise ValueError("a record header needs a config_hash")
        self.path = Path(path)
        self.header = {"type": "header", **header}
        self.records: list[dict[str, Any]] = []
        self._open()

    # ------------------------------------------------------------------ reading
    def _read_lines(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]], bool]:
        header, records, damaged = None, [], False
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    damaged = True  # a torn line (killed mid-write)
                    continue
                if not line.endswith("\n"):
                    damaged = True
                    continue
                if obj.get("type") == "header" and header is None:
                    header = obj
                elif obj.get("type") == "record":
                    records.append(obj)
                else:
                    damaged = True
        return header, records, damaged

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.is_file():
            self._rewrite([])
            return
        header, records, damaged = self._read_lines()
        if header is None or header.get("config_hash") != self.header["config_hash"]:
            stale = self.path.with_name(f"{self.path.stem}.stale-{time.strftime('%Y%m%dT%H%M%S')}.jsonl")
            self.path.replace(stale)
            logger.warning(
                "%s was made with another configuration; moved to %s, starting afresh",
                repo_relative(self.path),
                repo_relative(stale),
            )
            self._rewrite([])
            return
        complete = _complete_records(records)
        if damaged or len(complete) != len(records):
            logger.warning(
                "%s: dropping %d record(s) of unfinished instances or torn lines",
                repo_relative(self.path),
                len(records) - len(complete),
            )
            self._rewrite(complete)
        else:
            self.records = records

    def _rewrite(self, records: Sequence[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(_line(self.header))
            handle.writelines(_line(r) for r in records)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        self.records = list(records)

    # ------------------------------------------------------------------ state
    def finished(self) -> set[str]:
        """Ids of the instances whose every question is recorded."""
        return {r["instance_id"] for r in self.records}

    def append_instance(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append all records of one instance at once (one write, then fsync)."""
        if not records:
            raise ValueError("an instance needs at least one record")
        ids = {r["instance_id"] for r in records}
        if len(ids) != 1:
            raise ValueError(f"append_instance got records of several instances: {sorted(ids)}")
        (instance_id,) = ids
        if instance_id in self.finished():
            raise ValueError(f"instance {instance_id!r} is already recorded in {self.path}")
        n = len(records)
        lines = [{"type": "record", **r, "q": j, "n_questions": n} for j, r in enumerate(records)]
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(_line(r) for r in lines))
            handle.flush()
            os.fsync(handle.fileno())
        self.records.extend(lines)


def _line(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str) + "\n"


def _complete_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of instances with every question present exactly once (first copy kept, order kept)."""
    by_instance: dict[str, dict[int, dict[str, Any]]] = {}
    expected: dict[str, int] = {}
    for r in records:
        by_instance.setdefault(r["instance_id"], {}).setdefault(int(r["q"]), r)
        expected[r["instance_id"]] = int(r["n_questions"])
    keep = {i for i, qs in by_instance.items() if set(qs) == set(range(expected[i]))}
    out, seen = [], set()
    for r in records:
        key = (r["instance_id"], int(r["q"]))
        if r["instance_id"] in keep and key not in seen:
            seen.add(key)
            out.append(r)
    return out


def read_records(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Header and complete records of a records file (for reading results without evaluating)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation records at {path}")
    header, records = None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if obj.get("type") == "header":
            header = obj
        elif obj.get("type") == "record":
            records.append(obj)
    return header or {}, _complete_records(records)
