"""The frozen reasoning agent: one interface, three backends.

A :class:`Reasoner` turns :class:`AnswerRequest` objects (a question, its data source and the memory
items retrieved for it) into :class:`Answer` objects (the answer text and the ids of the items used
as evidence). As in the paper, the evidence of a query is the set of items retrieved for it
(𝓜_j), so every backend reports the ids of the items it was given, in retrieval order.

Backends (built by :func:`finemem_lib.agents.reasoner_factory.build_reasoner` from the ``reasoner:``
config section):

- ``offline``: :class:`~finemem_lib.agents.reasoner_offline.OfflineReader`, deterministic, reads
  only the retrieved items (default profile and tests).
- ``hf``: :class:`~finemem_lib.agents.reasoner_hf.HFReasoner`, a transformers causal LM.
- ``openai``: :class:`~finemem_lib.agents.reasoner_openai.OpenAIReasoner`, an OpenAI-compatible
  endpoint such as vLLM serving Qwen3-32B.

A backend that cannot answer raises (``LLMError`` for endpoints); it never returns a silent empty
answer that would score 0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from finemem_lib.agents.instructions import build_messages
from finemem_lib.core.memory import MemoryItem
from finemem_lib.core.metrics import clean_prediction


@dataclass(frozen=True)
class AnswerRequest:
    """One question to answer from the items retrieved for it (best first)."""

    question: str
    source: str
    items: tuple[MemoryItem, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError("AnswerRequest.question must be a non-empty string")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"AnswerRequest.source must be a non-empty string (question {self.question!r})")
        items = tuple(self.items)
        if not all(isinstance(item, MemoryItem) for item in items):
            raise ValueError(f"AnswerRequest.items must be MemoryItem objects (question {self.question!r})")
        object.__setattr__(self, "items", items)

    def messages(self) -> list[dict[str, str]]:
        """The chat messages an LLM backend sends for this request."""
        return build_messages(self.question, self.source, [item.content for item in self.items])


@dataclass(frozen=True)
class Answer:
    """The reasoner's answer and the ids of the items it was given as evidence."""

    text: str
    evidence_ids: tuple[str, ...]


def clean_output(text: str) -> str:
    """Drop a reasoning trace as Mem-alpha does (:func:`finemem_lib.core.metrics.clean_prediction`): keep the
    text after the first ``</think>`` (up to a second one); a ``<think>`` left over gives ``"Empty"``."""
    return clean_prediction(text).strip()


class Reasoner(ABC):
    """Answers questions from retrieved items. Subclasses implement :meth:`_answer_texts`.

    ``item_granularity`` tells callers that build items from raw text (the baselines) whether the
    backend wants one item per sentence (``"sentence"``, the offline reader) or passages
    (``"passage"``, LLMs).
    """

    item_granularity: ClassVar[str] = "passage"

    def answer(self, requests: Sequence[AnswerRequest]) -> list[Answer]:
        """One answer per request, in order, from one batched backend call."""
        requests = list(requests)
        for i, request in enumerate(requests):
            if not isinstance(request, AnswerRequest):
                raise TypeError(f"requests[{i}] is a {type(request).__name__}, not an AnswerRequest")
        if not requests:
            return []
        texts = self._answer_texts(requests)
        if len(texts) != len(requests):
            raise RuntimeError(f"{type(self).__name__} returned {len(texts)} answers for {len(requests)} requests")
        return [
            Answer(clean_output(text), tuple(item.id for item in request.items))
            for text, request in zip(texts, requests, strict=True)
        ]

    @abstractmethod
    def _answer_texts(self, requests: list[AnswerRequest]) -> list[str]:
        """Raw answer text for each request (same order)."""
