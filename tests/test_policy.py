"""The manager policy: prompts per chunk, batched generation, token ids and logprobs for GRPO."""

from __future__ import annotations

import pytest
import torch

from finemem_lib.agents import prompts
from finemem_lib.agents.offline_model import build_offline_model, tokenizer_corpus, train_tokenizer
from finemem_lib.agents.policy import ManagerPolicy, SamplingParams, load_manager, sampling_from_config
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.ops import format_score, parse_operations
from finemem_lib.data.instance import QA, Instance

TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
}
CHUNKS = (
    "Mira Kelholt lives in the city of Oslo. On Monday, the ferry was closed for repairs. Ivo Tras plays the harp.",
    "Mira Kelholt now lives in the city of Lima.",
)
INSTANCE = Instance("toy/0", "synth_factoid", CHUNKS, (QA("In which city does Mira Kelholt live?", ("Lima",)),))


@pytest.fixture(scope="module")
def policy() -> ManagerPolicy:
    tokenizer = train_tokenizer(tokenizer_corpus([INSTANCE] * 3, n_call_examples=30), vocab_size=500)
    return ManagerPolicy(build_offline_model(tokenizer, TINY, seed=0), tokenizer, style="extractive", batch_size=2)


def _memory_with(*contents: str) -> Memory:
    memory = Memory(id_style="short")
    for step, text in enumerate(contents):
        memory.apply(Operation(OpKind.INSERT, content=text), step)
    return memory


# ---------------------------------------------------------------------------- prompts
def test_extractive_prompt_numbers_sentences_and_shows_ids():
    memory = _memory_with("Ivo Tras plays the harp.")
    user = prompts.build_messages(CHUNKS[0], memory.view(5), "extractive")[1]["content"]
    assert "[m1] Ivo Tras plays the harp." in user
    assert "1. Mira Kelholt lives in the city of Oslo.\n2. On Monday" in user
    assert "<new_chunk>\n1. " in user and user.endswith("</new_chunk>")
    assert user.startswith("Remember the following content chunk")


def test_content_prompt_shows_the_chunk_as_is_and_marks_empty_memory():
    messages = prompts.build_messages(CHUNKS[0], [], "content")
    assert messages[0]["role"] == "system" and messages[1]["role"] == "user"
    assert f"<new_chunk>\n{CHUNKS[0]}\n</new_chunk>" in messages[1]["content"]
    assert prompts.EMPTY_MEMORY in messages[1]["content"]
    with pytest.raises(ValueError, match="op style"):
        prompts.build_messages(CHUNKS[0], [], "verbatim")


# ---------------------------------------------------------------------------- generation
def test_generation_returns_ids_text_and_float32_logprobs(policy):
    memories = [Memory(id_style="short"), _memory_with("Ivo Tras plays the harp.", "A note.")]
    steps, gens = policy.act(list(CHUNKS), memories, SamplingParams(temperature=1.0, max_new_tokens=12), seed=0)
    assert len(steps) == len(gens) == 2
    assert steps[0].sentences == prompts.chunk_sentences(CHUNKS[0])
    for step, gen in zip(steps, gens, strict=True):
        assert gen.prompt_ids.tolist() == step.ids
        assert gen.completion_ids.dtype == torch.long and 1 <= len(gen.completion_ids) <= 12
        assert gen.logprobs.dtype == torch.float32 and gen.logprobs.shape == gen.completion_ids.shape
        assert torch.all(gen.logprobs <= 0)
        if gen.finished:
            assert int(gen.completion_ids[-1]) in policy.stop_ids
        else:
            assert len(gen.completion_ids) == 12


def test_logprobs_match_an_unpadded_forward_pass(policy):
    memories = [Memory(id_style="short"), _memory_with("Ivo Tras plays the harp.", "B.", "C.")]
    sampling = SamplingParams(temperature=0.7, max_new_tokens=10)
    steps, gens = policy.act([CHUNKS[1], CHUNKS[0]], memories, sampling, seed=1)
    assert len(steps[0].ids) != len(steps[1].ids)  # the batch really was padded
    for gen in gens:
        ids = torch.cat([gen.prompt_ids, gen.completion_ids]).unsqueeze(0)
        with torch.no_grad():
            logits = policy.model(ids).logits[0, len(gen.prompt_ids) - 1 : -1].float() / sampling.temperature
        expected = torch.log_softmax(logits, -1).gather(-1, gen.completion_ids.unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(gen.logprobs, expected, atol=1e-4)


def test_batched_greedy_equals_one_by_one_and_keeps_order(policy):
    memories = [_memory_with("X."), Memory(id_style="short"), _memory_with("Y.", "Z.")]
    prompt_ids = [policy.step_prompt(CHUNKS[i % 2], m).ids for i, m in enumerate(memories)]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=8)
    batched = policy.generate(prompt_ids, greedy)
    for ids, gen in zip(prompt_ids, batched, strict=True):
        alone = policy.generate([ids], greedy)[0]
        assert gen.prompt_ids.tolist() == ids
        assert torch.equal(gen.completion_ids, alone.completion_ids)


def test_seeded_sampling_is_reproducible(policy):
    ids = [policy.step_prompt(CHUNKS[0], Memory()).ids] * 3
    sampling = SamplingParams(temperature=1.0, max_new_tokens=10)
    first = [g.completion_ids.tolist() for g in policy.generate(ids, sampling, seed=5)]
    again = [g.completion_ids.tolist() for g in policy.generate(ids, sampling, seed=5)]
    assert first == again


def test_memory_view_is_halved_when_the_prompt_is_too_long(policy):
    memory = _memory_with(*[f"Item number {i} is a long sentence about many things." for i in range(8)])
    full = policy.step_prompt(CHUNKS[0], memory)
    assert full.view_k == 5
    tight = ManagerPolicy(
        policy.model, policy.tokenizer, style="extractive", view_k=5, max_prompt_tokens=len(full.ids) - 1
    )
    step = tight.step_prompt(CHUNKS[0], memory)
    assert step.view_k < 5 and len(step.ids) <= len(full.ids) - 1


def test_untrained_output_scores_zero_format_and_leaves_memory_alone(policy):
    memory = _memory_with("Ivo Tras plays the harp.")
    steps, gens = policy.act([CHUNKS[0]], [memory], SamplingParams(temperature=1.0, max_new_tokens=16), seed=0)
    parsed = parse_operations(gens[0].text, policy.style)
    results = memory.apply_all(parsed.operations, 1, steps[0].sentences)
    assert format_score(parsed, results) == 0.0
    assert [item.content for item in memory] == ["Ivo Tras plays the harp."]


def test_sampling_params_validate_and_come_from_config():
    assert SamplingParams(temperature=0).greedy
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    assert sampling_from_config({"temperature": 0.5, "max_new_tokens": 7}) == SamplingParams(0.5, 1.0, 0, 7)
    with pytest.raises(ValueError, match="unknown sampling keys"):
        sampling_from_config({"temp": 1})


def test_save_and_load_manager_restores_settings(policy, tmp_path):
    custom = ManagerPolicy(policy.model, policy.tokenizer, style="extractive", view_k=3, max_prompt_tokens=700)
    custom.save_pretrained(tmp_path / "manager", extra={"note": "x"})
    loaded = load_manager(tmp_path / "manager")
    assert loaded.settings() == custom.settings()
    ids = loaded.step_prompt(CHUNKS[0], Memory()).ids
    assert ids == custom.step_prompt(CHUNKS[0], Memory()).ids


def test_load_manager_names_a_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="could not load a manager model"):
        load_manager(tmp_path / "no-model")
