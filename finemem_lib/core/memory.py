"""The memory environment: a flat list of items {id, content, step} with write provenance.

An operation is applied with :meth:`Memory.apply`, which never raises on a bad operation: it
returns an :class:`OpResult` saying whether the operation executed and, if not, why. No two live
items hold the same text: an INSERT of text already held is skipped, and an UPDATE to text held by
another item merges the updated item into that one (both count as executed). Every item
remembers the step that last wrote it (``step``, the paper's phi(m)) and its full write history,
which is what evidence-anchored attribution needs.
"""

from __future__ import annotations

import numbers
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

from finemem_lib.core.tokens import TokenCounter, regex_token_count

_SURROGATE = re.compile("[\ud800-\udfff]")


class OpKind(str, Enum):
    """The four memory operations of the paper."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    SKIP = "skip"


@dataclass(frozen=True)
class Operation:
    """One memory operation.

    INSERT/UPDATE carry either ``content`` (content style) or a 1-based ``sentence`` number into
    the current chunk's sentences (extractive style). UPDATE/DELETE name ``item_id``.
    """

    kind: OpKind
    content: str | None = None
    sentence: int | None = None
    item_id: str | None = None

    def __post_init__(self) -> None:
        """Check field types, so a hand-built operation with a wrong type fails here, naming the field."""
        if not isinstance(self.kind, OpKind):
            try:
                object.__setattr__(self, "kind", OpKind(self.kind))
            except ValueError:
                kinds = ", ".join(repr(k.value) for k in OpKind)
                raise TypeError(f"Operation.kind must be an OpKind ({kinds}), got {self.kind!r}") from None
        for name in ("content", "item_id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"Operation.{name} must be a str or None, got {type(value).__name__} {value!r:.60}")
            if value is not None and _SURROGATE.search(value):
                raise ValueError(f"Operation.{name} is not valid Unicode (it holds a lone surrogate): {value!r:.60}")
        if self.sentence is not None:
            if isinstance(self.sentence, bool) or not isinstance(self.sentence, numbers.Integral):
                raise TypeError(
                    f"Operation.sentence must be an int or None, got {type(self.sentence).__name__} {self.sentence!r}"
                )
            object.__setattr__(self, "sentence", int(self.sentence))


@dataclass(frozen=True)
class OpResult:
    """Outcome of applying one operation: ``ok`` if it executed; ``reason`` explains a failure or a no-op."""

    ok: bool
    reason: str = ""
    item_id: str | None = None


VIEW_ORDERS = ("recency", "position")
"""How the manager's view picks and orders its last ``k`` items (see :meth:`Memory.view`)."""


@dataclass(frozen=True)
class MemoryItem:
    """A memory item; ``step`` is the (0-based) chunk step that last wrote it."""

    id: str
    content: str
    step: int


@dataclass(frozen=True)
class WriteRecord:
    """One write to an item: the step, the operation kind and the content written (None for DELETE)."""

    step: int
    kind: OpKind
    content: str | None


@dataclass(frozen=True)
class MemorySnapshot:
    """An immutable copy of a memory's full state, for :meth:`Memory.restore`."""

    items: tuple[MemoryItem, ...]
    write_order: tuple[tuple[str, int], ...]
    history: tuple[tuple[str, tuple[WriteRecord, ...]], ...]
    write_counter: int
    id_counter: int
    rng_state: object


class Memory:
    """Flat memory with provenance.

    Args:
        token_counter: counts tokens of a string (see :mod:`finemem_lib.core.tokens`).
        id_style: ``"hex"`` gives Mem-alpha-style 4-hex-char ids drawn from a seeded generator;
            ``"short"`` gives ``m1, m2, ...`` (used by the extractive op style for small models).
        seed: seeds the hex id generator so ids are reproducible.
    """

    def __init__(
        self,
        token_counter: TokenCounter = regex_token_count,
        id_style: str = "hex",
        seed: int = 0,
    ) -> None:
        if id_style not in ("hex", "short"):
            raise ValueError(f"id_style must be 'hex' or 'short', got {id_style!r}")
        self._count_tokens = token_counter
        self.id_style = id_style
        self._rng = random.Random(seed)
        self._items: dict[str, MemoryItem] = {}
        self._write_seq: dict[str, int] = {}
        self._history: dict[str, list[WriteRecord]] = {}
        self._contents: Counter[str] = Counter()
        self._token_cache: dict[str, int] = {}
        self._write_counter = 0
        self._id_counter = 0

    # ------------------------------------------------------------------ reading
    @property
    def items(self) -> list[MemoryItem]:
        """Items in insertion order."""
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[MemoryItem]:
        return iter(list(self._items.values()))

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def get(self, item_id: str) -> MemoryItem | None:
        """The item with this id, or None."""
        return self._items.get(item_id)

    def writer_step(self, item_id: str) -> int:
        """The step that last wrote the item (phi(m) in the paper)."""
        if item_id not in self._items:
            raise KeyError(f"no memory item with id {item_id!r}")
        return self._items[item_id].step

    def history(self, item_id: str) -> list[WriteRecord]:
        """Every write to the item, oldest first (kept after a DELETE)."""
        if item_id not in self._history:
            raise KeyError(f"no memory item with id {item_id!r} was ever written")
        return list(self._history[item_id])

    def view(self, k: int | None = 5, order: str = "recency") -> list[MemoryItem]:
        """The manager's view: the last ``k`` items (all if None) in one of two orders.

        ``recency`` (offline default): by last write, oldest write first, so an UPDATE moves its item
        to the end. ``position`` (Mem-alpha's ``Memory.render_system_prompt``: ``semantic[-k:]``): by list
        position, an UPDATE keeping its item's place and an INSERT appending.
        """
        if order not in VIEW_ORDERS:
            raise ValueError(f"view order must be one of {VIEW_ORDERS}, got {order!r}")
        if order == "position":
            ordered = list(self._items.values())
        else:
            ordered = sorted(self._items.values(), key=lambda item: self._write_seq[item.id])
        return ordered if k is None else ordered[max(0, len(ordered) - k) :]

    def render(self, k: int | None = 5) -> str:
        """The view as text, one ``[id] content`` line per item."""
        lines = [f"[{item.id}] {item.content}" for item in self.view(k)]
        return "\n".join(lines) if lines else "(memory is empty)"

    def num_tokens(self) -> int:
        """Memory length L(M) in tokens, through the token counter."""
        return sum(self._tokens_of(item.content) for item in self._items.values())

    def _tokens_of(self, text: str) -> int:
        if text not in self._token_cache:
            self._token_cache[text] = self._count_tokens(text)
        return self._token_cache[text]

    # ------------------------------------------------------------------ writing
    def apply(self, op: Operation, step: int, sentences: Sequence[str] | None = None) -> OpResult:
        """Apply one operation written at ``step``; never raises on a bad operation."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        if op.kind is OpKind.SKIP:
            return OpResult(True, "skip")
        if op.kind is OpKind.DELETE:
            return self._delete(op.item_id, step)
        text, error = self._resolve_content(op, sentences)
        if error:
            return OpResult(False, error)
        if op.kind is OpKind.INSERT:
            return self._insert(text, step)
        if op.kind is OpKind.UPDATE:
            return self._update(op.item_id, text, step)
        return OpResult(False, f"unknown operation kind {op.kind!r}")

    def apply_all(self, ops: Iterable[Operation], step: int, sentences: Sequence[str] | None = None) -> list[OpResult]:
        """Apply operations in order; each result says whether that one executed."""
        return [self.apply(op, step, sentences) for op in ops]

    def _resolve_content(self, op: Operation, sentences: Sequence[str] | None) -> tuple[str, str]:
        if op.content is not None:
            text = op.content.strip()
        elif op.sentence is not None:
            if sentences is None:
                return "", "a sentence-number operation needs the chunk's sentences"
            if isinstance(op.sentence, bool) or not 1 <= op.sentence <= len(sentences):
                return "", f"sentence {op.sentence} is out of range 1..{len(sentences)}"
            text = sentences[op.sentence - 1].strip()
        else:
            return "", f"{op.kind.value} needs content or a sentence number"
        if not text:
            return "", "empty content"
        return text, ""

    def _new_id(self) -> str:
        self._id_counter += 1
        if self.id_style == "short":
            return f"m{self._id_counter}"
        width = 4 if self._id_counter <= 0xC000 else 8
        while True:
            candidate = f"{self._rng.getrandbits(4 * width):0{width}x}"
            if candidate not in self._history:
                return candidate

    def _record(self, item: MemoryItem, kind: OpKind) -> None:
        self._write_counter += 1
        self._write_seq[item.id] = self._write_counter
        self._history.setdefault(item.id, []).append(WriteRecord(item.step, kind, item.content))

    def _insert(self, text: str, step: int) -> OpResult:
        if self._contents[text] > 0:
            existing = next(i.id for i in self._items.values() if i.content == text)
            return OpResult(True, "duplicate content: insert skipped", existing)
        item = MemoryItem(self._new_id(), text, step)
        self._items[item.id] = item
        self._contents[text] += 1
        self._record(item, OpKind.INSERT)
        return OpResult(True, "", item.id)

    def _update(self, item_id: str | None, text: str, step: int) -> OpResult:
        old = self._items.get(item_id) if item_id is not None else None
        if old is None:
            return OpResult(False, f"update of unknown memory id {item_id!r}")
        if self._contents[text] > 0 and old.content != text:
            # the new text is already held by another item: as for INSERT, keep one copy (that item),
            # and the updated item, whose old text is being replaced, is removed
            existing = next(i.id for i in self._items.values() if i.content == text)
            self._remove(old, step)
            return OpResult(True, f"duplicate content: {old.id} merged into {existing}", existing)
        self._contents[old.content] -= 1
        self._contents[text] += 1
        item = MemoryItem(old.id, text, step)
        self._items[old.id] = item
        self._record(item, OpKind.UPDATE)
        return OpResult(True, "", item.id)

    def _delete(self, item_id: str | None, step: int) -> OpResult:
        old = self._items.get(item_id) if item_id is not None else None
        if old is None:
            return OpResult(False, f"delete of unknown memory id {item_id!r}")
        self._remove(old, step)
        return OpResult(True, "", old.id)

    def _remove(self, old: MemoryItem, step: int) -> None:
        del self._items[old.id]
        self._contents[old.content] -= 1
        self._write_seq.pop(old.id)
        self._history[old.id].append(WriteRecord(step, OpKind.DELETE, None))

    # ------------------------------------------------------------------ state
    def snapshot(self) -> MemorySnapshot:
        """An immutable copy of the whole state."""
        return MemorySnapshot(
            items=tuple(self._items.values()),
            write_order=tuple(self._write_seq.items()),
            history=tuple((k, tuple(v)) for k, v in self._history.items()),
            write_counter=self._write_counter,
            id_counter=self._id_counter,
            rng_state=self._rng.getstate(),
        )

    def restore(self, snap: MemorySnapshot) -> None:
        """Return to a state taken by :meth:`snapshot`."""
        self._items = {item.id: item for item in snap.items}
        self._write_seq = dict(snap.write_order)
        self._history = {k: list(v) for k, v in snap.history}
        self._contents = Counter(item.content for item in snap.items)
        self._write_counter = snap.write_counter
        self._id_counter = snap.id_counter
        self._rng.setstate(snap.rng_state)  # type: ignore[arg-type]
