"""Step rewards and GRPO advantages of finished episodes under a :class:`~finemem_lib.core.reward_spec.RewardSpec`.

The G rollouts of an instance form a group: their ``[G, T]`` step rewards are normalised into
advantages by :func:`finemem_lib.core.rewards.group_advantages`. A training round scores its groups
once (:func:`round_credit`); the samples and the logged reward means both read that one result.
Episodes are used through their reward components only (``r_global``, ``N``, ``r_chunk``,
``r_fmt``, ``r_comp``), so this module needs nothing from the rollout code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from finemem_lib.core import rewards
from finemem_lib.core.reward_spec import RewardSpec

if TYPE_CHECKING:
    from finemem_lib.episodes.rollout import Episode


def group_step_rewards(
    group: Sequence[Episode],
    variant: str | RewardSpec,
    beta: float | None = None,
    w1: float | None = None,
    w2: float | None = None,
) -> np.ndarray:
    """``[G, T]`` step rewards of the G episodes of one instance (knobs given here override the spec's)."""
    spec = RewardSpec.of(variant, beta=beta, w1=w1, w2=w2)
    lengths = {e.T for e in group}
    if len(lengths) != 1:
        raise ValueError(f"episodes of one group must have the same number of steps, got {sorted(lengths)}")
    return np.stack([rewards.step_rewards(spec, e.r_global, e.N, e.r_chunk, e.r_fmt, e.r_comp) for e in group])


def episode_group_advantages(
    group: Sequence[Episode],
    variant: str | RewardSpec,
    beta: float | None = None,
    w1: float | None = None,
    w2: float | None = None,
    mode: str | None = None,
) -> np.ndarray:
    """``[G, T]`` GRPO advantages A_t of the G episodes of one instance."""
    spec = RewardSpec.of(variant, beta=beta, w1=w1, w2=w2, group_mode=mode)
    return rewards.group_advantages(group_step_rewards(group, spec), spec)


@dataclass(frozen=True)
class RoundCredit:
    """The step rewards and advantages of one round's groups (``[G, T]`` each, one entry per group)."""

    spec: RewardSpec
    rewards: list[np.ndarray]
    advantages: list[np.ndarray]


def round_credit(groups: Sequence[Sequence[Episode]], spec: RewardSpec) -> RoundCredit:
    """Score every group of a round once: step rewards r_t and advantages A_t."""
    step = [group_step_rewards(group, spec) for group in groups]
    return RoundCredit(spec, step, [rewards.group_advantages(r, spec) for r in step])
