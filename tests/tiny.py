"""Tiny models and benchmarks shared by the tests (random weights: plumbing, not quality)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finemem_lib.agents.offline_model import build_offline_model, tokenizer_corpus, train_tokenizer
from finemem_lib.agents.policy import ManagerPolicy
from finemem_lib.data.instance import Instance

TINY_MODEL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
}
TINY_BENCH = {
    "synthetic": {"train_instances": 1, "test_instances": 1, "chunks_per_instance": 3, "sentences_per_chunk": 4}
}


def tiny_policy(instances: Sequence[Instance], vocab_size: int = 600, seed: int = 0, **policy: Any) -> ManagerPolicy:
    """An extractive-style manager: a tokenizer trained on ``instances`` and a one-layer Qwen3 with random weights."""
    tokenizer = train_tokenizer(tokenizer_corpus(instances, n_call_examples=20), vocab_size=vocab_size)
    model = build_offline_model(tokenizer, TINY_MODEL, seed=seed)
    return ManagerPolicy(model, tokenizer, **({"style": "extractive", "batch_size": 4} | policy))


class ScriptedPolicy:
    """A manager stand-in with known operations, so a test can check what an episode shows.

    Rollout ``g`` (its position in the batch, modulo 2) inserts sentence 1, and also sentence 2 when
    ``g`` is even; every step also emits an INSERT of sentence 99 (out of range: a failed operation),
    and from step 1 on an UPDATE of ``m1`` with sentence 3.
    """

    style = "extractive"

    def act(self, chunks, memories, sampling=None, seed=None, batch_size=None):
        import torch

        from finemem_lib.agents.policy import Generation, StepPrompt
        from finemem_lib.core.memory import Operation, OpKind
        from finemem_lib.core.ops import render_tool_calls
        from finemem_lib.core.sentences import split_sentences

        prompts, generations = [], []
        for position, (chunk, memory) in enumerate(zip(chunks, memories, strict=True)):
            sentences = split_sentences(chunk)
            ops = [Operation(OpKind.INSERT, sentence=1)]
            if position % 2 == 0:
                ops.append(Operation(OpKind.INSERT, sentence=2))
            ops.append(Operation(OpKind.INSERT, sentence=99))
            if len(memory) and "m1" in memory:
                ops.append(Operation(OpKind.UPDATE, sentence=3, item_id="m1"))
            prompts.append(StepPrompt(messages=[], ids=[1, 2], sentences=sentences))
            ids = torch.tensor([3, 4])
            generations.append(
                Generation(torch.tensor([1, 2]), ids, render_tool_calls(ops, "extractive"), torch.zeros(2), True)
            )
        return prompts, generations
