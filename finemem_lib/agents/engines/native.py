"""The native engine: :class:`finemem_lib.agents.decoding.IncrementalDecoder`, the manager's CPU engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from finemem_lib.agents.compiled_decoding import CompiledDecoder
from finemem_lib.agents.decoding import Decoded, IncrementalDecoder, shared_prefix
from finemem_lib.agents.engines.base import SamplingParams, in_length_batches

# Most rows of one decode call on a CPU, whatever the caller allows: with speculative drafts, 64 chunk-step
# prompts took 2.3-2.4 s of CPU in one call and 2.0-2.1 s in calls of 32 or 16 rows (docs/throughput.md).
CPU_ROWS = 32


class NativeEngine:
    """Batched decoding with a preallocated KV cache, the prompts' common prefix computed once per call.

    The rows of one call draw from one ``torch.Generator`` seeded from torch's global random state, so a
    call seeded by the caller (``torch.manual_seed``) is reproducible. ``compiled``: decode steps through
    :class:`finemem_lib.agents.compiled_decoding.CompiledDecoder` (``manager.compile``).
    """

    name = "native"

    def __init__(self, model: Any, stop_ids: Sequence[int], compiled: bool = False) -> None:
        self.decoder = (CompiledDecoder if compiled else IncrementalDecoder)(model, stop_ids)

    @property
    def model(self) -> Any:
        return self.decoder.model

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: SamplingParams, batch_size: int, seed: int | None = None
    ) -> list[Decoded]:
        """One completion per prompt, in batches of at most ``batch_size`` rows grouped by length (at most
        :data:`CPU_ROWS` on a CPU).

        Runs in inference mode (no autograd bookkeeping per operation; the same numbers); the returned
        tensors are ordinary ones, usable as training inputs.
        """
        with torch.inference_mode():
            decoded = self._generate(prompts, sampling, batch_size)
        return [Decoded(d.tokens.clone(), d.logprobs.clone(), d.finished) for d in decoded]

    def _generate(self, prompts: Sequence[Sequence[int]], sampling: SamplingParams, batch_size: int) -> list[Decoded]:
        decoder = self.decoder
        prefix = decoder.prefix_cache(shared_prefix(prompts))  # once for every batch of the call
        generator = torch.Generator(device=decoder.device)
        generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))

        def run(batch: list[list[int]]) -> list[Decoded]:
            return decoder.decode(
                batch,
                sampling.max_new_tokens,
                temperature=sampling.temperature,
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                generator=generator,
                prefix=prefix,
            )

        rows = min(batch_size, CPU_ROWS) if decoder.device.type == "cpu" else batch_size
        return in_length_batches(prompts, rows, run)
