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

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import numpy as np

from finemem_lib.memory import MemoryItem

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
        self.n_docs = len(corpus)
        postings: dict[str, tuple[list[int], list[int]]] = {}
        total = 0
        for d, doc in enumerate(corpus):
            total += len(doc)
            for word, tf in Counter(doc).items():  # first-occurrence order, as rank_bm25 builds its dicts
                docs, tfs = postings.setdefault(word, ([], []))
                docs.append(d)
                tfs.append(tf)
        self._postings = {
            w: (np.asarray(d, dtype=np.int64), np.asarray(t, dtype=np.float64)) for w, (d, t) in postings.items()
        }
        self.idf: dict[str, float] = {}
        if self.n_docs and postings:
            avgdl = total / self.n_docs
            doc_len = np.asarray([len(doc) for doc in corpus], dtype=np.float64)
            self._norm = self.k1 * (1 - self.b + self.b * doc_len / avgdl)
            idf_sum = 0
            negative = []
            for word, (docs, _) in postings.items():
                freq = len(docs)
                idf = math.log(self.n_docs - freq + 0.5) - math.log(freq + 0.5)
                self.idf[word] = idf
                idf_sum += idf
                if idf < 0:
                    negative.append(word)
            eps = self.epsilon * (idf_sum / len(self.idf))
            for word in negative:
                self.idf[word] = eps
        self._contrib: dict[str, np.ndarray] = {}

    def _contribution(self, word: str) -> tuple[np.ndarray, np.ndarray] | None:
        posting = self._postings.get(word)
        if posting is None or not self.idf.get(word):
            return None
        if word not in self._contrib:
            docs, tf = posting
            self._contrib[word] = self.idf[word] * (tf * (self.k1 + 1) / (tf + self._norm[docs]))
        return posting[0], self._contrib[word]

    def get_scores(self, query: Sequence[str]) -> np.ndarray:
        """The score of every document for a tokenized query (repeated tokens count again)."""
        score = np.zeros(self.n_docs)
        for word in query:
            found = self._contribution(word)
            if found is not None:
                score[found[0]] += found[1]
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

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (zeros where nothing matches)."""
        if self._okapi is not None:
            return self._okapi.get_scores(tokenize(query))
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
        order = np.argsort(-scores, kind="stable")[:k]
        hits = [Hit(self.ids[i], int(i), float(scores[i])) for i in order]
        if min_score is not None:
            hits = [h for h in hits if h.score > min_score]
        return hits

    def search_many(self, queries: Sequence[str], k: int = 2, min_score: float | None = None) -> list[list[Hit]]:
        """:meth:`search` for each query."""
        return [self.search(q, k, min_score) for q in queries]


def bm25_top_k(query: str, items: Sequence[MemoryItem], k: int = 2, method: str = "lucene") -> list[Hit]:
    """Retrieve the top-``k`` memory items for one query (builds a throwaway index)."""
    return BM25Index(items, method=method).search(query, k)
