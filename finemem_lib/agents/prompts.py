"""The memory manager's prompt: instructions, the memory view with ids and the new chunk.

Each chunk gets a fresh prompt (no chat history across chunks), as in Mem-alpha and Fine-Mem:
a system message with the instructions and a user message holding the current memory view
(``[id] content`` lines) and the chunk inside ``<new_chunk>...</new_chunk>``. In the *extractive*
op style the chunk is shown as numbered sentences, and INSERT/UPDATE name a sentence number.
The tool schemas are not part of the text: the chat template renders them from ``tools``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finemem_lib.core.memory import MemoryItem
from finemem_lib.core.ops import NUMBERED_STYLES, STYLES, render_numbered_sentences
from finemem_lib.core.sentences import split_sentences

EMPTY_MEMORY = "(memory is empty)"

_SYSTEM = {
    "content": (
        "You are a memory manager. You read a long input one chunk at a time and keep a memory of short, "
        "self-contained items, so that questions about the input can later be answered from the memory alone. "
        "For each chunk, call the memory tools in a single turn, one call per operation."
    ),
    "extractive": (
        "You are a memory manager. You read a long input one chunk at a time and keep a memory of sentences "
        "from it, so that questions about the input can later be answered from the memory alone. "
        "For each chunk, call the memory tools in a single turn, one call per operation."
    ),
    "review": (
        "You are a memory manager. You read a long input one chunk at a time and keep a memory of sentences "
        "from it, so that questions about the input can later be answered from the memory alone. "
        "For each chunk, review its sentences in order, one line per sentence."
    ),
}

_INSTRUCTIONS = {
    "content": (
        "Remember the following content chunk. Insert the facts worth keeping as new memory items, update an "
        "item (by its id) when the chunk gives newer information about it, delete items that are wrong, or "
        "skip if nothing in the chunk is worth remembering."
    ),
    "extractive": (
        "Remember the following content chunk. Its sentences are numbered. Insert a sentence worth keeping by "
        "its number, update an item (by its id) with a sentence that gives newer information about it, delete "
        "items that are wrong, or skip if nothing in the chunk is worth remembering."
    ),
    "review": (
        "Remember the following content chunk. Its sentences are numbered. For each sentence write one line: "
        "its number, the sentence, then => and a decision: keep (store it), update <id> (it gives newer "
        "information about that item), delete <id> (that item is wrong) or skip."
    ),
}


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"op style must be one of {STYLES}, got {style!r}")


def chunk_sentences(chunk: str) -> list[str]:
    """The chunk's sentences as the extractive style numbers them (1-based in the prompt)."""
    return split_sentences(chunk)


def system_prompt(style: str) -> str:
    """The manager's instructions for an op style (``content`` or ``extractive``)."""
    _check_style(style)
    return _SYSTEM[style]


def render_memory_view(items: Sequence[MemoryItem]) -> str:
    """Memory items as ``[id] content`` lines, or a marker when there are none."""
    lines = [f"[{item.id}] {item.content}" for item in items]
    return "\n".join(lines) if lines else EMPTY_MEMORY


def memory_heading(shown: int, total: int | None) -> str:
    """``Current memory:``, or with Mem-alpha's count ``Current memory (showing the most recent k of M items):``."""
    if total is None:
        return "Current memory:"
    return f"Current memory (showing the most recent {shown} of {total} items):"


NUMBERINGS = ("before", "after")
"""Where the extractive style writes a sentence's number: ``before`` (``1. text``) or ``after`` (``text (1)``)."""


def numbered_sentences(sentences: Sequence[str], numbering: str = "before") -> str:
    """A chunk's sentences one per line with their 1-based numbers before (``N. text``) or after (``text (N)``).

    ``after`` puts each number right behind the words it stands for, so a small model can tie what a
    sentence says to its number with attention to nearby tokens (docs/miniature.md).
    """
    if numbering == "before":
        return render_numbered_sentences(sentences)
    if numbering == "after":
        return "\n".join(f"{s.strip()} ({i})" for i, s in enumerate(sentences, start=1))
    raise ValueError(f"sentence numbering must be one of {NUMBERINGS}, got {numbering!r}")


def user_prompt(
    chunk: str,
    memory_view: Sequence[MemoryItem],
    style: str,
    sentences: Sequence[str] | None = None,
    total: int | None = None,
    numbering: str = "before",
) -> str:
    """The user turn: instructions, the memory view and the chunk.

    Args:
        chunk: the raw chunk text.
        memory_view: the items the manager sees (usually ``memory.view(k)``).
        style: ``content`` shows the chunk as is; ``extractive`` shows it as numbered sentences.
        sentences: the chunk's sentences when already split (extractive style); split here otherwise.
        total: the memory's size; when given the heading says "showing k of M" (Mem-alpha's view).
        numbering: extractive style: sentence numbers ``before`` or ``after`` the sentences.
    """
    _check_style(style)
    if style in NUMBERED_STYLES:
        body = numbered_sentences(sentences if sentences is not None else chunk_sentences(chunk), numbering)
    else:
        body = chunk.strip()
    return (
        f"{_INSTRUCTIONS[style]}\n\n"
        f"{memory_heading(len(memory_view), total)}\n{render_memory_view(memory_view)}\n\n"
        f"<new_chunk>\n{body}\n</new_chunk>"
    )


def build_messages(chunk: str, memory_view: Sequence[MemoryItem], style: str, **layout: Any) -> list[dict[str, Any]]:
    """The chat messages (system + user) of one chunk step; ``layout``: :func:`user_prompt`'s keywords
    (``sentences``, ``total``, ``numbering``)."""
    return [
        {"role": "system", "content": system_prompt(style)},
        {"role": "user", "content": user_prompt(chunk, memory_view, style, **layout)},
    ]
