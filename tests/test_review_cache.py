"""Review lines decided on KV caches kept from line to line: the same decisions as fresh prompts line by line."""

from __future__ import annotations

import pytest
import torch

from finemem_lib.agents import review_decoding
from finemem_lib.agents.policy import SamplingParams
from finemem_lib.agents.review_cache import CachedReview
from finemem_lib.core.memory import Memory
from finemem_lib.data.synthetic import build_synthetic
from tests.tiny import TINY_BENCH, tiny_policy


@pytest.fixture(scope="module")
def data():
    bench = {"synthetic": {**TINY_BENCH["synthetic"], "train_instances": 2, "sentences_per_chunk": 6}}
    return build_synthetic(bench)


def _act(policy, chunks, sampling, seed, batch_size, cached: bool, monkeypatch):
    with monkeypatch.context() as patch:
        if not cached:
            patch.setattr(review_decoding, "_cached_lines", lambda *a: None)
        else:  # the cached path must be the one taken
            original = review_decoding._cached_lines
            patch.setattr(review_decoding, "_cached_lines", lambda *a: original(*a) or pytest.fail("not cached"))
        memories = [Memory(id_style="short") for _ in chunks]
        return policy.act(chunks, memories, sampling, seed, batch_size)[1]


@pytest.mark.parametrize("temperature", [1.0, 0.0])
@pytest.mark.parametrize("batch_size", [None, 2])
def test_cached_lines_decide_as_fresh_prompts_do(data, monkeypatch, temperature, batch_size):
    policy = tiny_policy(data["train"], style="review", seed=3)
    chunks = [c for instance in data["train"] + data["test"] for c in instance.chunks]
    sampling = SamplingParams(temperature=temperature)
    want = _act(policy, chunks, sampling, 11, batch_size, False, monkeypatch)
    got = _act(policy, chunks, sampling, 11, batch_size, True, monkeypatch)
    assert [g.text for g in got] == [g.text for g in want]
    for g_got, g_want in zip(got, want, strict=True):
        assert g_got.finished == g_want.finished
        assert len(g_got.segments) == len(g_want.segments)
        for s_got, s_want in zip(g_got.segments, g_want.segments, strict=True):
            assert torch.equal(s_got.prompt_ids, s_want.prompt_ids)
            assert torch.equal(s_got.completion_ids, s_want.completion_ids)
            assert torch.allclose(s_got.logprobs, s_want.logprobs, atol=1e-5)


def test_a_prompt_that_leaves_the_cached_tokens_is_cut_back_and_run_again(data):
    policy = tiny_policy(data["train"], style="review", seed=5)
    decoder = policy.rollout_engine().decoder
    steps = [policy.step_prompt(c, Memory(id_style="short")) for c in data["train"][0].chunks[:3]]
    prompts = [s.ids for s in steps]
    ends = torch.tensor(policy.stop_ids)
    none = torch.tensor([], dtype=torch.long)
    policy.model.eval()
    with torch.inference_mode():
        review = CachedReview(decoder, prompts)
        review.decide([0, 1, 2], [[*p, 40, 41, 42] for p in prompts], 3, (0.0, 0, 1.0), None, ends, none)
        # step 1 goes on from a different last token, step 0 as cached; step 2 has ended
        later = [prompts[0] + [40, 41, 42, 50, 51], prompts[1] + [40, 41, 43, 52]]
        got = review.decide([0, 1], later, 4, (0.0, 0, 1.0), None, ends, none)
        fresh = decoder.decode(later, 4, temperature=0.0)
    for g, f in zip(got, fresh, strict=True):
        assert torch.equal(g.tokens, f.tokens)
        assert torch.allclose(g.logprobs, f.logprobs, atol=1e-5)
    assert review.cached[1][: len(prompts[1]) - review.n_prefix + 4][-4:] == [40, 41, 43, 52]
