"""A credit scheme's step rewards and advantages A_t for finished episodes: the trainer's and the measure's ingredients.

A credit scheme (a row of :data:`finemem_lib.core.reward_spec.SCHEME_TABLE`) reads, besides the house
reward components (r_global, r_chunk), each step's format score, the rollout's compression reward, how
many retrieved items each step wrote and the hindsight credit routed to it
(:func:`episode_ingredients`). The same ingredients feed the trainer (:func:`scheme_round_credit`, one
round of groups) and the credit-quality measure (:mod:`finemem_lib.episodes.credit_schemes_study`, which
saves them per step), and both form A_t with :func:`finemem_lib.core.credit_schemes.scheme_advantages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from finemem_lib.core import credit_schemes as cs
from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.episodes.advantages import RoundCredit, round_credit

if TYPE_CHECKING:
    from finemem_lib.episodes.rollout import Episode

INGREDIENTS = ("r_fmt", "r_comp", "retrieved", "hindsight")  # beside the house components r_global, r_chunk, N


def episode_ingredients(episode: Episode) -> dict[str, np.ndarray]:
    """``{r_fmt, r_comp, retrieved, hindsight}`` per step (``[T]``) of one finished episode."""
    T = episode.T
    return {
        "r_fmt": episode.r_fmt,
        "r_comp": np.full(T, episode.r_comp),
        "retrieved": cs.retrieval_counts(episode.evidence_steps, T),
        "hindsight": cs.hindsight_credit(episode.scores, episode.evidence_steps, T),
    }


def group_scheme_inputs(group: Sequence[Episode]) -> cs.SchemeInputs:
    """The :class:`~finemem_lib.core.credit_schemes.SchemeInputs` of the G episodes of one instance."""
    lengths = {e.T for e in group}
    if len(lengths) != 1:
        raise ValueError(f"episodes of one group must have the same number of steps, got {sorted(lengths)}")
    parts = [episode_ingredients(e) for e in group]
    return cs.SchemeInputs(
        r_global=np.array([e.r_global for e in group], dtype=np.float64),
        r_comp=np.array([e.r_comp for e in group], dtype=np.float64),
        r_fmt=np.stack([p["r_fmt"] for p in parts]),
        r_chunk=np.stack([e.r_chunk for e in group]),
        retrieved=np.stack([p["retrieved"] for p in parts]),
        hindsight=np.stack([p["hindsight"] for p in parts]),
    )


def scheme_round_credit(groups: Sequence[Sequence[Episode]], spec: RewardSpec) -> RoundCredit:
    """:func:`finemem_lib.episodes.advantages.round_credit` for a credit scheme: each group's r_t and A_t."""
    inputs = [group_scheme_inputs(group) for group in groups]
    step = [cs.scheme_step_rewards(spec, x) for x in inputs]
    return RoundCredit(spec, step, [cs.scheme_advantages(spec, x) for x in inputs])


def credit_of(groups: Sequence[Sequence[Episode]], spec: RewardSpec) -> RoundCredit:
    """A round's rewards and A_t under ``spec``: a paper variant's (:func:`round_credit`) or a credit scheme's."""
    return round_credit(groups, spec) if spec.row.credit == "grpo" else scheme_round_credit(groups, spec)
