"""Step-credit schemes of other RL memory managers, as pure batched kernels over plain arrays.

Each scheme (a row of :data:`finemem_lib.core.reward_spec.SCHEME_TABLE`) turns what one group of G
rollouts of an instance produced into the advantage A_t that every token of step t's completion gets.
The house variants (OR-only, CSR, EARA, Fine-Mem) are in :mod:`finemem_lib.core.rewards`; these are
the peers' ways, adapted to a flat memory written one chunk step at a time (docs/credit_schemes.md
gives each formula with its source):

- ``gigpo``: turn-level discounted returns normalised per step index over the group, plus a weighted
  trajectory term (mem-alpha-areal, ``examples/mem-alpha/memalpha.py``).
- ``adrpo``: a per-step QA reward normalised per step, its advantage multiplied by ``alpha`` for the
  steps that wrote retrieved evidence (MemBuilder, ``training/reward_server/attribution.py``, alpha = 4).
- ``hindsight``: each query's score routed to the steps that wrote the items retrieved for it, nothing
  to the other steps (Mem-T's hindsight credit for construction operations).
- ``broadcast_traj``: one scalar per rollout, normalised over the group *before* it is copied to every
  step (a MemAgent port that normalises per trajectory before expanding turns).

Steps are 0-based; ``T`` is the number of steps, ``G`` the group size, ``n`` the number of queries.
Inputs are numpy arrays or lists; outputs are float64 arrays. Bad shapes or out-of-range steps raise
``ValueError`` naming the argument.

:func:`scheme_advantages` is the one dispatch from a scheme's row (its ``credit`` rule and terms, under a
:class:`~finemem_lib.core.reward_spec.RewardSpec`) to its kernel, over one group's
:class:`SchemeInputs`; the trainer and the credit-quality measure both call it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from finemem_lib.core import rewards
from finemem_lib.core.reward_spec import RewardSpec

ATTRIBUTION_RULES = ("any", "dominant")
GIGPO_GAMMA = 0.95  # mem-alpha-areal examples/mem-alpha/config.yaml: gigpo_gamma
GIGPO_LAMBDA = 1.0  # ... adv_lambda: weight of the trajectory term
GIGPO_EPS = 1e-8  # ... adv_eps
ADRPO_ALPHA = 4.0  # MemBuilder config.py ADRPO_CONFIG["alpha"]; reward_config.json attribution_boost_factor


def _array(x: Any, name: str, ndim: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric and rectangular: {exc}") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _group_norm(x: np.ndarray, axis: int | None, eps: float, ddof: int) -> np.ndarray:
    """(x - mean) / (std + eps) along ``axis``; exact zeros where the values are all equal."""
    mean = x.mean(axis=axis, keepdims=True)
    std = x.std(axis=axis, ddof=ddof, keepdims=True)
    constant = x.max(axis=axis, keepdims=True) == x.min(axis=axis, keepdims=True)
    constant = np.broadcast_to(constant, x.shape)
    return np.divide(x - mean, std + eps, out=np.zeros(x.shape), where=~constant)


def discounted_returns(rewards: Any, gamma: float) -> np.ndarray:
    """R_t = sum_{u >= t} gamma^(u - t) r_u along the last axis (``[..., T]`` -> ``[..., T]``)."""
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    r = _array(rewards, "rewards")
    if r.ndim == 0:
        raise ValueError("rewards must have shape [..., T]")
    out = np.zeros_like(r)
    running = np.zeros(r.shape[:-1])
    for t in range(r.shape[-1] - 1, -1, -1):
        running = r[..., t] + gamma * running
        out[..., t] = running
    return out


def gigpo_advantages(
    turn_scores: Any,
    traj_scores: Any,
    gamma: float = GIGPO_GAMMA,
    lam: float = GIGPO_LAMBDA,
    eps: float = GIGPO_EPS,
) -> np.ndarray:
    """GiGPO as mem-alpha-areal computes it: A_{i,t} = norm_t(R_{i,t}) + lam * norm(S_i).

    R_{i,t} is the discounted return of rollout i's turn scores from step t on; ``norm_t`` normalises
    over the G rollouts at the same step index, ``norm`` over the G trajectory scores S_i. Both use the
    population standard deviation (``unbiased=False``) and ``eps``, as the source does.

    Args:
        turn_scores: ``[G, T]`` per-step scores (the source: format + content reward of each turn).
        traj_scores: ``[G]`` per-rollout scores (the source: final QA score + beta * compression).
    """
    turns = _array(turn_scores, "turn_scores", ndim=2)
    traj = _array(traj_scores, "traj_scores", ndim=1)
    G, T = turns.shape
    if G == 0 or T == 0:
        raise ValueError(f"turn_scores must have shape [G, T] with G, T > 0, got {turns.shape}")
    if traj.shape != (G,):
        raise ValueError(f"traj_scores must have shape [G={G}], got {traj.shape}")
    turn_adv = _group_norm(discounted_returns(turns, gamma), axis=0, eps=eps, ddof=0)
    traj_adv = _group_norm(traj, axis=0, eps=eps, ddof=0)
    return turn_adv + float(lam) * traj_adv[:, None]


def _flat_evidence(evidence_steps: Any, T: int) -> tuple[np.ndarray, np.ndarray]:
    """(query index, writer step) of every retrieved item; a padded int array marks "none" with -1."""
    if isinstance(T, bool) or not isinstance(T, int | np.integer) or T <= 0:
        raise ValueError(f"T must be a positive int, got {T!r}")
    if isinstance(evidence_steps, np.ndarray):
        if evidence_steps.ndim != 2 or not np.issubdtype(evidence_steps.dtype, np.integer):
            raise ValueError(f"evidence_steps must be an integer array [n, k], got {evidence_steps.dtype} "
                             f"{evidence_steps.shape}")  # fmt: skip
        if np.any(evidence_steps < -1):
            raise ValueError("evidence_steps has a step below -1 (use -1 for padding)")
        query, slot = np.nonzero(evidence_steps >= 0)
        steps = evidence_steps[query, slot].astype(np.int64)
    else:
        rows = list(evidence_steps)
        flat = [s for row in rows for s in row]
        if any(isinstance(s, bool) or not isinstance(s, int | np.integer) for s in flat):
            raise ValueError("evidence_steps must hold integer steps")
        query = np.repeat(np.arange(len(rows)), [len(row) for row in rows])
        steps = np.asarray(flat, dtype=np.int64).reshape(-1)
    bad = steps[(steps < 0) | (steps >= T)]
    if bad.size:
        raise ValueError(f"evidence_steps has out-of-range step {int(bad[0])} for T={T}")
    return query.astype(np.int64), steps


def retrieval_counts(evidence_steps: Any, T: int) -> np.ndarray:
    """``[T]``: how many retrieved items (over all queries, right or wrong) each step wrote."""
    _, steps = _flat_evidence(evidence_steps, T)
    return np.bincount(steps, minlength=T).astype(np.float64)


def hindsight_credit(scores: Any, evidence_steps: Any, T: int) -> np.ndarray:
    """H_t = (1/n) sum_j s_j * 1[step t wrote an item retrieved for query j].

    Each query's score goes whole to every step that wrote one of its retrieved items (once per step,
    however many of its items were retrieved); a step that wrote no retrieved item gets nothing.
    Unlike EARA's N_t the score is not split over the retrieved items, so sum_t H_t can exceed r_global.
    """
    s = _array(scores, "scores", ndim=1)
    n = s.shape[0]
    given = evidence_steps.shape[0] if isinstance(evidence_steps, np.ndarray) else len(evidence_steps)
    if given != n:
        raise ValueError(f"evidence_steps has {given} queries but scores has {n}")
    query, steps = _flat_evidence(evidence_steps, T)
    if n == 0 or query.size == 0:
        return np.zeros(T)
    pairs = np.unique(np.stack([query, steps], axis=1), axis=0)  # each (query, writer step) once
    return np.bincount(pairs[:, 1], weights=s[pairs[:, 0]] / n, minlength=T).astype(np.float64)


def attribution_weights(counts: Any, alpha: float = ADRPO_ALPHA, rule: str = "any") -> np.ndarray:
    """Advantage multipliers from retrieval counts ``[..., T]``: ``alpha`` for attributed steps, 1 elsewhere.

    ``rule="any"``: every step with at least one retrieved item; ``"dominant"``: only the most-retrieved
    step (the first on ties, as Python's ``max`` picks MemBuilder's dominant memory type). A rollout with
    no retrieved item keeps weight 1 everywhere, as MemBuilder's uniform fallback.
    """
    if rule not in ATTRIBUTION_RULES:
        raise ValueError(f"rule must be one of {ATTRIBUTION_RULES}, got {rule!r}")
    if float(alpha) <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    c = _array(counts, "counts")
    if c.ndim == 0 or c.shape[-1] == 0:
        raise ValueError(f"counts must have shape [..., T] with T > 0, got {c.shape}")
    if np.any(c < 0):
        raise ValueError("counts must be non-negative")
    if rule == "any":
        hit = c > 0
    else:
        first_max = np.argmax(c, axis=-1)
        hit = np.zeros(c.shape, dtype=bool)
        np.put_along_axis(hit, first_max[..., None], True, axis=-1)
        hit &= c.max(axis=-1, keepdims=True) > 0
    return np.where(hit, float(alpha), 1.0)


def adrpo_step_reward(r_chunk: Any, r_fmt: Any) -> np.ndarray:
    """MemBuilder's session reward on a chunk step: the step's QA accuracy, 0 unless every op was valid.

    MemBuilder gives a session ``task_reward`` only when the output passes the format check (a hard
    gate); its length penalty compares with an expert's memory and has no counterpart here.
    """
    chunk = _array(r_chunk, "r_chunk")
    fmt = _array(r_fmt, "r_fmt")
    if chunk.shape != fmt.shape:
        raise ValueError(f"r_chunk shape {chunk.shape} differs from r_fmt shape {fmt.shape}")
    return np.where(fmt >= 1.0 - 1e-9, chunk, 0.0)


def adrpo_advantages(
    step_rewards: Any, counts: Any, alpha: float = ADRPO_ALPHA, rule: str = "any", eps: float = 1e-6
) -> np.ndarray:
    """ADRPO: A_{i,t} = w_{i,t} * (r_{i,t} - mean_i r_{.,t}) / (std_i r_{.,t} + eps).

    The rewards of the G rollouts at the same step form the group (MemBuilder groups the rollouts of one
    session; verl's GRPO outcome advantage, unbiased std); ``w`` are :func:`attribution_weights`.
    """
    r = _array(step_rewards, "step_rewards", ndim=2)
    if r.shape[0] == 0 or r.shape[1] == 0:
        raise ValueError(f"step_rewards must have shape [G, T] with G, T > 0, got {r.shape}")
    w = attribution_weights(counts, alpha, rule)
    if w.shape != r.shape:
        raise ValueError(f"counts shape {w.shape} differs from step_rewards shape {r.shape}")
    if r.shape[0] < 2:
        return np.zeros_like(r)
    return w * _group_norm(r, axis=0, eps=eps, ddof=1)


def trajectory_advantages(traj_rewards: Any, T: int, eps: float = 1e-6) -> np.ndarray:
    """``[G, T]``: each rollout's scalar normalised over the group, then copied to its T steps.

    Normalising before expanding counts every rollout once, however many steps it has (expanding first
    would weight long rollouts more in the mean and standard deviation). Unbiased std, as GRPO.
    """
    if isinstance(T, bool) or not isinstance(T, int | np.integer) or T <= 0:
        raise ValueError(f"T must be a positive int, got {T!r}")
    r = _array(traj_rewards, "traj_rewards", ndim=1)
    if r.shape[0] == 0:
        raise ValueError("traj_rewards must hold at least one rollout")
    adv = np.zeros_like(r) if r.shape[0] < 2 else _group_norm(r, axis=0, eps=eps, ddof=1)
    return np.repeat(adv[:, None], int(T), axis=1)


# ---------------------------------------------------------------------------- one group, one scheme
@dataclass(frozen=True)
class SchemeInputs:
    """What one group of G rollouts gives the schemes: ``[G]`` per rollout, ``[G, T]`` per step.

    ``retrieved``: :func:`retrieval_counts` of each rollout; ``hindsight``: its :func:`hindsight_credit`.
    """

    r_global: np.ndarray
    r_comp: np.ndarray
    r_fmt: np.ndarray
    r_chunk: np.ndarray
    retrieved: np.ndarray
    hindsight: np.ndarray

    def __post_init__(self) -> None:
        per_rollout = ("r_global", "r_comp")
        for f in fields(self):
            object.__setattr__(self, f.name, _array(getattr(self, f.name), f.name, 1 if f.name in per_rollout else 2))
        G, T = self.r_fmt.shape
        if G == 0 or T == 0:
            raise ValueError(f"r_fmt must have shape [G, T] with G, T > 0, got {self.r_fmt.shape}")
        for f in fields(self):
            want = (G,) if f.name in per_rollout else (G, T)
            if getattr(self, f.name).shape != want:
                raise ValueError(f"{f.name} must have shape {list(want)}, got {getattr(self, f.name).shape}")


def _scheme_row(spec: RewardSpec) -> str:
    credit = spec.row.credit
    if credit == "grpo":
        raise ValueError(f"{spec.variant!r} is not a credit scheme (its A_t is a group-normalised sum of terms)")
    return credit


def _gigpo_scores(spec: RewardSpec, x: SchemeInputs) -> tuple[np.ndarray, np.ndarray]:
    """GiGPO's ``(turn [G, T], trajectory [G])`` scores: format (+ w1 chunk QA), r_global + w2 compression."""
    turn = x.r_fmt + spec.w1 * x.r_chunk if spec.row.uses("chunk") else x.r_fmt
    return turn, x.r_global + spec.w2 * x.r_comp


def _trajectory_reward(spec: RewardSpec, x: SchemeInputs) -> np.ndarray:
    """``[G]``: OR-only's terms, one value per rollout (the format score averaged over its steps)."""
    return x.r_global + x.r_fmt.mean(axis=1) + spec.w2 * x.r_comp


def scheme_step_rewards(spec: RewardSpec, x: SchemeInputs) -> np.ndarray:
    """``[G, T]`` per-step reward a scheme credits, before its normalisation (what the trainer logs as r_t).

    ``gigpo``: turn score + trajectory score; ``adrpo*``: the format-gated chunk-QA reward; ``hindsight``:
    H_t + r_fmt + w2 r_comp; ``broadcast_traj``: the rollout's trajectory reward on each of its steps.
    """
    credit = _scheme_row(spec)
    if credit == "gigpo":
        turn, traj = _gigpo_scores(spec, x)
        return turn + traj[:, None]
    if credit in ("adrpo", "adrpo_dominant"):
        return adrpo_step_reward(x.r_chunk, x.r_fmt)
    if credit == "hindsight":
        return x.hindsight + x.r_fmt + spec.w2 * x.r_comp[:, None]
    if credit == "broadcast_traj":
        return np.repeat(_trajectory_reward(spec, x)[:, None], x.r_fmt.shape[1], axis=1)
    raise ValueError(f"credit rule {credit!r} has no kernel")  # pragma: no cover - CREDIT_RULES and this disagree


def scheme_advantages(spec: RewardSpec, x: SchemeInputs) -> np.ndarray:
    """``[G, T]`` A_t of one group under the credit scheme ``spec`` names (its row's ``credit`` kernel).

    The reward terms are the house ones at the spec's w1 and w2; ``hindsight`` is normalised by the spec's
    ``group_mode`` like a house variant, the others as their sources normalise.
    """
    credit = _scheme_row(spec)
    if credit == "gigpo":
        return gigpo_advantages(*_gigpo_scores(spec, x))
    if credit in ("adrpo", "adrpo_dominant"):
        rule = "dominant" if credit == "adrpo_dominant" else "any"
        return adrpo_advantages(adrpo_step_reward(x.r_chunk, x.r_fmt), x.retrieved, rule=rule)
    if credit == "hindsight":
        return rewards.group_advantages(scheme_step_rewards(spec, x), spec.group_mode)
    if credit == "broadcast_traj":
        return trajectory_advantages(_trajectory_reward(spec, x), x.r_fmt.shape[1])
    raise ValueError(f"credit rule {credit!r} has no kernel")  # pragma: no cover - CREDIT_RULES and this disagree
