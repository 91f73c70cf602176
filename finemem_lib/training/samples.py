"""Episodes -> step samples -> padded batches -> micro-batches.

A training sample is one chunk step of one rollout: its prompt is the step's own fresh context
(memory view + chunk), its completion the operations the manager emitted, its advantage the
A_t of that step from :func:`finemem_lib.episodes.advantages.round_credit` for a paper variant, or from
:func:`finemem_lib.episodes.scheme_credit.scheme_round_credit` (its kernel in
:mod:`finemem_lib.core.credit_schemes`) for a credit scheme (the G rollouts of an instance form the group;
a round is scored once, and its logged reward means read that result).
Every completion token of the step gets A_t; prompt tokens are never scored (they only condition). A review-style
step whose lines the harness restates is one sample per decision (:mod:`finemem_lib.agents.review_decoding`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from trl.trainer.utils import pad

from finemem_lib.core import rewards
from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.episodes.advantages import RoundCredit
from finemem_lib.episodes.rollout import Episode
from finemem_lib.episodes.scheme_credit import credit_of
from finemem_lib.training.nested_rows import row_families

# Keys of a batch whose second dimension runs over prompt tokens (left-padded) or completion tokens (right-padded).
PROMPT_KEYS = ("prompt_ids", "prompt_mask")
COMPLETION_KEYS = (
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
)


@dataclass(frozen=True)
class StepSample:
    """One chunk step of one rollout, ready for the loss."""

    group: int
    rollout: int
    step: int
    prompt_ids: torch.Tensor
    completion_ids: torch.Tensor
    sampling_logprobs: torch.Tensor
    advantage: float


def step_samples(groups: Sequence[Sequence[Episode]], spec: RewardSpec) -> tuple[list[StepSample], RoundCredit]:
    """Every step of every rollout of every group as a sample carrying its A_t; also the round's rewards and A_t."""
    credit = credit_of(groups, spec)
    samples: list[StepSample] = []
    for i, (group, adv) in enumerate(zip(groups, credit.advantages, strict=True)):
        for g, episode in enumerate(group):
            for t, record in enumerate(episode.steps):
                if record.completion_ids.numel() == 0:
                    raise ValueError(f"empty completion at group {i}, rollout {g}, step {t}")
                if record.segments:  # the manager's decisions only; the restated lines between them are not its
                    a_t = float(adv[g, t])
                    samples.extend(
                        StepSample(i, g, t, s.prompt_ids.long(), s.completion_ids.long(), s.logprobs.float(), a_t)
                        for s in record.segments
                    )
                    continue
                samples.append(
                    StepSample(
                        group=i,
                        rollout=g,
                        step=t,
                        prompt_ids=record.prompt_ids.long(),
                        completion_ids=record.completion_ids.long(),
                        sampling_logprobs=record.old_logprobs.float(),
                        advantage=float(adv[g, t]),
                    )
                )
    return samples, credit


def collate_step_samples(
    samples: Sequence[StepSample], pad_token_id: int, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Pad samples into the tensors TRL's GRPO loss reads (prompts left-padded, completions right-padded)."""
    if not samples:
        raise ValueError("no step samples to collate")
    prompts = [s.prompt_ids for s in samples]
    completions = [s.completion_ids for s in samples]
    batch = {
        "prompt_ids": pad(prompts, padding_value=pad_token_id, padding_side="left"),
        "prompt_mask": pad([torch.ones_like(p) for p in prompts], padding_value=0, padding_side="left"),
        "completion_ids": pad(completions, padding_value=pad_token_id, padding_side="right"),
        "completion_mask": pad([torch.ones_like(c) for c in completions], padding_value=0, padding_side="right"),
        "sampling_per_token_logps": pad(
            [s.sampling_logprobs for s in samples], padding_value=0.0, padding_side="right"
        ),
        "advantages": torch.tensor([s.advantage for s in samples], dtype=torch.float32),
    }
    return {key: value.to(device) for key, value in batch.items()}


def truncated_rows(
    completion_ids: torch.Tensor, completion_mask: torch.Tensor, stop_ids: Sequence[int]
) -> torch.Tensor:
    """``[B]`` bool: the completion did not end with a stop token (it hit the token limit)."""
    lengths = completion_mask.sum(dim=1).clamp(min=1)
    last = completion_ids.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
    return ~torch.isin(last, torch.tensor(list(stop_ids), device=last.device))


def select_rows(batch: dict, rows: torch.Tensor) -> dict:
    """The rows ``rows`` of every per-sample entry of ``batch``; scalars and None are kept as they are."""
    size = batch["advantages"].shape[0]
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == size:
            out[key] = value[rows.to(value.device)]
        else:
            out[key] = value
    return out


def trim_padding(batch: dict) -> dict:
    """Drop prompt columns that are padding in every row and completion columns past every row's (unmasked) end.

    Both are exact: left padding is never attended, and masked trailing completion tokens are neither
    attended by earlier tokens (causal attention) nor scored.
    """
    out = dict(batch)
    prompt_used = batch["prompt_mask"].bool().any(dim=0).nonzero()
    start = int(prompt_used[0]) if len(prompt_used) else batch["prompt_mask"].shape[1] - 1
    for key in PROMPT_KEYS:
        out[key] = batch[key][:, start:]
    completion_used = batch["completion_mask"].bool().any(dim=0).nonzero()
    end = int(completion_used[-1]) + 1 if len(completion_used) else 1
    for key in COMPLETION_KEYS:
        if out.get(key) is not None:
            out[key] = out[key][:, :end]
    return out


def split_micro_batches(batch: dict, parts: int, generator: torch.Generator | None = None) -> list[dict]:
    """Shuffle the samples of ``batch`` and cut them into ``parts`` near-equal micro-batches, padding trimmed.

    Samples are shuffled family by family (a sample whose tokens start another's goes with it:
    :mod:`finemem_lib.training.nested_rows`), so the decisions of one review step mostly share a micro-batch
    and its log-prob passes score them from one row; a family at a cut is split there."""
    size = batch["advantages"].shape[0]
    if parts < 1 or parts > size:
        raise ValueError(f"cannot cut {size} step samples into {parts} micro-batches")
    groups = row_families(
        torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1),
        torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1),
    )
    order = torch.tensor([row for i in torch.randperm(len(groups), generator=generator).tolist() for row in groups[i]])
    return [trim_padding(select_rows(batch, rows)) for rows in torch.tensor_split(order, parts)]


def episode_metrics(groups: Sequence[Sequence[Episode]], credit: RoundCredit) -> dict[str, tuple[float, int]]:
    """Per-round reward components as ``{name: (sum, count)}`` (summed over episodes or steps, for averaging).

    The step rewards are the round's own (``credit``, computed once with the advantages)."""
    episodes = [episode for group in groups for episode in group]
    step_rewards = [row for group_rewards in credit.rewards for row in group_rewards]
    all_steps = np.concatenate(step_rewards) if step_rewards else np.zeros(0)
    beta = credit.spec.beta
    eara_steps = np.concatenate([rewards.eara(e.r_global, e.N, beta) for e in episodes]) if episodes else all_steps
    n_ep, n_steps = len(episodes), len(all_steps)
    return {
        "rewards/step_total": (float(all_steps.sum()), n_steps),
        "rewards/step_total_sq": (float((all_steps**2).sum()), n_steps),
        "rewards/global": (sum(e.r_global for e in episodes), n_ep),
        "rewards/chunk": (float(sum(e.r_chunk.sum() for e in episodes)), n_steps),
        "rewards/format": (float(sum(e.r_fmt.sum() for e in episodes)), n_steps),
        "rewards/compression": (sum(e.r_comp for e in episodes), n_ep),
        "rewards/eara": (float(eara_steps.sum()), n_steps),
        "rewards/evidence": (float(sum(e.N.sum() for e in episodes)), n_ep),
        "memory/tokens": (float(sum(e.memory_tokens for e in episodes)), n_ep),
        "memory/items": (float(sum(e.steps[-1].memory_items for e in episodes if e.steps)), n_ep),
    }
