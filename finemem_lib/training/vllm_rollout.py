"""vLLM rollouts for step-credit GRPO on GPUs (``manager.engine: vllm``), through TRL's own vLLM integration.

TRL 1.16's ``GRPOTrainer`` builds a ``trl.generation.vllm_generation.VLLMGeneration`` when
``use_vllm=True``; in ``colocate`` mode every process holds its own vLLM engine on its GPU.
This module reuses it unchanged:

- :func:`vllm_grpo_args` turns the profile's ``manager.engine`` / ``manager.vllm`` into the
  ``GRPOConfig`` arguments (``use_vllm``, ``vllm_mode="colocate"``, memory share, tensor parallel
  size, sleep mode, max model length) and says what to install when vLLM is missing;
- :class:`VLLMBackend` is the backend :class:`~finemem_lib.agents.policy.ManagerPolicy` generates
  through: each chunk step's prompts go to ``VLLMGeneration.generate`` (one completion per prompt,
  the rollout's own sampling settings, the manager's stop tokens) and come back with the sampling
  log-probs vLLM reports (``logprobs_mode="processed_logprobs"``, top-1 = the sampled token), as TRL
  keeps them;
- the trainer (:mod:`finemem_lib.training.grpo`) loads the policy's weights into vLLM with
  ``VLLMGeneration.sync_weights`` before the first rollout of every optimizer step, recomputes
  ``old_per_token_logps`` with the training model, and applies TRL's importance-sampling correction
  (:func:`importance_sampling_ratio`, the rule of ``GRPOTrainer._generate_and_score_completions``).

vLLM samples with the engine's own seed (TRL seeds it with the process index), not per call.
vLLM is an optional extra (``pip install -e .[gpu]``) and never needed on a CPU machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from finemem_lib.agents.decoding import Decoded

VLLM_MISSING = (
    "manager.engine is 'vllm' but vLLM is not installed: install the GPU extra (pip install -e .[gpu]) on a CUDA "
    "machine, or set manager.engine to 'native' (CPU) or 'transformers'"
)
# TRL internals the vLLM path relies on (guarded by tests/test_vllm_rollout.py)
TRL_VLLM_INTERNALS = {
    "GRPOTrainer.vllm_generation": "the colocated engine TRL builds when use_vllm=True",
    "GRPOTrainer._last_loaded_step": "the optimizer step whose weights vLLM holds",
    "GRPOTrainer.vllm_importance_sampling_*": "the correction's mode and clip bounds",
    "VLLMGeneration.generate(prompts, images, num_generations)": "colocate generation from token ids",
    "VLLMGeneration.sync_weights()": "loads the training model's weights into vLLM",
    "VLLMGeneration.temperature/top_p/top_k/max_completion_length/generation_kwargs": "read at each generate",
}
# manager.vllm keys -> GRPOConfig arguments
VLLM_KEYS = {
    "gpu_memory_utilization": "vllm_gpu_memory_utilization",
    "tensor_parallel_size": "vllm_tensor_parallel_size",
    "enable_sleep_mode": "vllm_enable_sleep_mode",
    "max_model_length": "vllm_max_model_length",
    "importance_sampling_correction": "vllm_importance_sampling_correction",
    "importance_sampling_mode": "vllm_importance_sampling_mode",
    "importance_sampling_clip_max": "vllm_importance_sampling_clip_max",
}


def vllm_available() -> bool:
    """Whether vLLM can be imported (TRL's own check)."""
    from trl.import_utils import is_vllm_available

    return bool(is_vllm_available())


def require_vllm() -> None:
    """Raise a clear :class:`ImportError` when vLLM is not installed."""
    if not vllm_available():
        raise ImportError(VLLM_MISSING)


def manager_engine(cfg: Mapping[str, Any]) -> str:
    """The profile's ``manager.engine`` (default ``native``)."""
    from finemem_lib.agents.policy import ENGINES

    engine = str((cfg.get("manager") or {}).get("engine", "native"))
    if engine not in ENGINES:
        raise ValueError(f"manager.engine must be one of {ENGINES}, got {engine!r}")
    return engine


def vllm_grpo_args(cfg: Mapping[str, Any], check_installed: bool = True) -> dict[str, Any]:
    """``GRPOConfig`` arguments for the profile's engine: empty unless ``manager.engine`` is ``vllm``."""
    if manager_engine(cfg) != "vllm":
        return {}
    if check_installed:
        require_vllm()
    section = dict((cfg.get("manager") or {}).get("vllm") or {})
    unknown = sorted(set(section) - set(VLLM_KEYS))
    if unknown:
        raise ValueError(f"unknown manager.vllm key(s) {unknown}; known: {sorted(VLLM_KEYS)}")
    args: dict[str, Any] = {"use_vllm": True, "vllm_mode": "colocate"}
    args.update({VLLM_KEYS[k]: v for k, v in section.items() if v is not None})
    return args


def importance_sampling_ratio(
    old_logps: torch.Tensor,
    sampling_logps: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "sequence_mask",
    clip_min: float | None = None,
    clip_max: float | None = 3.0,
) -> torch.Tensor:
    """TRL's correction for the gap between the vLLM sampler and the training model.

    ``exp(old - sampling)`` per token (``token_*``) or per sequence (``sequence_*``, summed over the
    completion); ``*_truncate`` clamps it to ``[clip_min, clip_max]``, ``*_mask`` zeroes it outside.
    NaN sampling log-probs (not reported by vLLM) give a ratio of 1.
    """
    diff = torch.nan_to_num((old_logps - sampling_logps) * mask, nan=0.0)
    if mode.startswith("sequence_"):
        diff = diff.sum(dim=-1, keepdim=True)
    elif not mode.startswith("token_"):
        raise ValueError(f"unknown importance sampling mode {mode!r}")
    ratio = torch.exp(diff)
    if mode.endswith("_truncate"):
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    if mode.endswith("_mask"):
        low = -math.inf if clip_min is None else clip_min
        high = math.inf if clip_max is None else clip_max
        return ratio.masked_fill((ratio < low) | (ratio > high), 0.0)
    raise ValueError(f"unknown importance sampling mode {mode!r}")


class VLLMBackend:
    """Generates the manager's completions with TRL's ``VLLMGeneration`` (colocate mode).

    Args:
        generation: the trainer's ``VLLMGeneration`` (``GRPOTrainer.vllm_generation``).
        stop_ids: the manager's stop tokens (end-of-turn, end-of-text).
    """

    def __init__(self, generation: Any, stop_ids: Sequence[int]) -> None:
        self.generation = generation
        self.stop_ids = [int(i) for i in stop_ids]

    @contextmanager
    def _settings(self, sampling: Any):
        """The rollout's sampling settings on the shared ``VLLMGeneration``, restored afterwards."""
        names = ("temperature", "top_p", "top_k", "max_completion_length", "generation_kwargs")
        saved = {name: getattr(self.generation, name) for name in names}
        self.generation.temperature = sampling.temperature
        self.generation.top_p = sampling.top_p
        self.generation.top_k = sampling.top_k
        self.generation.max_completion_length = sampling.max_new_tokens
        self.generation.generation_kwargs = {**(saved["generation_kwargs"] or {}), "stop_token_ids": self.stop_ids}
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(self.generation, name, value)

    def generate(self, prompts: list[list[int]], sampling: Any, seed: int | None = None) -> list[Decoded]:
        """One completion per prompt; ``seed`` is not used (vLLM samples with its engine seed)."""
        with self._settings(sampling):
            _, completions, logprobs, _ = self.generation.generate(prompts=prompts, images=None, num_generations=1)
        return decoded_from_vllm(completions, logprobs, self.stop_ids)


def decoded_from_vllm(
    completions: Sequence[Sequence[int]], logprobs: Sequence[Sequence[Sequence[float | None]]] | None, stop_ids
) -> list[Decoded]:
    """:class:`Decoded` completions from vLLM's token ids and top-k log-probs (top-1 = the sampled token)."""
    stops = set(int(i) for i in stop_ids)
    out = []
    for row, tokens in enumerate(completions):
        tokens = list(tokens)
        if logprobs is None:
            values = [math.nan] * len(tokens)
        else:
            values = [math.nan if lp[0] is None else float(lp[0]) for lp in logprobs[row]]
        out.append(
            Decoded(
                tokens=torch.tensor(tokens, dtype=torch.long),
                logprobs=torch.tensor(values, dtype=torch.float32),
                finished=bool(tokens) and tokens[-1] in stops,
            )
        )
    return out
