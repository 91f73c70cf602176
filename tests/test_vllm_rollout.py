"""The vLLM rollout path, as far as it can be checked without vLLM: config plumbing, errors, backend, IS ratio."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from trl import GRPOTrainer
from trl.generation.vllm_generation import VLLMGeneration

from finemem_lib.agents.policy import SamplingParams
from finemem_lib.agents.sft import policy_settings
from finemem_lib.data.instance import QA, Instance
from finemem_lib.episodes.rollout import RolloutSettings
from finemem_lib.infra.config import load_profile
from finemem_lib.training.config import TrainingSettings, grpo_config
from finemem_lib.training.grpo import StepCreditGRPOTrainer
from finemem_lib.training.vllm_rollout import (
    VLLM_MISSING,
    VLLMBackend,
    decoded_from_vllm,
    importance_sampling_ratio,
    manager_engine,
    vllm_available,
    vllm_grpo_args,
)
from tests.tiny import tiny_policy

INSTANCE = Instance(
    "toy/0", "synth_factoid", ("Ada lives in Oslo.", "Ada now lives in Lima."), (QA("Where?", ("Lima",)),)
)


# ---------------------------------------------------------------------------- config plumbing
def test_profiles_name_their_engine_and_the_policy_gets_it():
    assert manager_engine(load_profile("default")) == "native"
    assert manager_engine(load_profile("smoke")) == "native"
    assert manager_engine(load_profile("paper")) == "vllm"
    assert policy_settings(load_profile("default"))["engine"] == "native"
    with pytest.raises(ValueError, match=r"manager\.engine must be one of"):
        manager_engine({"manager": {"engine": "sglang"}})


def test_vllm_grpo_args_map_the_manager_section_onto_trl():
    assert vllm_grpo_args(load_profile("default")) == {}
    cfg = {"manager": {"engine": "vllm", "vllm": {"gpu_memory_utilization": 0.4, "max_model_length": None}}}
    args = vllm_grpo_args(cfg, check_installed=False)
    assert args == {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.4}
    with pytest.raises(ValueError, match=r"unknown manager\.vllm key"):
        vllm_grpo_args({"manager": {"engine": "vllm", "vllm": {"gpu_mem": 0.4}}}, check_installed=False)


@pytest.mark.skipif(vllm_available(), reason="vLLM is installed here")
def test_a_missing_vllm_says_what_to_install():
    with pytest.raises(ImportError, match=r"pip install -e \.\[gpu\]"):
        vllm_grpo_args(load_profile("paper"))
    assert "manager.engine" in VLLM_MISSING


def _trainer_inputs(engine: str, tmp_path, **config_overrides):
    policy = tiny_policy([INSTANCE], engine=engine)
    rollout = RolloutSettings(num_generations=2, sampling=SamplingParams(temperature=1.0, max_new_tokens=8))
    settings = TrainingSettings(instances_per_step=1, micro_batch_size=4, max_steps=1, kl_beta=0.0)
    args = grpo_config(settings, rollout, str(tmp_path), 0, [2], processes=1, **config_overrides)
    return policy, args, rollout


def test_a_vllm_policy_needs_a_vllm_grpo_config(tmp_path):
    policy, args, rollout = _trainer_inputs("vllm", tmp_path)
    with pytest.raises(ValueError, match="vllm_grpo_args"):
        StepCreditGRPOTrainer(policy, args, [INSTANCE], reasoner=None, rollout_settings=rollout)


@pytest.mark.skipif(vllm_available(), reason="vLLM is installed here")
def test_the_trainer_names_the_missing_vllm_before_building_anything(tmp_path):
    policy, args, rollout = _trainer_inputs("vllm", tmp_path, use_vllm=True, vllm_mode="colocate")
    with pytest.raises(ImportError, match="pip install"):
        StepCreditGRPOTrainer(policy, args, [INSTANCE], reasoner=None, rollout_settings=rollout)


# ---------------------------------------------------------------------------- the backend (a stand-in VLLMGeneration)
class FakeGeneration:
    """Records the settings ``generate`` sees; returns fixed completions and top-1 log-probs."""

    def __init__(self) -> None:
        self.temperature, self.top_p, self.top_k = 1.0, 1.0, 0
        self.max_completion_length, self.generation_kwargs = 16, {"seed": 3}
        self.seen: dict = {}

    def generate(self, prompts, images, num_generations):
        self.seen = {
            "prompts": prompts,
            "images": images,
            "n": num_generations,
            "temperature": self.temperature,
            "max_tokens": self.max_completion_length,
            "kwargs": dict(self.generation_kwargs),
        }
        completions = [[5, 6, 2], [7, 8]]
        logprobs = [[[-0.1], [-0.2], [-0.3]], [[-0.4], [None]]]
        return prompts, completions, logprobs, None


def test_vllm_backend_generates_with_the_rollout_settings_and_restores_them():
    fake = FakeGeneration()
    backend = VLLMBackend(fake, stop_ids=[2])
    decoded = backend.generate([[1, 2], [3]], SamplingParams(temperature=0.0, max_new_tokens=9))
    assert fake.seen["prompts"] == [[1, 2], [3]] and fake.seen["n"] == 1 and fake.seen["images"] is None
    assert fake.seen["temperature"] == 0.0 and fake.seen["max_tokens"] == 9
    assert fake.seen["kwargs"] == {"seed": 3, "stop_token_ids": [2]}
    assert (fake.temperature, fake.max_completion_length, fake.generation_kwargs) == (1.0, 16, {"seed": 3})
    assert [d.tokens.tolist() for d in decoded] == [[5, 6, 2], [7, 8]]
    assert [d.finished for d in decoded] == [True, False]
    assert torch.allclose(decoded[0].logprobs, torch.tensor([-0.1, -0.2, -0.3]))
    assert math.isnan(decoded[1].logprobs[1])  # not reported by vLLM: NaN, which the IS ratio turns into 1


def test_a_policy_with_an_attached_backend_returns_its_completions():
    policy = tiny_policy([INSTANCE], engine="vllm")
    policy.attach_backend(VLLMBackend(FakeGeneration(), policy.stop_ids))
    gens = policy.generate([[1, 2], [3]], SamplingParams())
    assert [g.completion_ids.tolist() for g in gens] == [[5, 6, 2], [7, 8]]
    assert gens[0].prompt_ids.tolist() == [1, 2] and gens[0].logprobs.dtype == torch.float32


def test_decoded_from_vllm_without_logprobs_gives_nan():
    (only,) = decoded_from_vllm([[4, 9]], None, [9])
    assert only.finished and torch.isnan(only.logprobs).all()


# ---------------------------------------------------------------------------- importance sampling (TRL's rule)
def test_importance_sampling_ratio_follows_trl_modes():
    old = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    sampling = torch.tensor([[-1.5, -1.0, float("nan")], [-0.5, -2.5, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    diff = torch.tensor([[0.5, -1.0, 0.0], [0.0, 2.0, 0.0]])
    token = importance_sampling_ratio(old, sampling, mask, "token_truncate", None, 3.0)
    assert torch.allclose(token, torch.exp(diff).clamp(max=3.0))
    sequence = importance_sampling_ratio(old, sampling, mask, "sequence_mask", None, 3.0)
    assert sequence.shape == (2, 1)
    assert torch.allclose(sequence, torch.tensor([[math.exp(-0.5)], [0.0]]))  # e^2 > 3 is masked out
    masked = importance_sampling_ratio(old, sampling, mask, "token_mask", 0.5, 3.0)
    assert masked[0, 1] == 0.0 and masked[1, 1] == 0.0 and masked[0, 2] == 1.0
    with pytest.raises(ValueError, match="unknown importance sampling mode"):
        importance_sampling_ratio(old, sampling, mask, "per_step")


# ---------------------------------------------------------------------------- TRL internals used by the vLLM path
def test_trl_vllm_internals_are_still_there():
    init = inspect.getsource(GRPOTrainer.__init__)
    for name in ("self.vllm_generation", "self._last_loaded_step", "self.vllm_importance_sampling_mode"):
        assert name in init
    assert list(inspect.signature(VLLMGeneration.generate).parameters)[:4] == [
        "self",
        "prompts",
        "images",
        "num_generations",
    ]
    assert callable(VLLMGeneration.sync_weights)
    generate = inspect.getsource(VLLMGeneration.generate)
    for name in ("self.temperature", "self.top_p", "self.top_k", "self.max_completion_length"):
        assert name in generate
    assert "generation_kwargs.update(self.generation_kwargs)" in generate
