"""BM25 top-k retrieval over memory items, with bm25s.

Text is tokenized into lower-case word tokens (``\\w+``), as Mem-alpha does before calling its
BM25. Like ``rank_bm25.get_top_n`` in Mem-alpha, the top ``k`` items are returned even when their
score is zero (unless ``min_score`` is set); an empty memory or a query with no word tokens
retrieves nothing. Ties are broken by memory order (earlier item first), so
results are deterministic.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import numpy as np

from finemem_lib.memory import MemoryItem

logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import: one line per index built

_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Hit:
    """One retrieved item: its id, memory position and BM25 score."""

    id: str
    position: int
    score: float


class BM25Index:
    """A BM25 index over a fixed list of documents (memory items or ``(id, text)`` pairs)."""

    def __init__(
        self,
        docs: Sequence[MemoryItem] | Sequence[tuple[str, str]],
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
    ) -> None:
        pairs = [(d.id, d.content) if isinstance(d, MemoryItem) else (str(d[0]), str(d[1])) for d in docs]
        self.ids = [p[0] for p in pairs]
        self._retriever: bm25s.BM25 | None = None
        corpus = [tokenize(text) for _, text in pairs]
        if any(corpus):
            self._retriever = bm25s.BM25(k1=k1, b=b, method=method, dtype="float64")
            self._retriever.index(corpus, show_progress=False)
            self._vocab = set(self._retriever.vocab_dict)

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (zeros where nothing matches)."""
        if self._retriever is None:
            return np.zeros(len(self.ids))
        tokens = [t for t in tokenize(query) if t in self._vocab and t]
        if not tokens:
            return np.zeros(len(self.ids))
        return np.asarray(self._retriever.get_scores(tokens), dtype=np.float64)[: len(self.ids)]

    def search(self, query: str, k: int = 2, min_score: float | None = None) -> list[Hit]:
        """Top-``k`` documents by score, ties broken by position."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if not self.ids or k == 0 or not tokenize(query):
            return []
        scores = self.scores(query)
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        hits = [Hit(self.ids[i], int(i), float(scores[i])) for i in order]
        if min_score is not None:
            hits = [h for h in hits if h.score > min_score]
        return hits

    def search_many(self, queries: Sequence[str], k: int = 2, min_score: float | None = None) -> list[list[Hit]]:
        """:meth:`search` for each query."""
        return [self.search(q, k, min_score) for q in queries]


def bm25_top_k(query: str, items: Sequence[MemoryItem], k: int = 2) -> list[Hit]:
    """Retrieve the top-``k`` memory items for one query (builds a throwaway index)."""
    return BM25Index(items).search(query, k)
