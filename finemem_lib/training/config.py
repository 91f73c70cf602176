"""Training settings of a profile (``training:``, ``rollout:``, ``rewards:``) and the TRL config built from them.

:class:`TrainingSettings` holds what the step-credit GRPO trainer needs beyond TRL's own
arguments: the reward spec (variant, weights, group-normalisation mode; one
:class:`~finemem_lib.core.reward_spec.RewardSpec`), how many instances one optimizer step rolls
out and how its step samples are cut into micro-batches.
:func:`grpo_config` turns it into a :class:`StepGRPOConfig` (a ``trl.GRPOConfig``), so loss
type, clipping, KL, gradient accumulation, logging and checkpointing are TRL's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from trl import GRPOConfig

from finemem_lib.core.reward_spec import SCHEMES, TRAINABLE, VARIANTS, RewardSpec
from finemem_lib.episodes.rollout import RolloutSettings, settings_from_config
from finemem_lib.infra.progress import progress_enabled

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
# transformers 5 renamed gradient_checkpointing (kept as a deprecated alias) to activation_checkpointing.
_CHECKPOINTING_ARG = next(
    name for name in ("activation_checkpointing", "gradient_checkpointing") if name in GRPOConfig.__dataclass_fields__
)


def unknown_variant(name: object) -> str:
    """The one-line error for a name that is neither a paper variant nor a credit scheme."""
    return f"unknown training variant {name!r}: the paper's variants are {VARIANTS}, the credit schemes {SCHEMES}"


@dataclass(frozen=True)
class HeldOutSettings:
    """Held-out global QA during training: every ``every`` optimizer steps on up to ``max_instances`` test instances."""

    every: int = 2
    max_instances: int | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"training.heldout.every must be >= 1, got {self.every}")
        if self.max_instances is not None and self.max_instances < 1:
            raise ValueError(f"training.heldout.max_instances must be >= 1 or null, got {self.max_instances}")


@dataclass(frozen=True)
class TrainingSettings:
    """The ``training:`` section of a profile, with the reward spec built from ``rewards:`` and ``training.variant``.

    Batch bookkeeping: one optimizer step rolls out ``instances_per_step`` instances (over all
    processes) x G rollouts x T chunk steps; every chunk step is one training sample. A process's
    samples are shuffled and cut into ``micro_batches`` near-equal micro-batches (gradient
    accumulation steps); ``micro_batches: null`` picks enough of them to keep each at most
    ``micro_batch_size`` samples. ``variant`` and ``variants`` name paper variants or credit schemes
    (:data:`~finemem_lib.core.reward_spec.TRAINABLE`).
    """

    reward: RewardSpec = field(default_factory=RewardSpec)
    variants: tuple[str, ...] = ("or_only", "finemem")
    seeds: tuple[int, ...] = (0,)
    sft_model: str | None = None
    instances_per_step: int = 4
    micro_batch_size: int = 16
    micro_batches: int | None = None
    learning_rate: float = 1e-6
    lr_scheduler: str = "constant_with_warmup"
    warmup: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    loss_type: str = "grpo"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    kl_beta: float = 0.001
    num_iterations: int = 1
    epochs: float = 1.0
    max_steps: int = -1
    save_steps: int = 10
    save_total_limit: int | None = 2
    logging_steps: int = 1
    mask_truncated_completions: bool = False
    bf16: bool = True
    gradient_checkpointing: bool = False
    shared_prefix: bool = True  # the prompts' common prefix computed once per micro-batch (same loss, faster)
    pack: bool = True  # log-prob passes skip padding: rows regrouped by length (same loss within float rounding)
    num_threads: int | None = None
    report_to: str = "none"  # TRL/transformers loggers: none | tensorboard (logs in <run output>/runs)
    heldout: HeldOutSettings = field(default_factory=HeldOutSettings)

    def __post_init__(self) -> None:
        for value in self.variants:
            if value not in TRAINABLE:
                raise ValueError(unknown_variant(value))
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"training.loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        for name in ("instances_per_step", "micro_batch_size", "num_iterations", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name} must be >= 1, got {getattr(self, name)}")
        if self.micro_batches is not None and self.micro_batches < 1:
            raise ValueError(f"training.micro_batches must be >= 1 or null, got {self.micro_batches}")
        if self.max_steps == 0 or (self.max_steps < 0 and self.epochs <= 0):
            raise ValueError("training needs max_steps > 0 or epochs > 0")
        if self.save_steps % self.num_iterations:
            raise ValueError(
                f"training.save_steps ({self.save_steps}) must be a multiple of num_iterations ({self.num_iterations}) "
                "so that a checkpoint never falls inside a reused rollout batch (exact resume)"
            )

    # Read-only views of the reward spec (the spec is the one place they are set).
    variant = property(lambda self: self.reward.variant, doc="The reward variant trained (``reward.variant``).")
    beta = property(lambda self: self.reward.beta, doc="``reward.beta``")
    w1 = property(lambda self: self.reward.w1, doc="``reward.w1``")
    w2 = property(lambda self: self.reward.w2, doc="``reward.w2``")
    group_mode = property(lambda self: self.reward.group_mode, doc="``reward.group_mode``")

    def with_variant(self, variant: str) -> TrainingSettings:
        """The same settings with another reward variant."""
        return replace(self, reward=self.reward.with_variant(variant))

    def to_dict(self) -> dict[str, Any]:
        """Flat, as the run logs and run identities store it (the reward spec's fields at the top level)."""
        out = asdict(self)
        spec = out.pop("reward")
        head = {"variant": spec.pop("variant"), "variants": out.pop("variants"), "seeds": out.pop("seeds")}
        return {**head, **spec, **out}


def training_settings(cfg: Mapping[str, Any], **overrides: Any) -> TrainingSettings:
    """:class:`TrainingSettings` from a profile; unknown ``training:`` keys are an error."""
    section = dict(cfg.get("training") or {})
    section.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainingSettings)} - {"reward"} | {f.name for f in fields(RewardSpec)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"unknown training key(s) {unknown}; known: {sorted(known)}")
    reward_keys = {key: section.pop(key, None) for key in ("variant", "beta", "w1", "w2", "group_mode")}
    if reward_keys["variant"] is not None and reward_keys["variant"] not in TRAINABLE:
        raise ValueError(unknown_variant(reward_keys["variant"]))
    section["reward"] = RewardSpec.from_config(cfg, **reward_keys)  # training keys and overrides win over rewards:
    heldout = section.pop("heldout", None) or {}
    if not isinstance(heldout, Mapping):
        raise ValueError(f"training.heldout must be a mapping, got {type(heldout).__name__}")
    for key in ("variants", "seeds"):
        if key in section:
            if isinstance(section[key], str | int):
                raise ValueError(f"training.{key} must be a list, got {section[key]!r}")
            section[key] = tuple(section[key])
    for key in ("learning_rate", "warmup", "weight_decay", "max_grad_norm", "epsilon", "kl_beta", "epochs"):
        if section.get(key) is not None:
            section[key] = float(section[key])
    return TrainingSettings(**section, heldout=HeldOutSettings(**heldout))


@dataclass
class StepGRPOConfig(GRPOConfig):
    """``trl.GRPOConfig`` plus the step-credit settings (see :class:`TrainingSettings`).

    TRL's ``num_generations`` is G; ``per_device_train_batch_size`` is the micro-batch size in step
    samples (also the chunk size of the no-grad log-prob passes); ``gradient_accumulation_steps`` is
    the number of micro-batches per rollout round; ``beta`` is the KL coefficient (TRL's name).
    """

    instances_per_device: int = field(default=1, metadata={"help": "Instances rolled out per process per step."})
    reward: RewardSpec = field(
        default_factory=RewardSpec, metadata={"help": "Reward variant, beta, w1, w2 and group mode (a RewardSpec)."}
    )
    shared_prefix: bool = field(
        default=True, metadata={"help": "Compute the prompts' common prefix once per log-prob pass."}
    )
    pack: bool = field(default=True, metadata={"help": "Log-prob passes without padding (rows grouped by length)."})

    def to_dict(self) -> dict[str, Any]:
        """TRL's dict of the arguments, the reward spec as a plain dict (JSON-able, for loggers)."""
        out = super().to_dict()
        out["reward"] = self.reward.to_dict()
        return out


def num_processes() -> int:
    """Processes of the current launch (``accelerate launch`` / torchrun set ``WORLD_SIZE``), 1 otherwise.

    Read from the environment so that the distributed state is first set up by the trainer's own
    arguments (``use_cpu`` picks the gloo backend on a machine without GPUs).
    """
    return int(os.environ.get("WORLD_SIZE", "1"))


def micro_batch_plan(
    settings: TrainingSettings, G: int, chunk_counts: Sequence[int], processes: int = 1
) -> tuple[int, int, int]:
    """``(instances_per_device, micro_batches, micro_batch_size)`` for a launch of ``processes`` processes.

    A process rolls out ``instances_per_device`` instances per step, i.e. between
    ``ipd * G * min(T)`` and ``ipd * G * max(T)`` step samples; they are cut into ``micro_batches``
    parts, never more parts than the smallest round has samples.
    """
    if not chunk_counts or min(chunk_counts) < 1:
        raise ValueError("every training instance needs at least one chunk")
    if settings.instances_per_step % processes:
        raise ValueError(
            f"training.instances_per_step ({settings.instances_per_step}) must be divisible by the number of "
            f"processes ({processes})"
        )
    per_device = settings.instances_per_step // processes
    most = per_device * G * max(chunk_counts)
    fewest = per_device * G * min(chunk_counts)
    if settings.micro_batches is not None:
        parts = settings.micro_batches
        if parts > fewest:
            raise ValueError(
                f"training.micro_batches ({parts}) exceeds the step samples of the smallest round ({fewest})"
            )
    else:
        parts = min(math.ceil(most / settings.micro_batch_size), fewest)
    size = math.ceil(most / parts)
    size = G * math.ceil(size / G)  # TRL wants its generation batch to be a multiple of num_generations
    return per_device, parts, size


def grpo_config(
    settings: TrainingSettings,
    rollout_settings: RolloutSettings,
    output_dir: str,
    seed: int,
    chunk_counts: Sequence[int],
    processes: int | None = None,
    **overrides: Any,
) -> StepGRPOConfig:
    """The TRL config of one run (``overrides`` go straight to :class:`StepGRPOConfig`)."""
    sampling = rollout_settings.sampling
    if sampling.temperature <= 0:
        raise ValueError("GRPO needs sampled rollouts: manager.sampling.temperature must be > 0")
    G = rollout_settings.num_generations
    if G < 2:
        raise ValueError(f"rollout.num_generations must be >= 2 for group advantages, got {G}")
    per_device, parts, size = micro_batch_plan(settings, G, chunk_counts, processes or num_processes())
    on_gpu = torch.cuda.is_available()
    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "seed": seed,
        "data_seed": seed,
        "num_generations": G,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "max_completion_length": sampling.max_new_tokens,
        "per_device_train_batch_size": size,
        "gradient_accumulation_steps": parts,
        "instances_per_device": per_device,
        "reward": settings.reward,
        "shared_prefix": settings.shared_prefix,
        "pack": settings.pack,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_scheduler,
        "warmup_steps": settings.warmup,
        "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm,
        "loss_type": settings.loss_type,
        "epsilon": settings.epsilon,
        "epsilon_high": settings.epsilon_high,
        "beta": settings.kl_beta,
        "num_iterations": settings.num_iterations,
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": settings.save_total_limit,
        "logging_steps": settings.logging_steps,
        "mask_truncated_completions": settings.mask_truncated_completions,
        "bf16": settings.bf16 and on_gpu,
        _CHECKPOINTING_ARG: settings.gradient_checkpointing,
        "use_cpu": not on_gpu,
        "optim": "adamw_torch_fused" if on_gpu else "adamw_torch",
        "remove_unused_columns": False,
        "shuffle_dataset": True,
        "report_to": settings.report_to,
        "disable_tqdm": not progress_enabled(),
        "log_level": "warning",
    }
    kwargs.update(overrides)
    return StepGRPOConfig(**kwargs)


def run_rollout_settings(cfg: Mapping[str, Any]) -> tuple[RolloutSettings, RolloutSettings]:
    """``(train, eval)`` rollout settings of a profile."""
    return settings_from_config(dict(cfg), training=True), settings_from_config(dict(cfg), training=False)
