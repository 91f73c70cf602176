"""The native decoding engine: same tokens as transformers ``generate``, exact log-probs, the model's distribution."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from finemem_lib.agents.decoding import IncrementalDecoder, filter_logits, shared_prefix, unsupported_reason
from finemem_lib.agents.policy import ManagerPolicy, SamplingParams
from finemem_lib.core.memory import Memory, Operation, OpKind
from tests.test_policy import CHUNKS, INSTANCE
from tests.tiny import tiny_policy

VOCAB = 97


@pytest.fixture(scope="module")
def qwen_policy() -> ManagerPolicy:
    return tiny_policy([INSTANCE] * 3, vocab_size=500)


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
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def _prompts(seed: int = 0, rows: int = 5, shared: int = 12) -> list[list[int]]:
    """Prompts with a common prefix and different lengths (so the batch is padded)."""
    generator = torch.Generator().manual_seed(seed)
    prefix = torch.randint(1, VOCAB, (shared,), generator=generator).tolist()
    return [prefix + torch.randint(1, VOCAB, (3 + 4 * r,), generator=generator).tolist() for r in range(rows)]


def _reference_greedy(model, prompts: list[list[int]], max_new_tokens: int, stop_ids: list[int]) -> list[list[int]]:
    """transformers generate, one prompt at a time (no padding), cut after the first stop token."""
    out = []
    for prompt in prompts:
        ids = torch.tensor([prompt], device=model.device)
        with torch.no_grad():
            sequence = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                eos_token_id=stop_ids,
                pad_token_id=0,
                temperature=None,
                top_p=None,
                top_k=None,
            )[0, len(prompt) :].tolist()
        cut = next((i + 1 for i, t in enumerate(sequence) if t in stop_ids), len(sequence))
        out.append(sequence[:cut])
    return out


def _full_forward_logprobs(model, prompt: list[int], completion: list[int], temperature: float) -> torch.Tensor:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float() / temperature
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1)


# ---------------------------------------------------------------------------- greedy = transformers generate
def test_greedy_tokens_equal_transformers_generate_on_a_random_llama(llama):
    prompts = _prompts()
    unconstrained = _reference_greedy(llama, prompts, 20, stop_ids=[VOCAB + 5])  # never emitted
    # stop on a token row 0 emits at step 4, so rows finish at different steps (rows are dropped mid-batch)
    stop = [unconstrained[0][4]]
    expected = _reference_greedy(llama, prompts, 20, stop)
    assert len({len(e) for e in expected}) > 1
    decoded = IncrementalDecoder(llama, stop).decode(prompts, 20, temperature=0.0)
    assert [d.tokens.tolist() for d in decoded] == expected
    assert [d.finished for d in decoded] == [e[-1] in stop for e in expected]


def test_greedy_policy_outputs_equal_the_transformers_engine_on_the_offline_model(qwen_policy):
    memories = [Memory(id_style="short"), _memory("Ivo Tras plays the harp."), _memory("X.", "Y.", "Z.")]
    prompt_ids = [qwen_policy.step_prompt(CHUNKS[i % 2], m).ids for i, m in enumerate(memories)]
    assert len(set(map(len, prompt_ids))) == 3
    greedy = SamplingParams(temperature=0.0, max_new_tokens=24)
    reference = ManagerPolicy(qwen_policy.model, qwen_policy.tokenizer, style="extractive", engine="transformers")
    native = ManagerPolicy(qwen_policy.model, qwen_policy.tokenizer, style="extractive", engine="native")
    assert native.engine == "native"
    for mine, theirs in zip(native.generate(prompt_ids, greedy), reference.generate(prompt_ids, greedy), strict=True):
        assert mine.completion_ids.tolist() == theirs.completion_ids.tolist()
        assert mine.text == theirs.text and mine.finished == theirs.finished
        assert torch.allclose(mine.logprobs, theirs.logprobs, atol=1e-5)


def _memory(*contents: str) -> Memory:
    memory = Memory(id_style="short")
    for step, text in enumerate(contents):
        memory.apply(Operation(OpKind.INSERT, content=text), step)
    return memory


# ---------------------------------------------------------------------------- log-probs
@pytest.mark.parametrize("temperature, top_k, top_p", [(0.7, 0, 1.0), (1.0, 5, 0.9), (0.0, 0, 1.0)])
def test_logprobs_equal_a_full_forward_pass(llama, temperature, top_k, top_p):
    prompts = _prompts(seed=1)
    generator = torch.Generator().manual_seed(0)
    decoded = IncrementalDecoder(llama, [VOCAB + 5]).decode(
        prompts, 16, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
    )
    for prompt, d in zip(prompts, decoded, strict=True):
        expected = _full_forward_logprobs(llama, prompt, d.tokens.tolist(), temperature or 1.0)
        assert d.logprobs.dtype == torch.float32
        assert torch.allclose(d.logprobs, expected, atol=1e-5), (d.logprobs - expected).abs().max()


def test_logprobs_of_the_offline_model_equal_a_full_forward_pass(qwen_policy):
    prompt_ids = [qwen_policy.step_prompt(c, Memory()).ids for c in CHUNKS]
    sampling = SamplingParams(temperature=0.8, max_new_tokens=12)
    for gen in qwen_policy.generate(prompt_ids, sampling, seed=3):
        expected = _full_forward_logprobs(
            qwen_policy.model, gen.prompt_ids.tolist(), gen.completion_ids.tolist(), sampling.temperature
        )
        assert torch.allclose(gen.logprobs, expected, atol=1e-5)


# ---------------------------------------------------------------------------- the sampling distribution
def _chi_square_p(observed: torch.Tensor, expected_probs: torch.Tensor) -> float:
    """p-value of Pearson's chi-square test (cells with an expected count under 5 are pooled)."""
    n = observed.sum()
    expected = expected_probs.double() * n
    small = expected < 5
    if small.any():
        observed = torch.cat([observed[~small], observed[small].sum().view(1)])
        expected = torch.cat([expected[~small], expected[small].sum().view(1)])
    statistic = ((observed.double() - expected) ** 2 / expected).sum()
    df = observed.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), statistic / 2))


def test_temperature_one_samples_follow_the_model_distribution():
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
        model.lm_head.weight.mul_(8.0)  # a peaked, non-uniform distribution
    prompt = [1, 4, 2, 3]
    n = 6000
    generator = torch.Generator().manual_seed(0)
    decoded = IncrementalDecoder(model, [99]).decode([prompt] * n, 2, temperature=1.0, generator=generator)
    pairs = torch.tensor([d.tokens.tolist() for d in decoded])
    with torch.no_grad():
        first = torch.softmax(model(torch.tensor([prompt])).logits[0, -1].float(), -1)
        second = torch.stack(
            [torch.softmax(model(torch.tensor([[*prompt, t]])).logits[0, -1].float(), -1) for t in range(6)]
        )
    joint = (first.unsqueeze(1) * second).flatten()  # p(t1, t2): covers the prefill and one decode step
    observed = torch.bincount(pairs[:, 0] * 6 + pairs[:, 1], minlength=36)
    assert first.max() > 0.3  # the test has power: far from uniform
    assert _chi_square_p(observed, joint) > 1e-3
    # and the test detects a wrong distribution (temperature 2 instead of 1)
    hot = IncrementalDecoder(model, [99]).decode([prompt] * n, 1, temperature=2.0, generator=generator)
    observed_hot = torch.bincount(torch.tensor([d.tokens[0].item() for d in hot]), minlength=6)
    assert _chi_square_p(observed_hot, first) < 1e-6


def test_top_k_and_top_p_keep_only_the_allowed_tokens():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0, -1.0]])
    assert torch.isinf(filter_logits(logits, 2, 1.0)).tolist() == [[False, True, False, True, True]]
    probs = logits.softmax(-1)[0]  # [0.64, 0.09, 0.24, 0.03, 0.01]
    assert probs[0] < 0.7 < probs[0] + probs[2]
    assert torch.isinf(filter_logits(logits, 0, 0.7)).tolist() == [[False, True, False, True, True]]
    assert not torch.isinf(filter_logits(logits, 0, 1.0)).any()


# ---------------------------------------------------------------------------- reproducibility
def test_seeded_runs_are_reproducible_and_seeds_differ(qwen_policy):
    ids = [qwen_policy.step_prompt(CHUNKS[0], Memory()).ids] * 4
    sampling = SamplingParams(temperature=1.0, max_new_tokens=16)
    first = [g.completion_ids.tolist() for g in qwen_policy.generate(ids, sampling, seed=11)]
    again = [g.completion_ids.tolist() for g in qwen_policy.generate(ids, sampling, seed=11)]
    other = [g.completion_ids.tolist() for g in qwen_policy.generate(ids, sampling, seed=12)]
    assert first == again
    assert first != other
    assert len({tuple(c) for c in first}) > 1  # rows of one call are independent draws


# ---------------------------------------------------------------------------- shapes, prefix, errors
def test_shared_prefix_is_common_and_leaves_a_token_in_every_prompt():
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3]]) == [1, 2]
    assert shared_prefix([[7, 8], [9, 8]]) == []
    assert shared_prefix([[5, 6, 7]]) == [5, 6]


def test_prefix_computed_once_gives_the_same_tokens_as_no_prefix(llama):
    prompts = _prompts(seed=2)
    decoder = IncrementalDecoder(llama, [VOCAB + 5])
    with_prefix = decoder.decode(prompts, 10, temperature=0.0, prefix=decoder.prefix_cache(shared_prefix(prompts)))
    without = decoder.decode(prompts, 10, temperature=0.0, prefix=(None, 0))
    assert [d.tokens.tolist() for d in with_prefix] == [d.tokens.tolist() for d in without]
    for a, b in zip(with_prefix, without, strict=True):
        assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_unsupported_models_are_named_and_the_policy_falls_back_to_transformers(qwen_policy, caplog):
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2, n_positions=64))
    assert "gpt2" in unsupported_reason(gpt2)
    with pytest.raises(ValueError, match="engine 'transformers'"):
        IncrementalDecoder(gpt2, [1])
    tokenizer = qwen_policy.tokenizer
    with caplog.at_level(logging.WARNING):
        policy = ManagerPolicy(gpt2, tokenizer, engine="native")
    assert policy.engine == "transformers" and "native decoding engine unavailable" in caplog.text
    with pytest.raises(ValueError, match="engine must be one of"):
        ManagerPolicy(qwen_policy.model, tokenizer, engine="fast")


def test_decode_rejects_empty_prompts_and_too_long_requests(llama):
    decoder = IncrementalDecoder(llama, [1])
    with pytest.raises(ValueError, match="at least one token"):
        decoder.decode([[1, 2], []], 4)
    with pytest.raises(ValueError, match="positions"):
        decoder.decode([[1] * 250], 10)


def test_vllm_engine_without_a_backend_generates_natively_and_says_so(qwen_policy, caplog):
    policy = ManagerPolicy(qwen_policy.model, qwen_policy.tokenizer, engine="vllm")
    native = ManagerPolicy(qwen_policy.model, qwen_policy.tokenizer, engine="native")
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    with caplog.at_level(logging.WARNING):
        got = policy.generate([[1, 2, 3]], greedy)
    assert "without an attached vLLM backend" in caplog.text
    assert got[0].completion_ids.tolist() == native.generate([[1, 2, 3]], greedy)[0].completion_ids.tolist()
