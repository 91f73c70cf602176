"""One step-credit GRPO update computed by hand, next to the trainer's own loss (notebook 03).

The pieces the notebook puts together in a few lines: a trainer built exactly as a run builds it (not
trained), one micro-batch of step samples padded as the trainer pads them, per-token log-probs from one
plain forward pass (no shared prefix, no fused head: the textbook formula), and a plain gradient step
that moves the policy away from the one that rolled out, so that the PPO ratio differs from 1.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finemem_lib.data.instance import Instance
from finemem_lib.episodes.advantages import episode_group_advantages
from finemem_lib.episodes.rollout import Episode
from finemem_lib.infra.paths import ProfilePaths
from finemem_lib.training.config import training_settings
from finemem_lib.training.grpo import StepCreditGRPOTrainer
from finemem_lib.training.samples import StepSample, collate_step_samples, trim_padding, truncated_rows


def hand_trainer(
    cfg: Mapping[str, Any],
    paths: ProfilePaths,
    data: Mapping[str, Sequence[Instance]],
    start: str | Path,
    variant: str = "finemem",
    seed: int = 0,
) -> StepCreditGRPOTrainer:
    """The trainer a run of ``variant`` builds from ``start``, ready for its loss (its output folder a temporary one).

    It is put in training mode with TRL's gradient-accumulation count set, as inside ``trainer.train()``.
    """
    from finemem_lib.training.run import _build_trainer  # one builder for the runs and this page

    settings = training_settings(cfg, variant=variant)
    output_dir = Path(tempfile.mkdtemp(prefix="finemem-hand-update-"))
    trainer = _build_trainer(cfg, settings, seed, list(data["train"]), [], start, output_dir, None)
    weakref.finalize(trainer, shutil.rmtree, output_dir, ignore_errors=True)  # the folder goes with the trainer
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    return trainer


def rollout_group(trainer: StepCreditGRPOTrainer, instances: Sequence[Instance], seed: int = 0) -> list[Episode]:
    """The G episodes of the first of ``instances`` whose step rewards differ between rollouts (else the first group).

    A group whose G rollouts all earn the same rewards has zero advantages and contributes no gradient:
    it would show nothing.
    """
    spec = trainer.args.reward
    first = None
    for instance in instances:  # one at a time: usually the first group already differs
        group = trainer._rollout([instance], trainer.rollout_settings, seed)[0]
        first = first or group
        if np.any(episode_group_advantages(group, spec)):
            return group
    if first is None:
        raise ValueError("no instance to roll out")
    return first


def micro_batch(trainer: StepCreditGRPOTrainer, samples: Sequence[StepSample]) -> dict[str, torch.Tensor]:
    """The first micro-batch's worth of ``samples``, padded and masked as the trainer does, with reference log-probs."""
    chosen = list(samples)[: trainer.args.per_device_train_batch_size]
    batch = collate_step_samples(chosen, trainer._tokenizer.pad_token_id, trainer.accelerator.device)
    if trainer.mask_truncated_completions:
        truncated = truncated_rows(batch["completion_ids"], batch["completion_mask"], trainer.eos_token_ids)
        batch["completion_mask"] = batch["completion_mask"] * (~truncated).unsqueeze(1).long()
    batch["num_items_in_batch"] = batch["completion_mask"].sum()
    batch = trim_padding(batch)
    if trainer.beta != 0.0:  # the reference log-probs, by the trainer's own pass (as in a round)
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        with torch.no_grad():
            batch["ref_per_token_logps"] = trainer._get_per_token_logps_and_entropies(
                trainer.ref_model, ids, attention, batch["completion_ids"].size(1)
            )[0]
    return batch


def completion_logps(model: torch.nn.Module, batch: Mapping[str, torch.Tensor], temperature: float) -> torch.Tensor:
    """``[B, C]`` log π(o_k | prompt, o_<k) of every completion token: one forward pass, logits divided by T."""
    prompt, completion = batch["prompt_ids"], batch["completion_ids"]
    ids = torch.cat([prompt, completion], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, prompt.size(1) - 1 : -1] / temperature
    return logits.float().log_softmax(-1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)


def move_policy(
    trainer: StepCreditGRPOTrainer,
    batch: Mapping[str, torch.Tensor],
    old_logps: torch.Tensor,
    clipped_share: float = 0.05,
    first_size: float = 0.01,
    tries: int = 12,
) -> tuple[float, float]:
    """Move the policy down the trainer's loss until the clip acts; returns (step length, share of tokens clipped).

    It stands for the first of several optimizer steps on one round (TRL's ``num_iterations`` > 1): afterwards
    the policy differs from the one that sampled the batch (``old_logps``), so the ratio π_θ / π_old leaves 1.
    The step is along the normalised gradient of the on-policy loss, its length doubled from ``first_size``
    until at least ``clipped_share`` of the completion tokens have a ratio outside [1 - ε_low, 1 + ε_high].
    A loss with no gradient (zero advantages, the policy at the reference) leaves the policy where it is.
    """
    model = trainer.model
    model.zero_grad()
    trainer._compute_loss(model, dict(batch)).backward()
    params = [p for p in model.parameters() if p.grad is not None]
    grads = [p.grad.detach().clone() for p in params]
    model.zero_grad()
    norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    if norm < 1e-8:  # zero advantages at the reference: no direction to move along (rounding is not one)
        return 0.0, 0.0
    mask = batch["completion_mask"].bool()
    size, moved, share = first_size, 0.0, 0.0
    for _ in range(tries):
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= (size - moved) * g / norm
            moved = size
            ratio = torch.exp(completion_logps(model, batch, trainer.temperature) - old_logps)[mask]
        share = float(((ratio < 1 - trainer.epsilon_low) | (ratio > 1 + trainer.epsilon_high)).float().mean())
        if share >= clipped_share:
            break
        size *= 2
    return moved, share


def gradient_gap(a: torch.Tensor, b: torch.Tensor, model: torch.nn.Module, floor: float = 1e-6) -> float:
    """``|grad a - grad b| / max(|grad b|, floor)`` over ``model``'s parameters (gradients below ``floor`` count as 0).

    The floor keeps a group with zero advantages (whose loss is the KL term alone, with a gradient of the size
    of float rounding) from dividing rounding by rounding.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    grads = []
    for loss in (a, b):
        found = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        grads.append(
            torch.cat(
                [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(found, params, strict=True)]
            )
        )
    return float((grads[0] - grads[1]).norm() / grads[1].norm().clamp(min=floor))
