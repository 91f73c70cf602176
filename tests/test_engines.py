"""The rollout engines behind one protocol: built by name, same answers through the policy, order kept."""

from __future__ import annotations

import pytest
import torch

from finemem_lib.agents.decoding import Decoded
from finemem_lib.agents.engines import (
    ENGINES,
    Engine,
    NativeEngine,
    SamplingParams,
    TransformersEngine,
    VLLMEngine,
    build_engine,
    in_length_batches,
)
from finemem_lib.agents.policy import ManagerPolicy
from tests.test_policy import INSTANCE
from tests.tiny import tiny_policy


@pytest.fixture(scope="module")
def policy() -> ManagerPolicy:
    return tiny_policy([INSTANCE] * 2, vocab_size=400)


class EchoBackend:
    """A stand-in vLLM backend: completes each prompt with its last token, then stop token 0."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []

    def generate(self, prompts, sampling, seed=None):
        self.calls.append((len(prompts), seed))
        return [Decoded(torch.tensor([p[-1], 0]), torch.tensor([-0.5, -0.1]), True) for p in prompts]


def test_every_engine_is_built_by_name_and_follows_the_protocol(policy):
    built = {
        "native": build_engine("native", policy.model, 0, policy.stop_ids),
        "transformers": build_engine("transformers", policy.model, 0, policy.stop_ids),
        "vllm": build_engine("vllm", backend=EchoBackend()),
    }
    assert set(built) == set(ENGINES)
    for name, engine in built.items():
        assert isinstance(engine, Engine) and engine.name == name
    assert isinstance(built["native"], NativeEngine)
    assert isinstance(built["transformers"], TransformersEngine)
    assert isinstance(built["vllm"], VLLMEngine)
    with pytest.raises(ValueError, match="engine must be one of"):
        build_engine("fast", policy.model)
    with pytest.raises(TypeError, match="generate"):
        VLLMEngine(object())


def test_length_batches_respect_the_cap_and_keep_the_order():
    prompts = [[1] * n for n in (5, 1, 4, 2, 3)]
    seen: list[list[int]] = []

    def run(batch):
        seen.append([len(p) for p in batch])
        return [Decoded(torch.tensor([len(p)]), torch.zeros(1), True) for p in batch]

    out = in_length_batches(prompts, 2, run)
    assert seen == [[1, 2], [3, 4], [5]]
    assert [int(d.tokens[0]) for d in out] == [5, 1, 4, 2, 3]
    with pytest.raises(ValueError, match="batch_size"):
        in_length_batches(prompts, 0, run)


def test_native_rows_per_call_do_not_change_greedy_tokens(policy):
    prompts = [[5, 6, 7, 8, 9][: 2 + i] for i in range(4)]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    one_call = policy.generate(prompts, greedy, batch_size=4)
    two_calls = policy.generate(prompts, greedy, batch_size=2)
    assert [g.completion_ids.tolist() for g in one_call] == [g.completion_ids.tolist() for g in two_calls]


def test_the_policy_generates_through_an_attached_backend(policy):
    vllm = ManagerPolicy(policy.model, policy.tokenizer, engine="vllm")
    backend = EchoBackend()
    vllm.attach_backend(backend)
    out = vllm.generate([[3, 4], [7]], SamplingParams(), seed=9)
    assert backend.calls == [(2, 9)]
    assert [g.completion_ids.tolist() for g in out] == [[4, 0], [7, 0]]
    assert vllm.rollout_engine().name == "vllm"


# ---------------------------------------------------------------------------- manager.compile
def test_compile_modes_are_checked_and_auto_follows_the_run_length(policy):
    from finemem_lib.agents.compiled_decoding import AUTO_COMPILE_MIN_STEPS, resolve_compile

    assert resolve_compile("auto", AUTO_COMPILE_MIN_STEPS) == "on"
    assert resolve_compile("auto", AUTO_COMPILE_MIN_STEPS - 1) == "off"
    assert resolve_compile("on", 1) == "on" and resolve_compile("off", 10**6) == "off"
    with pytest.raises(ValueError, match=r"manager\.compile"):
        ManagerPolicy(policy.model, policy.tokenizer, compile="fast")
    assert ManagerPolicy(policy.model, policy.tokenizer, compile="auto").settings()["compile"] == "auto"


def test_a_compiled_engine_that_cannot_compile_decodes_eagerly_and_says_so(policy, caplog, monkeypatch):
    from finemem_lib.agents.compiled_decoding import CompiledDecoder

    def broken(self):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(CompiledDecoder, "_static_step", broken)
    prompts = [[5, 6, 7, 8, 9][: 2 + i] for i in range(3)]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=5)
    eager = policy.generate(prompts, greedy)
    compiled = ManagerPolicy(policy.model, policy.tokenizer, style="extractive", compile="on")
    with caplog.at_level("WARNING"):
        got = compiled.generate(prompts, greedy)
    assert "decoding eagerly" in caplog.text
    assert [g.completion_ids.tolist() for g in got] == [g.completion_ids.tolist() for g in eager]


@pytest.mark.slow
def test_compiled_decode_steps_give_the_eager_tokens_and_log_probs(policy):
    """Greedy: the same tokens as the eager decoder; log-probs within float rounding (inductor compiles here)."""
    from finemem_lib.agents.compiled_decoding import CompiledDecoder
    from finemem_lib.agents.decoding import IncrementalDecoder

    prompts = [[5, 6, 7, 8, 9, 10, 11][: 3 + i] for i in range(3)]
    eager = IncrementalDecoder(policy.model, policy.stop_ids).decode(prompts, 12, temperature=0.0)
    compiled = CompiledDecoder(policy.model, policy.stop_ids).decode(prompts, 12, temperature=0.0)
    assert len(compiled) == len(prompts)
    for a, b in zip(eager, compiled, strict=True):
        assert a.tokens.tolist() == b.tokens.tolist()
        assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_native_completions_are_ordinary_tensors_a_training_pass_can_use(policy):
    """The engine decodes in inference mode; what it returns must still go through autograd."""
    out = policy.generate([[5, 6, 7]], SamplingParams(temperature=1.0, max_new_tokens=4), seed=0)[0]
    assert not out.completion_ids.is_inference() and not out.logprobs.is_inference()
    embedded = policy.model.get_input_embeddings()(out.completion_ids.unsqueeze(0))
    embedded.sum().backward()  # inference tensors cannot be saved for backward


def test_native_calls_on_a_cpu_have_at_most_cpu_rows_rows(policy, monkeypatch):
    from finemem_lib.agents.engines import native

    engine = build_engine("native", policy.model, 0, policy.stop_ids)
    monkeypatch.setattr(native, "CPU_ROWS", 3)
    rows = []
    original = engine.decoder.decode
    engine.decoder.decode = lambda batch, *a, **k: rows.append(len(batch)) or original(batch, *a, **k)
    prompts = [[5, 6, 7, 8][: 1 + i % 4] for i in range(7)]
    out = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=3), batch_size=5)
    assert len(out) == 7 and max(rows) == 3 and sum(rows) == 7
