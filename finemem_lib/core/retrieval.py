"""BM25 top-k retrieval over memory items: Okapi parity (Mem-alpha's ranking) or bm25s's variants.

Text is tokenized into lower-case ``\\b\\w+\\b`` tokens, as Mem-alpha's memory server does
(``memory_server.py``, ``MemoryProcessor._tokenize``) before ranking with ``rank_bm25.BM25Okapi``.

Two scoring methods (``retrieval.bm25`` in the profiles):

- ``okapi`` (paper profile): :class:`OkapiScorer`, a vectorised scorer of ``rank_bm25.BM25Okapi``'s
  formula, same k1 = 1.5, b = 0.75, and IDF log((N - n + 0.5) / (n + 0.5)) floored at
  epsilon * mean IDF (epsilon = 0.25) for terms in more than half of the items; its scores are
  bit-identical to rank_bm25's (the same floating-point operations in the same order).
- ``lucene`` (offline default) or any other bm25s method (``robertson``, ``atire``, ``bm25l``,
  ``bm25+``): bm25s's implementation; Lucene's IDF is never negative, so frequent words rank
  differently from Okapi's.

Like Mem-alpha's stable sort of scores, the top ``k`` items are returned even when their score is
zero (unless ``min_score`` is set) and ties keep memory order (earlier item first); an empty
memory or a query with no word tokens retrieves nothing.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import numpy as np

from finemem_lib.core.memory import MemoryItem

# bm25s sets its logger to DEBUG at import and logs "Building index from tokens" on every index build
# (hundreds of lines per notebook once logging is configured): keep only its warnings.
logging.getLogger("bm25s").setLevel(logging.WARNING)

_WORD = re.compile(r"\b\w+\b", re.UNICODE)
METHODS = ("okapi", "lucene", "robertson", "atire", "bm25l", "bm25+")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (``re.findall(r"\\b\\w+\\b", text.lower())``)."""
    return _WORD.findall(text.lower())


class OkapiScorer:
    """``rank_bm25.BM25Okapi`` scores, vectorised: per-term contributions are computed once per term.

    Args:
        corpus: tokenized documents.
        k1, b, epsilon: as ``BM25Okapi`` (1.5, 0.75, 0.25).

    A corpus without any token scores every document 0 (rank_bm25 itself fails on it).
    """

    def __init__(self, corpus: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25):
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.n_docs = n = len(corpus)
        # term ids in first-occurrence order over the corpus: the order of rank_bm25's document-frequency dict
        self.vocab: dict[str, int] = {}
        term_ids = np.fromiter(
            (self.vocab.setdefault(w, len(self.vocab)) for doc in corpus for w in doc), dtype=np.int64
        )
        doc_len = np.fromiter((len(doc) for doc in corpus), dtype=np.int64, count=n)
        self.idf: dict[str, float] = {}
        self._contrib: dict[str, np.ndarray | None] = {}
        if not n or not self.vocab:
            return
        pairs, tf = np.unique(term_ids * n + np.repeat(np.arange(n), doc_len), return_counts=True)
        self._docs = pairs % n  # sorted by term, then document
        self._tf = tf.astype(np.float64)
        df = np.bincount(pairs // n, minlength=len(self.vocab))
        self._start = np.concatenate(([0], np.cumsum(df)))
        avgdl = int(doc_len.sum()) / n
        self._norm = self.k1 * (1 - self.b + self.b * doc_len.astype(np.float64) / avgdl)
        idf = [math.log(n - freq + 0.5) - math.log(freq + 0.5) for freq in df.tolist()]
        idf_sum = 0
        for value in idf:  # summed in rank_bm25's order, so the mean (and the floor) is bit-identical
            idf_sum += value
        eps = self.epsilon * (idf_sum / len(idf))
        self.idf = {word: (eps if idf[t] < 0 else idf[t]) for word, t in self.vocab.items()}

    def _contribution(self, word: str) -> np.ndarray | None:
        """The term's score in every document (None if it scores nothing), cached.

        Documents without the term get 0.0 (rank_bm25 adds idf * 0 there: 0.0 or -0.0, which leaves
        every sum unchanged), so adding the whole vector is bit-identical to rank_bm25's update."""
        if word in self._contrib:
            return self._contrib[word]
        found = None
        t = self.vocab.get(word)
        if t is not None and self.idf[word]:
            lo, hi = self._start[t], self._start[t + 1]
            docs, tf = self._docs[lo:hi], self._tf[lo:hi]
            found = np.zeros(self.n_docs)
            found[docs] = self.idf[word] * (tf * (self.k1 + 1) / (tf + self._norm[docs]))
        self._contrib[word] = found
        return found

    def get_scores(self, query: Sequence[str]) -> np.ndarray:
        """The score of every document for a tokenized query (repeated tokens count again)."""
        score = np.zeros(self.n_docs)
        for word in query:
            found = self._contribution(word)
            if found is not None:
                score += found
        return score


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
        epsilon: float = 0.25,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"retrieval method must be one of {METHODS}, got {method!r}")
        pairs = [(d.id, d.content) if isinstance(d, MemoryItem) else (str(d[0]), str(d[1])) for d in docs]
        self.ids = [p[0] for p in pairs]
        self.method = method
        self._retriever: bm25s.BM25 | None = None
        self._okapi: OkapiScorer | None = None
        corpus = [tokenize(text) for _, text in pairs]
        if method == "okapi":
            self._okapi = OkapiScorer(corpus, k1=k1, b=b, epsilon=epsilon)
        elif any(corpus):
            self._retriever = bm25s.BM25(k1=k1, b=b, method=method, dtype="float64")
            self._retriever.index(corpus, show_progress=False)
            self._vocab = set(self._retriever.vocab_dict)

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, query: str | Sequence[str]) -> np.ndarray:
        """BM25 score of every document for ``query`` (text or its tokens; zeros where nothing matches)."""
        query_tokens = tokenize(query) if isinstance(query, str) else list(query)
        if self._okapi is not None:
            return self._okapi.get_scores(query_tokens)
        if self._retriever is None:
            return np.zeros(len(self.ids))
        tokens = [t for t in query_tokens if t in self._vocab and t]
        if not tokens:
            return np.zeros(len(self.ids))
        return np.asarray(self._retriever.get_scores(tokens), dtype=np.float64)[: len(self.ids)]

    def search(self, query: str, k: int = 2, min_score: float | None = None) -> list[Hit]:
        """Top-``k`` documents by score, ties broken by position."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        tokens = tokenize(query)
        if not self.ids or k == 0 or not tokens:
            return []
        scores = self.scores(tokens)
        order = np.argsort(-scores, kind="stable")[:k]
        hits = [Hit(self.ids[i], i, s) for i, s in zip(order.tolist(), scores[order].tolist(), strict=True)]
        if min_score is not None:
            hits = [h for h in hits if h.score > min_score]
        return hits

    def search_many(self, queries: Sequence[str], k: int = 2, min_score: float | None = None) -> list[list[Hit]]:
        """:meth:`search` for each query."""
        return [self.search(q, k, min_score) for q in queries]


def bm25_top_k(query: str, items: Sequence[MemoryItem], k: int = 2, method: str = "lucene") -> list[Hit]:
    """Retrieve the top-``k`` memory items for one query (builds a throwaway index)."""
    return BM25Index(items, method=method).search(query, k)
