"""Speculative decoding: the same tokens as one token per call (greedy and sampled), exact log-probs,
the model's distribution, whatever the drafts; n-gram drafts; inverse-CDF sampling."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from finemem_lib.agents import speculative
from finemem_lib.agents.decoding import IncrementalDecoder
from finemem_lib.agents.drafts import NgramDrafts
from finemem_lib.agents.policy import SamplingParams
from finemem_lib.agents.sampling import choose, draw
from finemem_lib.core.memory import Memory
from tests.test_decoding import VOCAB, _chi_square_p, _full_forward_logprobs, _prompts, qwen_policy  # noqa: F401
from tests.test_policy import CHUNKS


@pytest.fixture(scope="module")
def llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(6.0)  # peaked distributions: no pick sits within float rounding of a tie
    return model


def _decode(model, prompts, draft_tokens, temperature, seed=0, stop=(VOCAB + 5,), drafts=None, **kwargs):
    decoder = IncrementalDecoder(model, list(stop))
    decoder.draft_tokens = draft_tokens
    if drafts is not None:
        decoder.drafts.propose = drafts
    generator = torch.Generator().manual_seed(seed)
    return decoder.decode(prompts, 24, temperature=temperature, generator=generator, **kwargs)


def _oracle(reference, prompts, wrong_every=3):
    """Drafts that continue each row as ``reference`` did, every ``wrong_every``-th draft token wrong."""
    by_prompt = {tuple(p[-3:]): d.tokens.tolist() for p, d in zip(prompts, reference, strict=True)}

    def propose(row, k):
        done = row.tokens[3:]
        for tail, tokens in by_prompt.items():
            if tuple(row.tokens[:3]) == tail and tokens[: len(done)] == done:
                draft = tokens[len(done) : len(done) + k]
                return [(t + 1) % VOCAB if (len(done) + i) % wrong_every == 0 else t for i, t in enumerate(draft)]
        return []

    return propose


@pytest.mark.parametrize("temperature, top_k, top_p", [(0.0, 0, 1.0), (1.0, 0, 1.0), (0.8, 8, 0.9)])
def test_drafts_change_the_calls_not_the_tokens(llama, temperature, top_k, top_p):
    prompts = _prompts(seed=2, rows=6)
    sampling = {"top_k": top_k, "top_p": top_p}
    one_by_one = _decode(llama, prompts, 0, temperature, **sampling)
    drafted = _decode(llama, prompts, 6, temperature, drafts=_oracle(one_by_one, prompts), **sampling)
    for want, got, prompt in zip(one_by_one, drafted, prompts, strict=True):
        assert got.tokens.tolist() == want.tokens.tolist()
        assert got.finished == want.finished
        assert torch.allclose(got.logprobs, want.logprobs, atol=1e-5)
        expected = _full_forward_logprobs(llama, prompt, got.tokens.tolist(), temperature or 1.0)
        assert torch.allclose(got.logprobs, expected, atol=1e-5)


def test_drafts_are_scored_several_per_call_and_rows_stop_at_their_stop_token(llama):
    prompts = _prompts(seed=4, rows=5)
    free = _decode(llama, prompts, 0, 0.0)
    stop = [free[0].tokens[6].item()]  # row 0 stops at its 7th token, others at other steps (or never)
    one_by_one = _decode(llama, prompts, 0, 0.0, stop=stop)
    calls = []
    original = IncrementalDecoder._forward

    def counted(self, tokens, *args):
        calls.append(tokens.shape[1])
        return original(self, tokens, *args)

    IncrementalDecoder._forward = counted
    try:
        drafted = _decode(llama, prompts, 8, 0.0, stop=stop, drafts=_oracle(one_by_one, prompts, wrong_every=100))
    finally:
        IncrementalDecoder._forward = original
    assert [d.tokens.tolist() for d in drafted] == [d.tokens.tolist() for d in one_by_one]
    assert [d.finished for d in drafted] == [d.finished for d in one_by_one]
    assert drafted[0].finished and drafted[0].tokens[-1].item() == stop[0]
    decode_calls = calls[2:]  # the prefix and the prompt pass first
    assert max(decode_calls) == 9 and len(decode_calls) < 24 / 4


def test_sampling_with_wrong_drafts_follows_the_model_distribution():
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=6,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    prompt = [1, 4, 2, 3]
    n = 6000
    with torch.no_grad():
        first = torch.softmax(model(torch.tensor([prompt])).logits[0, -1].float(), -1)
        second = torch.stack(
            [torch.softmax(model(torch.tensor([[*prompt, t]])).logits[0, -1].float(), -1) for t in range(6)]
        )
        pairs = torch.tensor([[*prompt, t, s] for t in range(6) for s in range(6)])
        third = torch.softmax(model(pairs).logits[:, -1].float(), -1)
    joint = (first[:, None, None] * second[:, :, None] * third.view(6, 6, 6)).flatten()
    decoder = IncrementalDecoder(model, [99])
    decoder.drafts.propose = lambda row, k: [1, 5][:k]  # often wrong, sometimes right
    decoded = decoder.decode([prompt] * n, 3, temperature=1.0, generator=torch.Generator().manual_seed(0))
    triples = torch.tensor([d.tokens.tolist() for d in decoded])
    observed = torch.bincount(triples[:, 0] * 36 + triples[:, 1] * 6 + triples[:, 2], minlength=216)
    assert _chi_square_p(observed, joint) > 1e-3


def test_the_draft_length_shrinks_with_the_rows():
    assert speculative.draft_length(8, 12) == 12
    assert 0 < speculative.draft_length(64, 12) < speculative.draft_length(16, 12) <= 12
    assert speculative.draft_length(4 * speculative.DRAFT_BUDGET, 12) == 0
    assert speculative.draft_length(8, 0) == 0


def test_the_policy_decodes_the_same_with_and_without_drafts(qwen_policy):  # noqa: F811
    prompt_ids = [qwen_policy.step_prompt(c, Memory()).ids for c in CHUNKS] * 2
    sampling = SamplingParams(temperature=1.0, max_new_tokens=20)
    decoder = qwen_policy.rollout_engine().decoder
    try:
        decoder.draft_tokens = 0
        plain = qwen_policy.generate(prompt_ids, sampling, seed=5)
        decoder.draft_tokens = 12
        first = qwen_policy.generate(prompt_ids, sampling, seed=5)
        again = qwen_policy.generate(prompt_ids, sampling, seed=5)  # the drafts index now holds the first call
    finally:
        decoder.draft_tokens = IncrementalDecoder.draft_tokens
    for a, b, c in zip(plain, first, again, strict=True):
        assert a.completion_ids.tolist() == b.completion_ids.tolist() == c.completion_ids.tolist()
    assert decoder.drafts.shared


# ---------------------------------------------------------------------------- drafts
def test_ngram_drafts_propose_what_followed_before_own_row_first():
    drafts = NgramDrafts(n=2)
    a = drafts.row([7, 8])
    drafts.extend(a, [1, 2, 3, 4, 1, 2])
    assert drafts.propose(a, 3) == [3, 4, 1]  # after (1, 2) came 3, 4, 1
    assert drafts.propose(a, 0) == []
    b = drafts.row([9, 7, 8])  # a new row whose prompt ends like row a's: row a's start is shared
    assert drafts.propose(b, 2) == [1, 2]
    drafts.extend(b, [1, 5, 8, 1])
    drafts.extend(a, [8, 1, 9])  # now the latest (8, 1) anywhere is row a's, followed by 9
    assert drafts.propose(b, 2) == [5, 8]  # row b's own (8, 1) first
    assert drafts.propose(a, 2) == []  # (1, 9) never seen
    c = drafts.row([0, 5])
    drafts.extend(c, [8, 1])
    assert drafts.propose(c, 3) == [9]  # no own (8, 1) before: the latest of any row, as long as it is
    with pytest.raises(ValueError):
        NgramDrafts(n=0)


# ---------------------------------------------------------------------------- inverse-CDF sampling
def test_draw_follows_the_distribution_and_never_picks_a_zero():
    probs = torch.tensor([0.5, 0.0, 0.2, 0.3, 0.0]) * 2.0  # need not sum to 1
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0))
    picks = draw(probs.expand(20000, -1), u)
    counts = torch.bincount(picks, minlength=5)
    assert counts[1] == 0 and counts[4] == 0
    assert _chi_square_p(counts[[0, 2, 3]], torch.tensor([0.5, 0.2, 0.3])) > 1e-3
    assert draw(probs, torch.tensor(0.0)).item() == 0 and draw(probs, torch.tensor(0.9999)).item() == 3


def test_choose_truncates_with_top_k_and_reports_the_untruncated_log_prob():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    token, logprob = choose(logits, 1.0, 2, 1.0, torch.tensor([0.99]))
    assert token.item() == 2  # only tokens 0 and 2 are left; u near 1 picks the later one
    assert torch.allclose(logprob, torch.log_softmax(logits, -1)[0, 2])
    greedy, _ = choose(logits, 0.0, 0, 1.0, None)
    assert greedy.item() == 0


def test_identical_prompts_are_prefilled_once_and_decode_as_separate_rows(llama):
    prompts = _prompts(seed=6, rows=3)
    batch = [prompts[0], prompts[1], prompts[0], prompts[2], prompts[0]]
    widths = []
    original = IncrementalDecoder._forward

    def recorded(self, tokens, *args):
        widths.append(tuple(tokens.shape))
        return original(self, tokens, *args)

    IncrementalDecoder._forward = recorded
    try:
        together = _decode(llama, batch, 6, 0.0)
    finally:
        IncrementalDecoder._forward = original
    assert widths[1][0] == 3  # the prompt pass ran the three distinct prompts
    apart = _decode(llama, prompts, 6, 0.0)
    assert [d.tokens.tolist() for d in together] == [apart[i].tokens.tolist() for i in (0, 1, 0, 2, 0)]
    sampled = _decode(llama, batch, 6, 1.0, seed=3)
    assert len({tuple(sampled[i].tokens.tolist()) for i in (0, 2, 4)}) > 1  # the copies sample on their own
    for prompt, d in zip(batch, sampled, strict=True):
        assert torch.allclose(d.logprobs, _full_forward_logprobs(llama, prompt, d.tokens.tolist(), 1.0), atol=1e-5)
