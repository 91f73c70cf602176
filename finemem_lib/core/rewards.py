"""Fine-Mem reward and attribution kernels: pure, vectorised numpy over plain arrays.

Notation follows the paper (docs/science.md §3). Steps are 0-based, ``T`` is the number of chunk
steps of an episode, ``n`` the number of global queries. Every function accepts numpy arrays or
(nested) lists and returns float64 arrays. Leading batch axes are allowed where noted, so a group
of ``G`` rollouts is scored in one call. Bad shapes or out-of-range steps raise ``ValueError``
naming the argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from finemem_lib.core.reward_spec import GROUP_MODES, TERM_ORDER, VARIANTS, RewardSpec

__all__ = [
    "GROUP_MODES",
    "TERM_KERNELS",
    "VARIANTS",
    "RewardSpec",
    "chunk_step_reward",
    "compression_reward",
    "eara",
    "evidence_contribution",
    "format_reward",
    "group_advantages",
    "step_rewards",
]


def _float_array(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric and rectangular: {exc}") from None
    return arr


def _pad_ragged(rows: Sequence[Sequence[float]], name: str) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), np.nan)
    for t, row in enumerate(rows):
        out[t, : len(row)] = _float_array(row, f"{name}[{t}]")
    return out


def chunk_step_reward(correct: Any) -> np.ndarray:
    """r_chunk(t) = mean over the chunk's K questions of the 0/1 (or float) correctness.

    Args:
        correct: ``[..., T, K]``; NaN marks "no question" (ragged lists are padded with NaN).
    Returns:
        ``[..., T]``; 0 for a step with no question.
    """
    try:
        arr = np.asarray(correct, dtype=np.float64)
    except (TypeError, ValueError):
        if not (isinstance(correct, list | tuple) and all(isinstance(r, list | tuple) for r in correct)):
            raise ValueError("correct must be numeric with shape [..., T, K]") from None
        arr = _pad_ragged(correct, "correct")
    if arr.ndim < 2:
        raise ValueError(f"correct must have shape [..., T, K], got shape {arr.shape}")
    answered = ~np.isnan(arr)
    counts = answered.sum(axis=-1)
    totals = np.where(answered, arr, 0.0).sum(axis=-1)
    return np.divide(totals, counts, out=np.zeros(totals.shape), where=counts > 0)


def _evidence_arrays(evidence_steps: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Flatten ragged evidence to (query index, writer step); -1 entries in a padded array mean none."""
    if isinstance(evidence_steps, np.ndarray):
        if evidence_steps.ndim != 2 or evidence_steps.shape[0] != n:
            raise ValueError(f"evidence_steps must have shape [n={n}, k], got {evidence_steps.shape}")
        if not np.issubdtype(evidence_steps.dtype, np.integer):
            raise ValueError("evidence_steps must hold integer steps")
        query, slot = np.nonzero(evidence_steps >= 0)
        steps = evidence_steps[query, slot]
        bad = evidence_steps[(evidence_steps < -1)]
        if bad.size:
            raise ValueError(f"evidence_steps has out-of-range step {int(bad[0])} (use -1 for padding)")
        return query, steps.astype(np.int64)
    if len(evidence_steps) != n:
        raise ValueError(f"evidence_steps has {len(evidence_steps)} entries but scores has {n}")
    query = np.repeat(np.arange(n), [len(e) for e in evidence_steps])
    flat = [s for e in evidence_steps for s in e]
    if any(isinstance(s, bool) or not isinstance(s, int | np.integer) for s in flat):
        raise ValueError("evidence_steps must hold integer steps")
    return query, np.asarray(flat, dtype=np.int64).reshape(-1)


def evidence_contribution(scores: Any, evidence_steps: Any, T: int) -> np.ndarray:
    """Normalised evidence contribution N_t (paper formula).

    N_t = sum_j sum_{m in M_j, phi(m) = t} s_j / (|M_j| * n): each query's score is split equally
    over the items retrieved for it and credited to the steps that wrote them.

    Args:
        scores: ``[n]`` per-query scores s_j, or ``[G, n]`` for a group of rollouts.
        evidence_steps: ``n`` lists of writer steps (0-based) of the items retrieved for query j, or a
            padded integer array ``[n, k]`` (``[G, n, k]`` with batched scores) with -1 for "no item".
        T: number of steps.
    Returns:
        ``[T]`` (or ``[G, T]``).
    """
    if isinstance(T, bool) or not isinstance(T, int | np.integer) or T <= 0:
        raise ValueError(f"T must be a positive int, got {T!r}")
    s = _float_array(scores, "scores")
    if s.ndim == 2:
        ev = np.asarray(evidence_steps)
        if ev.ndim != 3 or ev.shape[:2] != s.shape:
            raise ValueError(f"batched evidence_steps must have shape [G, n, k] = {s.shape} + [k], got {ev.shape}")
        G, n = s.shape
        if np.any(ev < -1):
            raise ValueError("evidence_steps has a step below -1 (use -1 for padding)")
        offsets = (np.arange(G) * T)[:, None, None]
        shifted = np.where(ev >= 0, ev + offsets, -1)
        _check_steps(ev[ev >= 0], T)
        N = _evidence_sum(s.reshape(-1), shifted.reshape(G * n, -1), G * T, per_query_n=n)
        return N.reshape(G, T)
    if s.ndim != 1:
        raise ValueError(f"scores must have shape [n] or [G, n], got {s.shape}")
    n = s.shape[0]
    if n == 0:
        return np.zeros(T)
    return _evidence_sum(s, evidence_steps, T, per_query_n=n)


def _check_steps(steps: np.ndarray, T: int) -> None:
    if steps.size and (steps.min() < 0 or steps.max() >= T):
        bad = steps[(steps < 0) | (steps >= T)][0]
        raise ValueError(f"evidence_steps has out-of-range step {int(bad)} for T={T}")


def _evidence_sum(s: np.ndarray, evidence_steps: Any, length: int, per_query_n: int) -> np.ndarray:
    query, steps = _evidence_arrays(evidence_steps, s.shape[0])
    _check_steps(steps, length)
    per_query = np.bincount(query, minlength=s.shape[0])
    weights = s[query] / (per_query[query] * per_query_n)
    return np.bincount(steps, weights=weights, minlength=length).astype(np.float64)


def eara(r_global: Any, N: Any, beta: float) -> np.ndarray:
    """r_EARA(t) = (1 - beta) * r_global / T + beta * N_t.

    ``r_global`` is a scalar or ``[G]``; ``N`` is ``[T]`` or ``[G, T]``.
    """
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    n_arr = _float_array(N, "N")
    if n_arr.ndim == 0 or n_arr.shape[-1] == 0:
        raise ValueError(f"N must have shape [..., T] with T > 0, got {n_arr.shape}")
    g = _float_array(r_global, "r_global")
    if g.ndim > 0 and g.shape != n_arr.shape[:-1]:
        raise ValueError(f"r_global shape {g.shape} does not match N's leading shape {n_arr.shape[:-1]}")
    T = n_arr.shape[-1]
    return (1.0 - beta) * g[..., None] / T + beta * n_arr


def format_reward(n_valid_executed: Any, n_emitted: Any) -> np.ndarray:
    """r_fmt = valid executed ops / ops emitted, 0 where nothing was emitted."""
    ok = _float_array(n_valid_executed, "n_valid_executed")
    emitted = _float_array(n_emitted, "n_emitted")
    if ok.shape != emitted.shape:
        raise ValueError(f"n_valid_executed shape {ok.shape} differs from n_emitted shape {emitted.shape}")
    if np.any(ok < 0) or np.any(ok > emitted):
        raise ValueError("n_valid_executed must lie in [0, n_emitted]")
    return np.divide(ok, emitted, out=np.zeros(ok.shape), where=emitted > 0)


def compression_reward(memory_tokens: Any, chunk_tokens: Any) -> np.ndarray:
    """r_comp = 1 - L(M_T) / sum_t L(c_t).

    ``memory_tokens``: scalar or ``[G]``; ``chunk_tokens``: ``[T]`` token lengths of the chunks.
    """
    mem = _float_array(memory_tokens, "memory_tokens")
    chunks = _float_array(chunk_tokens, "chunk_tokens")
    if chunks.ndim != 1:
        raise ValueError(f"chunk_tokens must have shape [T], got {chunks.shape}")
    total = chunks.sum()
    if total <= 0:
        raise ValueError("chunk_tokens must sum to a positive number")
    if np.any(mem < 0):
        raise ValueError("memory_tokens must be non-negative")
    return 1.0 - mem / total


@dataclass(frozen=True)
class StepInputs:
    """An episode's (or a group's) reward components: ``[..., T]`` per step, ``[...]`` per episode."""

    r_global: np.ndarray
    N: np.ndarray
    r_chunk: np.ndarray
    r_fmt: np.ndarray
    r_comp: np.ndarray


# One kernel per reward term of :data:`finemem_lib.core.reward_spec.VARIANT_TABLE`: (inputs, spec) -> [..., T].
TERM_KERNELS: dict[str, Callable[[StepInputs, RewardSpec], np.ndarray]] = {
    "global": lambda x, spec: np.broadcast_to(x.r_global[..., None], x.N.shape),
    "eara": lambda x, spec: eara(x.r_global, x.N, spec.beta),
    "fmt": lambda x, spec: x.r_fmt,
    "comp": lambda x, spec: spec.w2 * x.r_comp[..., None],
    "chunk": lambda x, spec: spec.w1 * x.r_chunk,
}
if set(TERM_KERNELS) != set(TERM_ORDER):  # pragma: no cover - a term of the table without its kernel
    raise ImportError(f"reward terms {sorted(set(TERM_ORDER) ^ set(TERM_KERNELS))} lack a kernel or a table entry")


def _step_inputs(r_global: Any, N: Any, r_chunk: Any, r_fmt: Any, r_comp: Any) -> StepInputs:
    n_arr = _float_array(N, "N")
    shape = n_arr.shape
    if n_arr.ndim == 0 or shape[-1] == 0:
        raise ValueError(f"N must have shape [..., T] with T > 0, got {shape}")
    chunk = _float_array(r_chunk, "r_chunk")
    fmt = _float_array(r_fmt, "r_fmt")
    for name, arr in (("r_chunk", chunk), ("r_fmt", fmt)):
        if arr.shape != shape:
            raise ValueError(f"{name} shape {arr.shape} differs from N shape {shape}")
    g = _float_array(r_global, "r_global")
    comp = _float_array(r_comp, "r_comp")
    for name, arr in (("r_global", g), ("r_comp", comp)):
        if arr.ndim > 0 and arr.shape != shape[:-1]:
            raise ValueError(f"{name} shape {arr.shape} does not match N's leading shape {shape[:-1]}")
    return StepInputs(g, n_arr, chunk, fmt, comp)


def step_rewards(
    variant: str | RewardSpec,
    r_global: Any,
    N: Any,
    r_chunk: Any,
    r_fmt: Any,
    r_comp: Any,
    beta: float | None = None,
    w1: float | None = None,
    w2: float | None = None,
) -> np.ndarray:
    """Per-step total reward r_t of a reward variant: the sum of the terms its table row names.

    - ``or_only``: r_global + r_fmt + w2 * r_comp (Mem-alpha style: full r_global on every step)
    - ``csr``:     r_global + r_fmt + w1 * r_chunk + w2 * r_comp
    - ``eara``:    eara(r_global, N, beta) + r_fmt + w2 * r_comp
    - ``finemem``: eara(r_global, N, beta) + r_fmt + w1 * r_chunk + w2 * r_comp

    ``variant`` is a :class:`RewardSpec` or a variant name; ``beta``, ``w1``, ``w2`` given here override
    the spec's (defaults: :class:`RewardSpec`'s). ``N``, ``r_chunk`` and ``r_fmt`` are ``[T]`` (or
    ``[G, T]``); ``r_global`` and ``r_comp`` are scalars (or ``[G]``).
    """
    spec = RewardSpec.of(variant, beta=beta, w1=w1, w2=w2)
    if spec.row.credit != "grpo":
        raise ValueError(f"{spec.variant!r} is a credit scheme, not a sum of terms: its A_t comes from "
                         "finemem_lib.episodes.credit_schemes_study")  # fmt: skip
    inputs = _step_inputs(r_global, N, r_chunk, r_fmt, r_comp)
    total = None
    for term in spec.row.terms:
        part = TERM_KERNELS[term](inputs, spec)
        total = part if total is None else total + part
    return np.asarray(total, dtype=np.float64)


def group_advantages(rewards: Any, mode: str | RewardSpec = "step", eps: float = 1e-6) -> np.ndarray:
    """GRPO advantages A = (r - mean) / (std + eps) over a group of G rollouts.

    Args:
        rewards: ``[G, T]`` per-step rewards of the G rollouts of one instance.
        mode: ``"step"`` normalises each column (same step t) over the G rollouts (Fine-Mem's
            notation); ``"episode"`` normalises over all G*T values (Mem-alpha's verl setup); a
            :class:`RewardSpec` gives its ``group_mode``.
        eps: added to the standard deviation.
    The standard deviation is the unbiased one (ddof=1), as in TRL and verl; a group of one
    rollout gets zero advantages.
    """
    if isinstance(mode, RewardSpec):
        mode = mode.group_mode
    if mode not in GROUP_MODES:
        raise ValueError(f"mode must be one of {GROUP_MODES}, got {mode!r}")
    r = _float_array(rewards, "rewards")
    if r.ndim != 2 or r.shape[0] == 0 or r.shape[1] == 0:
        raise ValueError(f"rewards must have shape [G, T] with G, T > 0, got {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    axis = 0 if mode == "step" else None
    count = r.shape[0] if mode == "step" else r.size
    if count < 2:
        return np.zeros_like(r)
    mean = r.mean(axis=axis, keepdims=True)
    std = r.std(axis=axis, ddof=1, keepdims=True)
    constant = r.max(axis=axis, keepdims=True) == r.min(axis=axis, keepdims=True)
    centered = np.where(constant, 0.0, r - mean)  # exact zeros where rounding would leave residue
    return centered / (std + eps)
