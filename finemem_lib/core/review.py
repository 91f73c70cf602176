"""The ``review`` op style: one line per chunk sentence, the sentence restated, then the decision.

A manager in this style answers a chunk with a review of its numbered sentences, in order::

    1. Last week, a delivery van hosted a small concert. => skip
    2. The job of Rasmus Rosstad is a carpenter. => keep
    3. The job of Rasmus Rosstad is now a locksmith. => update m4

With ``review_hints`` each line also shows the memory item most like its sentence, before the sentence
(``3. [m4: The job of Rasmus Rosstad is a carpenter.] The job of Rasmus Rosstad is now a locksmith. =>
update``): an UPDATE's target is on the line, not looked up in the prompt's view, and the sentence stays right
before the decision (with the item after it, a small manager decides from the item's words instead:
docs/miniature.md). A bare ``update`` on such a line replaces the item the line shows, so the decision is one
word, as keep and skip are; ``update <id>`` still names any item.

``keep`` inserts sentence ``k``, ``update <id>`` replaces item ``<id>`` with it, ``delete <id>`` removes an
item, ``skip`` stores nothing. The number names the sentence, as in the extractive style; the restated text
is not checked (the number decides what is stored). What the style changes is *where* the decision is
made: right after the words it is about. A small model trained from scratch learns to decide from what a
sentence says when its decision token follows the sentence's text, and stays at choosing by position when
the decision is a number pointing back into the prompt (docs/miniature.md measures both).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from finemem_lib.core.memory import MemoryItem, Operation, OpKind

ARROW = "=>"
DECISIONS = ("keep", "skip", "update <id>", "delete <id>")
_NUMBER = re.compile(r"\s*([0-9]{1,9})\s*[.:)]\s?")
_DECISION = re.compile(r"(keep|skip|update|delete)(?:\s+\[?([^\s\]]+)\]?)?", re.IGNORECASE)
_HINT = re.compile(r"\[([^\s:\[\]]+): [^\[\]]*\]")


def restated_line(number: int, sentence: str, hint: MemoryItem | None = None) -> str:
    """The head of sentence ``number``'s line, before its decision: ``N. sentence =>``; with a ``hint`` (the
    memory item most like the sentence: :func:`finemem_lib.agents.view.line_hints`)
    ``N. [m4: item text] sentence =>``."""
    shown = f"[{hint.id}: {hint.content.strip()}] " if hint is not None else ""
    return f"{number}. {shown}{sentence.strip()} {ARROW}"


def split_review_line(line: str) -> tuple[int, str, str] | None:
    """``(number, restated sentence, decision)`` of a line ``N. sentence => decision``; None when it has no
    number or no arrow. Linear in the line's length (no backtracking pattern spans the sentence)."""
    head, arrow, decision = line.partition(ARROW)
    number = _NUMBER.match(head)
    if not arrow or number is None:
        return None
    return int(number.group(1)), head[number.end() :].strip(), decision.strip()


def parse_review_line(line: str) -> tuple[Operation | None, str]:
    """One review line as an operation, or ``(None, reason)`` when it is not one."""
    parts = split_review_line(line)
    if parts is None:
        return None, f"a review line is 'N. sentence {ARROW} decision' (decisions: {', '.join(DECISIONS)})"
    number, head, decision = parts
    verdict = _DECISION.fullmatch(decision)
    if verdict is None:
        return None, f"unknown decision {decision[:40]!r} (one of: {', '.join(DECISIONS)})"
    word, item_id = verdict.group(1).lower(), verdict.group(2)
    if word == "update" and not item_id:
        item_id = shown_item_id(head)
    if word == "keep":
        return Operation(OpKind.INSERT, sentence=number), ""
    if word == "skip":
        return Operation(OpKind.SKIP), ""
    if not item_id:
        shown = " (or a bare 'update' on a line that shows an item)" if word == "update" else ""
        return None, f"{word} needs a memory id ('{word} m3'){shown}"
    if word == "update":
        return Operation(OpKind.UPDATE, sentence=number, item_id=item_id), ""
    return Operation(OpKind.DELETE, item_id=item_id), ""


def shown_item_id(head: str) -> str | None:
    """The id of the item a line's head shows (``[m4: item text] sentence``, review hints), or None."""
    match = _HINT.match(head)
    return match.group(1) if match else None


def review_lines(text: str) -> list[str]:
    """The non-empty lines of a completion (a review has one per sentence)."""
    return [line for line in text.splitlines() if line.strip()]


def render_review(
    ops: Sequence[Operation], sentences: Sequence[str], hints: Sequence[MemoryItem | None] | None = None
) -> str:
    """The review of a chunk that carries out ``ops``: every sentence restated (with its ``hint``), with its decision.

    An UPDATE of the item a line shows is written as a bare ``update``. Sentences no operation names are
    ``skip``; a DELETE (which names no sentence) is written on the line
    of the first sentence otherwise skipped, or on an extra line after the last sentence.
    """
    decisions: dict[int, str] = {}
    deletes: list[str] = []
    for op in ops:
        if op.kind is OpKind.INSERT and op.sentence is not None:
            decisions[op.sentence] = "keep"
        elif op.kind is OpKind.UPDATE and op.sentence is not None:
            hint = hints[op.sentence - 1] if hints and op.sentence <= len(hints) else None
            decisions[op.sentence] = "update" if hint is not None and hint.id == op.item_id else f"update {op.item_id}"
        elif op.kind is OpKind.DELETE:
            deletes.append(f"delete {op.item_id}")
    lines = []
    for number, sentence in enumerate(sentences, start=1):
        decision = decisions.get(number)
        if decision is None:
            decision = deletes.pop(0) if deletes else "skip"
        hint = hints[number - 1] if hints else None
        lines.append(f"{restated_line(number, sentence, hint)} {decision}")
    for extra, decision in enumerate(deletes, start=len(sentences) + 1):
        lines.append(f"{extra}. {ARROW} {decision}")
    return "\n".join(lines)
