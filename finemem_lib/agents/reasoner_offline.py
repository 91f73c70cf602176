"""A deterministic offline reader: answers only from the retrieved items' text.

It stands in for the frozen LLM reasoner in the offline miniature, so a question is answered right
only if the memory holds the fact and retrieval found it.

- Factoid sources: pick the retrieved item sharing the most content words with the question
  (stopwords ignored; ties go to the higher-ranked item) among the items that name every entity of
  the question (its capitalised words, sentence-initial words aside); it must cover at least
  ``min_overlap`` of the question's content words, else the answer is ``"I don't know"``. The answer is that
  item's content words that are not in the question, in order. When two conflicting versions of a
  fact are retrieved, the better-overlapping (then higher-ranked) one wins, so stale items hurt.
- Classification sources (those whose instruction asks for ``\\boxed{label}``): a nearest-neighbour
  vote. The retrieved items that carry a label (``Label: 3``) are ordered by content-word overlap
  with the question's sample (ties: retrieval rank); the majority label among the first
  ``vote_k`` wins, ties going to the label of the better-ordered item. With the paper's top-2
  retrieval this is the majority label of the retrieved items; over a long-context window it
  stops the most frequent class from winning every vote. The answer is ``\\boxed{label}``.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import ClassVar

from finemem_lib.agents.instructions import expects_boxed_label
from finemem_lib.agents.reasoner import AnswerRequest, Reasoner
from finemem_lib.core.memory import MemoryItem

UNKNOWN = "I don't know"

STOPWORDS = frozenset(
    """
    a an the and or but nor so yet if then than of in on at to for from by with about into onto over under
    as is are was were be been being am do does did done has have had having will would shall should can
    could may might must not no it its it's this that these those there here what which who whom whose when
    where why how i me my we our you your he him his she her they them their one ones some any all each
    every also just very too now currently still please tell give according latest information
    """.split()  # noqa: SIM905
)
"""Function words and question boilerplate ignored when matching a question to an item."""

_WORD = re.compile(r"\w+(?:['’.\-]\w+)*")
_POSSESSIVE = re.compile(r"['’]s$")
_SENTENCE_BREAK = re.compile(r"[.?!:;\n]\s*")
_LABEL = re.compile(r"\blabels?\s*[:=]\s*([^\s.,;]+)", re.IGNORECASE)


def _key(word: str) -> str:
    """Matching form of a word: lower-case, possessive ``'s`` and a plural / third-person ``s`` dropped."""
    key = _POSSESSIVE.sub("", word.lower())
    return key[:-1] if len(key) > 3 and key.endswith("s") and not key.endswith("ss") else key


def entity_keys(question: str) -> set[str]:
    """Matching forms of the question's capitalised content words that do not open a sentence."""
    keys: set[str] = set()
    for sentence in _SENTENCE_BREAK.split(question):
        for word in _WORD.findall(sentence)[1:]:
            if word[0].isupper() and _is_content(word):
                keys.add(_key(word))
    return keys


def _is_content(word: str) -> bool:
    return word.lower() not in STOPWORDS and _key(word) not in STOPWORDS


def content_words(text: str) -> list[str]:
    """The words of ``text`` that are not stopwords, in order, in their original form."""
    return [w for w in _WORD.findall(text) if _is_content(w)]


class OfflineReader(Reasoner):
    """Deterministic reader over the retrieved items (see the module docstring).

    Args:
        min_overlap: fraction of the question's distinct content words that the chosen item must
            contain (at least one word is always required).
        vote_k: labelled items that vote on a classification answer.
    """

    item_granularity: ClassVar[str] = "sentence"

    def __init__(self, min_overlap: float = 0.5, vote_k: int = 3) -> None:
        if not 0.0 <= min_overlap <= 1.0:
            raise ValueError(f"min_overlap must be in [0, 1], got {min_overlap}")
        if vote_k < 1:
            raise ValueError(f"vote_k must be >= 1, got {vote_k}")
        self.min_overlap, self.vote_k = float(min_overlap), int(vote_k)

    def _answer_texts(self, requests: list[AnswerRequest]) -> list[str]:
        return [self.answer_one(r) for r in requests]

    def answer_one(self, request: AnswerRequest) -> str:
        """The answer text for one request."""
        if expects_boxed_label(request.source):
            return self._classify(request.question, request.items)
        return self._read_factoid(request.question, request.items)

    def _read_factoid(self, question: str, items: tuple[MemoryItem, ...]) -> str:
        question_keys = {_key(w) for w in content_words(question)}
        if not question_keys:
            return UNKNOWN
        entities = entity_keys(question)
        best_item, best_overlap = None, 0
        for item in items:  # retrieval order: a strict improvement is needed to overtake
            item_keys = {_key(w) for w in content_words(item.content)}
            if not entities <= item_keys:
                continue
            overlap = len(question_keys & item_keys)
            if overlap > best_overlap:
                best_item, best_overlap = item, overlap
        needed = max(1.0, self.min_overlap * len(question_keys))
        if best_item is None or best_overlap < needed:
            return UNKNOWN
        answer = [w for w in content_words(best_item.content) if _key(w) not in question_keys]
        return " ".join(answer) if answer else UNKNOWN

    def _classify(self, question: str, items: tuple[MemoryItem, ...]) -> str:
        question_keys = {_key(w) for w in content_words(question)}
        labelled = []
        for rank, item in enumerate(items):
            match = _LABEL.search(item.content)
            if match:
                overlap = len(question_keys & {_key(w) for w in content_words(item.content)})
                labelled.append((-overlap, rank, match.group(1)))
        if not labelled:
            return UNKNOWN
        voters = [label for *_, label in sorted(labelled)[: self.vote_k]]
        counts = Counter(voters)
        top = max(counts.values())
        winner = next(label for label in voters if counts[label] == top)  # first in order among the tied
        return f"\\boxed{{{winner}}}"
