"""The one instance type everything downstream consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QA:
    """A question with its acceptable answers (any one of them counts)."""

    question: str
    answers: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError("QA.question must be a non-empty string")
        if not self.answers or not all(isinstance(a, str) for a in self.answers):
            raise ValueError(f"QA.answers must be a non-empty tuple of strings (question {self.question!r})")


@dataclass(frozen=True)
class Instance:
    """One long input: its chunks, global questions, per-chunk QAs and where it came from.

    ``chunk_qas[t]`` holds the short factoid QAs about chunk ``t`` (the CSR data); it has one entry
    per chunk, possibly empty.
    """

    id: str
    source: str
    chunks: tuple[str, ...]
    questions: tuple[QA, ...]
    chunk_qas: tuple[tuple[QA, ...], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.chunk_qas:
            object.__setattr__(self, "chunk_qas", tuple(() for _ in self.chunks))
        if len(self.chunk_qas) != len(self.chunks):
            raise ValueError(
                f"instance {self.id!r}: chunk_qas has {len(self.chunk_qas)} entries for {len(self.chunks)} chunks"
            )

    @property
    def num_chunks(self) -> int:
        return len(self.chunks)
