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
