"""The reference engine: ``transformers``' ``generate``, log-probs recomputed with one forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from finemem_lib.agents.decoding import Decoded
from finemem_lib.agents.engines.base import SamplingParams, in_length_batches


class TransformersEngine:
    """Batched ``model.generate`` (prompts left-padded) for any ``transformers`` causal LM.

    Log-probs are ``log_softmax(logits / temperature)`` of the generated tokens, from one forward pass
    over prompt + completion (no top-k/top-p truncation, as TRL's GRPO computes them).
    """

    name = "transformers"

    def __init__(self, model: Any, pad_token_id: int, stop_ids: Sequence[int]) -> None:
        self.model = model
        self.pad_token_id = int(pad_token_id)
        self.stop_ids = [int(i) for i in stop_ids]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: SamplingParams, batch_size: int, seed: int | None = None
    ) -> list[Decoded]:
        """One completion per prompt; draws follow torch's global random state (``seed`` is the caller's)."""
        return in_length_batches(prompts, batch_size, lambda batch: self._generate_batch(batch, sampling))

    def _left_pad(self, batch: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            if ids:
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids) :] = 1
        return input_ids.to(self.device), attention.to(self.device)

    def _generate_batch(self, batch: list[list[int]], sampling: SamplingParams) -> list[Decoded]:
        input_ids, attention = self._left_pad(batch)
        kwargs: dict[str, Any] = {"do_sample": not sampling.greedy, "max_new_tokens": sampling.max_new_tokens}
        if not sampling.greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)  # 0: off
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        sequences = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_token_id,
            **kwargs,
        )
        new_tokens = sequences[:, input_ids.shape[1] :].cpu()
        lengths, finished = self.completion_lengths(new_tokens)
        logprobs = self.sampled_logprobs(sequences, attention, new_tokens.shape[1], sampling)
        return [
            Decoded(new_tokens[row, : lengths[row]].clone(), logprobs[row, : lengths[row]].clone(), finished[row])
            for row in range(len(batch))
        ]

    def completion_lengths(self, new_tokens: torch.Tensor) -> tuple[list[int], list[bool]]:
        """Tokens up to and including the first stop token (all tokens when none was emitted)."""
        is_stop = torch.isin(new_tokens, torch.tensor(self.stop_ids, dtype=new_tokens.dtype))
        lengths, finished = [], []
        for row in is_stop:
            hits = row.nonzero()
            lengths.append(int(hits[0]) + 1 if len(hits) else int(row.numel()))
            finished.append(bool(len(hits)))
        return lengths, finished

    def sampled_logprobs(
        self, sequences: torch.Tensor, prompt_attention: torch.Tensor, n_new: int, sampling: SamplingParams
    ) -> torch.Tensor:
        """log p(token) of each generated token under logits / temperature, by one forward pass."""
        if n_new == 0:
            return torch.zeros((sequences.shape[0], 0), dtype=torch.float32)
        attention = torch.cat([prompt_attention, torch.ones_like(sequences[:, prompt_attention.shape[1] :])], dim=1)
        position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
        logits = self.model(
            input_ids=sequences, attention_mask=attention, position_ids=position_ids, logits_to_keep=n_new + 1
        ).logits[:, :-1, :]
        logits = logits.float() / (sampling.temperature if not sampling.greedy else 1.0)
        targets = sequences[:, -n_new:]
        picked = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return picked.to(torch.float32).cpu()
