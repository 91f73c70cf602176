"""A memory built by the manager, as a JSON file: items with their writer step and write history, and the step log.

Written by ``finemem memorize`` and read by ``finemem ask``; plain JSON so any tool can read it::

    {"format": "finemem-memory/1", "items": [{"id", "content", "step", "history": [{"step", "kind", "content"}]}],
     "steps": [{"step", "chunk", "operations": [{"kind", "detail", "executed", "reason"}], "memory_items"}], ...}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finemem_lib.core.memory import Memory, MemoryItem, Operation, OpResult

FORMAT = "finemem-memory/1"


class MemoryFileError(ValueError):
    """A memory file that is missing, is not JSON, or lacks the fields ``finemem ask`` needs."""


def describe_operation(op: Operation) -> str:
    """A short human-readable form of one operation (``insert sentence 3``, ``update m2: ...``)."""
    parts = [op.kind.value]
    if op.item_id:
        parts.append(op.item_id)
    if op.sentence is not None:
        parts.append(f"sentence {op.sentence}")
    if op.content:
        parts.append(repr(op.content[:80]))
    return " ".join(parts)


def operation_records(operations: Sequence[Operation], results: Sequence[OpResult]) -> list[dict[str, Any]]:
    """One JSON-able record per operation: what it was and whether it executed (and why not)."""
    return [
        {
            "kind": op.kind.value,
            "detail": describe_operation(op),
            "executed": bool(result.ok),
            "reason": result.reason,
            "item_id": result.item_id or op.item_id,
        }
        for op, result in zip(operations, results, strict=True)
    ]


def memory_record(memory: Memory) -> list[dict[str, Any]]:
    """The items of ``memory`` with their writer step and full write history."""
    return [
        {
            "id": item.id,
            "content": item.content,
            "step": item.step,
            "history": [{"step": w.step, "kind": w.kind.value, "content": w.content} for w in memory.history(item.id)],
        }
        for item in memory.items
    ]


def write_memory_file(path: str | Path, memory: Memory, steps: Sequence[Mapping[str, Any]], **meta: Any) -> Path:
    """Write the memory, the per-step log and any metadata (manager, inputs, profile) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, **meta, "items": memory_record(memory), "steps": list(steps)}
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def read_memory_file(path: str | Path) -> tuple[list[MemoryItem], dict[str, Any]]:
    """The items of a memory file and the whole record; a bad file raises :class:`MemoryFileError` saying why."""
    path = Path(path)
    if not path.is_file():
        raise MemoryFileError(f"no memory file at {path}: write one with 'finemem memorize --out {path}'")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MemoryFileError(f"{path} is not a JSON memory file ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("items"), list):
        raise MemoryFileError(f"{path} has no 'items' list: is it a file written by 'finemem memorize'?")
    items = []
    for n, raw in enumerate(record["items"]):
        try:
            items.append(MemoryItem(id=str(raw["id"]), content=str(raw["content"]), step=int(raw["step"])))
        except (KeyError, TypeError, ValueError):
            raise MemoryFileError(
                f"{path}: item {n} needs 'id', 'content' and an integer 'step', got {raw!r}"
            ) from None
    return items, record
