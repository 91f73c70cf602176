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
