"""The packed log-prob pass computes what the full forward and the padded prefix-shared pass compute."""

from __future__ import annotations

import pytest
import torch

from finemem_lib.training import packed_pass, shared_prefix
from tests.test_shared_prefix import SIZES, assert_same_gradients, full_logps, padded_batch, tiny_model


@pytest.mark.parametrize("kind", ["qwen3", "llama"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_packed_log_probs_and_entropies_equal_the_full_forward(kind, temperature):
    model = tiny_model(kind).eval()
    ids, mask, keep = padded_batch(20, [5, 1, 9, 3, 14], [6, 2, 4, 1, 9])
    mask[3, -keep:] = 0  # a row without scored tokens (a masked truncated completion) is skipped
    assert packed_pass.packable(mask, keep)
    with torch.no_grad():
        want_logp, want_entropy = full_logps(model, ids, mask, keep, temperature)
        logp, entropy = packed_pass.packed_logps(model, ids, mask, keep, 20, temperature, True, None)
    assert logp.shape == want_logp.shape == (5, keep)
    assert torch.allclose(logp, want_logp, atol=1e-5)
    assert torch.allclose(entropy, want_entropy, atol=1e-5)
    assert not logp[3].any()


def test_packed_gradients_equal_the_full_forward():
    model = tiny_model("qwen3").train()
    ids, mask, keep = padded_batch(16, [4, 2, 6, 11], [5, 3, 1, 7], seed=3)
    assert_same_gradients(
        model, ids, mask, keep, lambda: packed_pass.packed_logps(model, ids, mask, keep, 16, 1.0, False, None)[0]
    )


def test_length_buckets_cover_every_row_once_in_runs_of_similar_length():
    lengths = [300, 12, 310, 15, 11, 305, 14]
    groups = packed_pass.length_buckets(lengths, overhead=50)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert [sorted(lengths[i] for i in g) for g in groups] == [[11, 12, 14, 15], [300, 305, 310]]
    assert len(packed_pass.length_buckets(lengths, overhead=10**6)) == 1
    assert packed_pass.length_buckets([]) == []


def test_completions_with_holes_are_not_packable():
    _, mask, keep = padded_batch(8, [2, 3], [4, 4])
    mask[0, -keep + 1] = 0
    assert not packed_pass.packable(mask, keep)
    mask[:, -keep:] = 0
    assert not packed_pass.packable(mask, keep)  # nothing scored at all


def test_a_frozen_models_prefix_is_computed_once_and_reused():
    model = tiny_model("llama").eval()
    ids, mask, keep = padded_batch(12, [3, 5], [2, 4])
    store: dict = {}
    with torch.no_grad():
        first, _ = packed_pass.packed_logps(model, ids, mask, keep, 12, 1.0, False, store)
        assert len(store) == 1
        cached = next(iter(store.values()))
        second, _ = shared_prefix.prefix_shared_logps(model, ids, mask, keep, 12, store=store)
    assert next(iter(store.values())) is cached
    assert torch.allclose(first, second, atol=1e-5)


@pytest.mark.parametrize("kind", ["qwen3", "llama"])
def test_packed_attention_in_query_chunks_equals_the_models_own(kind, monkeypatch):
    model = tiny_model(kind).train()
    ids, mask, keep = padded_batch(20, [5, 1, 9, 3, 14], [6, 2, 4, 1, 9], seed=5)
    calls = []
    original = packed_pass._packed_attention
    monkeypatch.setattr(packed_pass, "QUERY_CHUNK", 4)  # several chunks per row
    from transformers import AttentionInterface

    AttentionInterface.register(packed_pass.PACKED_ATTENTION, lambda *a, **k: calls.append(1) or original(*a, **k))

    def run(packed_attention: bool):
        monkeypatch.setattr(packed_pass, "PACKED_ATTENTION_ON", packed_attention)
        model.zero_grad()
        logp, entropy = packed_pass.packed_logps(model, ids, mask, keep, 20, 1.0, True, None)
        (logp * torch.linspace(-1.0, 1.0, keep)).sum().backward()
        return logp.detach(), entropy, [p.grad.clone() for p in model.parameters()]

    try:
        chunked = run(True)
        assert calls, "the packed pass did not attend with the packed attention"
        calls.clear()
        own = run(False)
        assert not calls
    finally:
        AttentionInterface.register(packed_pass.PACKED_ATTENTION, original)
    assert model.config._attn_implementation == "sdpa"  # restored
    assert torch.allclose(chunked[0], own[0], atol=1e-5) and torch.allclose(chunked[1], own[1], atol=1e-5)
    for g_chunked, g_own in zip(chunked[2], own[2], strict=True):
        assert torch.allclose(g_chunked, g_own, rtol=1e-4, atol=1e-6)


def test_the_packed_attention_is_only_for_plain_full_attention_models():
    from transformers import MistralConfig, MistralForCausalLM

    assert packed_pass._plain_attention(tiny_model("qwen3"))
    assert packed_pass._plain_attention(tiny_model("llama"))
    windowed = MistralForCausalLM(MistralConfig(**SIZES, sliding_window=16))
    assert not packed_pass._plain_attention(windowed)
    assert packed_pass._plain_attention(MistralForCausalLM(MistralConfig(**SIZES, sliding_window=None)))
