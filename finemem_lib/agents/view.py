"""The manager's memory view: the most recent items, plus (optionally) the items the chunk is about.

Mem-alpha shows the manager the last ``k`` items of its memory (``view_k``, 5). An UPDATE needs the id
of the item it replaces, so a changed fact whose old item has left those ``k`` can only be inserted
again, and the stale item stays. In the offline miniature that hides most old items: with the fair
oracle's memory on the default held-out split, 57 % of the updates have their old item outside a
5-item recency view (docs/miniature.md).

``related_k > 0`` adds up to ``related_k`` more items: for every sentence of the chunk, the memory item
BM25 ranks first for that sentence (score > 0); the best-scoring of those not already in view are
added. An update sentence shares the person's name and the relation's words with the item it
replaces, so that item is usually its best match. The items shown keep the memory's view order.
``related_k = 0`` is exactly Mem-alpha's view.
"""

from __future__ import annotations

from collections.abc import Sequence

from finemem_lib.core.memory import Memory, MemoryItem
from finemem_lib.core.retrieval import BM25Index


def related_items(memory: Memory, sentences: Sequence[str], related_k: int, exclude: set[str]) -> list[str]:
    """Ids of up to ``related_k`` items that are some chunk sentence's best BM25 match, best score first."""
    if related_k <= 0 or len(memory) == 0 or not sentences:
        return []
    items = memory.items
    index = BM25Index(items, method="lucene")
    best: dict[str, float] = {}
    for sentence in sentences:
        for hit in index.search(sentence, 1, min_score=0.0):
            best[hit.id] = max(best.get(hit.id, 0.0), hit.score)
    ranked = sorted((i for i in best if i not in exclude), key=lambda i: -best[i])
    return ranked[:related_k]


def line_hints(memory: Memory, sentences: Sequence[str]) -> list[MemoryItem | None]:
    """For each chunk sentence, the memory item BM25 ranks first for it (None when no item scores above 0).

    The ``review`` style with ``review_hints`` shows it on the sentence's line, so an UPDATE's target sits right
    before the decision (the item a changed fact replaces shares the person's name and the relation's words).
    """
    if len(memory) == 0:
        return [None] * len(sentences)
    items = {item.id: item for item in memory.items}
    index = BM25Index(list(items.values()), method="lucene")
    out: list[MemoryItem | None] = []
    for sentence in sentences:
        hits = index.search(sentence, 1, min_score=0.0)
        out.append(items[hits[0].id] if hits else None)
    return out


def manager_view(
    memory: Memory,
    k: int,
    order: str = "recency",
    sentences: Sequence[str] | None = None,
    related_k: int = 0,
) -> list[MemoryItem]:
    """The items the manager sees: the last ``k`` in ``order``, plus up to ``related_k`` related to the chunk."""
    if k < 0 or related_k < 0:
        raise ValueError(f"view sizes must be >= 0, got k={k}, related_k={related_k}")
    recent = memory.view(k, order) if k > 0 else []
    if related_k == 0 or not sentences:
        return recent
    shown = {item.id for item in recent}
    shown.update(related_items(memory, sentences, related_k, shown))
    return [item for item in memory.view(None, order) if item.id in shown]
