"""Rollout engines of the manager policy, one per file, behind one protocol (:class:`Engine`).

- ``native`` (:class:`NativeEngine`): the batched KV-cache decoder of :mod:`finemem_lib.agents.decoding`
  (Llama / Mistral / Qwen2 / Qwen3 architectures);
- ``transformers`` (:class:`TransformersEngine`): ``model.generate``, the reference;
- ``vllm`` (:class:`VLLMEngine`): an attached vLLM backend (the GRPO trainer's colocated engine).

:func:`build_engine` picks one by name; a new engine is one file and one row of :data:`ENGINE_TYPES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finemem_lib.agents.engines.base import Engine, SamplingParams, in_length_batches
from finemem_lib.agents.engines.native import NativeEngine
from finemem_lib.agents.engines.transformers_engine import TransformersEngine
from finemem_lib.agents.engines.vllm_engine import VLLMEngine

ENGINE_TYPES: dict[str, type] = {"native": NativeEngine, "transformers": TransformersEngine, "vllm": VLLMEngine}
ENGINES = tuple(ENGINE_TYPES)


def build_engine(
    name: str,
    model: Any = None,
    pad_token_id: int = 0,
    stop_ids: Sequence[int] = (),
    backend: Any = None,
    compiled: bool = False,
) -> Engine:
    """The engine ``name`` for ``model`` (``vllm``: around ``backend``; ``compiled``: native decode steps)."""
    if name == "native":
        return NativeEngine(model, stop_ids, compiled)
    if name == "transformers":
        return TransformersEngine(model, pad_token_id, stop_ids)
    if name == "vllm":
        return VLLMEngine(backend)
    raise ValueError(f"engine must be one of {ENGINES}, got {name!r}")


__all__ = [
    "ENGINES",
    "ENGINE_TYPES",
    "Engine",
    "NativeEngine",
    "SamplingParams",
    "TransformersEngine",
    "VLLMEngine",
    "build_engine",
    "in_length_batches",
]
