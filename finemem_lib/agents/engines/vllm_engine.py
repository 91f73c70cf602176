"""The vLLM engine: generation through an attached backend (the GRPO trainer's colocated vLLM engine).

The backend is any object with ``generate(prompts, sampling, seed) -> list[Decoded]``;
:class:`finemem_lib.training.vllm_rollout.VLLMBackend` wraps TRL's ``VLLMGeneration``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finemem_lib.agents.decoding import Decoded
from finemem_lib.agents.engines.base import SamplingParams


class VLLMEngine:
    """All prompts of a call go to the backend at once (it batches and schedules them itself)."""

    name = "vllm"

    def __init__(self, backend: Any) -> None:
        if not callable(getattr(backend, "generate", None)):
            raise TypeError("a vLLM backend needs a generate(prompts, sampling, seed) method")
        self.backend = backend

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: SamplingParams, batch_size: int, seed: int | None = None
    ) -> list[Decoded]:
        """One completion per prompt; ``batch_size`` is not used, ``seed`` goes to the backend."""
        decoded = self.backend.generate([list(p) for p in prompts], sampling, seed)
        if len(decoded) != len(prompts):
            raise ValueError(f"the vLLM backend returned {len(decoded)} completions for {len(prompts)} prompts")
        return list(decoded)
