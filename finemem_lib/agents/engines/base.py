"""What every rollout engine of the manager shares: sampling settings, the :class:`Engine` protocol, length batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from finemem_lib.agents.decoding import Decoded


@dataclass(frozen=True)
class SamplingParams:
    """How completions are drawn; ``temperature == 0`` means greedy decoding, ``top_k == 0`` no top-k cut."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@runtime_checkable
class Engine(Protocol):
    """Turns prompts (token ids) into one completion each, with the sampled tokens' log-probabilities.

    ``generate`` keeps the order of ``prompts``; ``batch_size`` caps the rows of one model call.
    Engines that sample with torch draw from torch's global random state (the caller seeds it).
    """

    name: str

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: SamplingParams, batch_size: int, seed: int | None = None
    ) -> list[Decoded]: ...


def length_batches(prompts: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """The prompts' indices in batches of at most ``batch_size``, grouped by length (shortest first; ties in order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def in_length_batches(
    prompts: Sequence[Sequence[int]], batch_size: int, run: Callable[[list[list[int]]], list[Decoded]]
) -> list[Decoded]:
    """``run`` on batches of at most ``batch_size`` prompts grouped by length; results in the prompts' order."""
    results: dict[int, Decoded] = {}
    for chosen in length_batches(prompts, batch_size):
        for index, decoded in zip(chosen, run([list(prompts[i]) for i in chosen]), strict=True):
            results[index] = decoded
    return [results[i] for i in range(len(prompts))]
