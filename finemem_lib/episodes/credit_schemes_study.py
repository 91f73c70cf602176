"""Credit quality of the peers' credit schemes, on the same rollouts as the house variants.

The measure is the one of :mod:`finemem_lib.episodes.credit`: Spearman between a scheme's advantage A_t
and each step's leave-one-step-out value v_t, pooled over the steps of many groups, with a bootstrap
over whole groups. Here each step also keeps the ingredients the schemes need (format score,
compression reward, retrieved items it wrote, hindsight credit), so every scheme's A_t is a pure
function of the saved step table and can be recomputed without rolling out again.

A scheme row (:class:`SchemeSpec`) names a kernel of :mod:`finemem_lib.core.credit_schemes` and the
knobs it runs with; the reward terms are the house ones (r_global, r_fmt, r_comp with the profile's
w2, r_chunk), so the schemes differ from OR-only and Fine-Mem only in how the credit is routed and
normalised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from finemem_lib.core import credit_schemes as cs
from finemem_lib.core import rewards
from finemem_lib.episodes.credit import CreditVariant, credit_quality, credit_steps, paired_credit_differences
from finemem_lib.episodes.rollout import Episode

KEYS = ("group", "rollout", "step")
INGREDIENTS = ("r_fmt", "r_comp", "retrieved", "hindsight")  # beside credit_steps' r_global, r_chunk, N
REFERENCES = ("or_only", "finemem")


@dataclass(frozen=True)
class SchemeSpec:
    """One credit scheme: its kernel and knobs.

    ``turn``: GiGPO's per-step score, ``"fmt"`` (r_fmt, the source's format term; its content term has
    no counterpart here) or ``"fmt_chunk"`` (r_fmt + w1 * r_chunk: the chunk QA in the content term's
    place). ``rule``: ADRPO's attributed steps, ``"any"`` retrieved item or the ``"dominant"`` step.
    """

    name: str
    scheme: str
    w1: float = 0.5
    w2: float = 0.05
    gamma: float = cs.GIGPO_GAMMA
    lam: float = cs.GIGPO_LAMBDA
    alpha: float = cs.ADRPO_ALPHA
    rule: str = "any"
    turn: str = "fmt"

    def __post_init__(self) -> None:
        if self.scheme not in cs.SCHEMES:
            raise ValueError(f"scheme must be one of {cs.SCHEMES}, got {self.scheme!r}")
        if self.turn not in ("fmt", "fmt_chunk"):
            raise ValueError(f"turn must be 'fmt' or 'fmt_chunk', got {self.turn!r}")


def profile_schemes(cfg: Mapping) -> list[SchemeSpec]:
    """The schemes compared, at the profile's reward weights (w1, w2)."""
    knobs = cfg.get("rewards", {}) or {}
    w = {"w1": float(knobs.get("w1", 0.5)), "w2": float(knobs.get("w2", 0.05))}
    return [
        SchemeSpec("gigpo", "gigpo", **w),
        SchemeSpec("gigpo_csr", "gigpo", turn="fmt_chunk", **w),
        SchemeSpec("adrpo", "adrpo", **w),
        SchemeSpec("adrpo_dominant", "adrpo", rule="dominant", **w),
        SchemeSpec("hindsight", "hindsight", **w),
        SchemeSpec("broadcast_traj", "broadcast_traj", **w),
    ]


def episode_ingredients(episode: Episode) -> dict[str, np.ndarray]:
    """``{r_fmt, r_comp, retrieved, hindsight}`` per step (``[T]``) of one finished episode."""
    T = episode.T
    return {
        "r_fmt": episode.r_fmt,
        "r_comp": np.full(T, episode.r_comp),
        "retrieved": cs.retrieval_counts(episode.evidence_steps, T),
        "hindsight": cs.hindsight_credit(episode.scores, episode.evidence_steps, T),
    }


def ingredient_rows(groups: Sequence[Sequence[Episode]], group_ids: Sequence[str]) -> pd.DataFrame:
    """One row per (group, rollout, step) with the scheme ingredients."""
    if len(group_ids) != len(groups):
        raise ValueError(f"group_ids has {len(group_ids)} entries for {len(groups)} groups")
    rows = []
    for gid, group in zip(group_ids, groups, strict=True):
        for g, episode in enumerate(group):
            parts = episode_ingredients(episode)
            for t in range(episode.T):
                rows.append({"group": gid, "rollout": g, "step": t, **{k: float(v[t]) for k, v in parts.items()}})
    return pd.DataFrame(rows)


def _matrix(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame.pivot(index="rollout", columns="step", values=column).to_numpy(dtype=np.float64)


def group_scheme_advantages(frame: pd.DataFrame, spec: SchemeSpec) -> np.ndarray:
    """``[G, T]`` A_t of one group (its rows of a step table) under one scheme."""
    fmt, chunk = _matrix(frame, "r_fmt"), _matrix(frame, "r_chunk")
    r_global = _matrix(frame, "r_global")[:, 0]
    r_comp = _matrix(frame, "r_comp")[:, 0]
    if spec.scheme == "gigpo":
        turn = fmt + spec.w1 * chunk if spec.turn == "fmt_chunk" else fmt
        return cs.gigpo_advantages(turn, r_global + spec.w2 * r_comp, spec.gamma, spec.lam)
    if spec.scheme == "adrpo":
        reward = cs.adrpo_step_reward(chunk, fmt)
        return cs.adrpo_advantages(reward, _matrix(frame, "retrieved"), spec.alpha, spec.rule)
    if spec.scheme == "hindsight":
        reward = _matrix(frame, "hindsight") + fmt + spec.w2 * r_comp[:, None]
        return rewards.group_advantages(reward, "step")
    traj = r_global + fmt.mean(axis=1) + spec.w2 * r_comp  # broadcast_traj: OR-only's terms, one per rollout
    return cs.trajectory_advantages(traj, fmt.shape[1])


def add_scheme_advantages(steps: pd.DataFrame, specs: Sequence[SchemeSpec]) -> pd.DataFrame:
    """A copy of a step table with an ``A_<name>`` column per scheme, computed group by group."""
    needed = [*KEYS, "r_global", "r_chunk", *INGREDIENTS]
    missing = [c for c in needed if c not in steps.columns]
    if missing:
        raise ValueError(f"steps has no column(s) {missing} (measure with measure_schemes)")
    out = steps.copy()
    for spec in specs:
        out[f"A_{spec.name}"] = np.nan
    for _, frame in out.groupby("group", sort=False):
        # pivot() orders rollouts and steps ascending: map each row to its cell of the [G, T] matrix
        row = np.searchsorted(np.unique(frame["rollout"]), frame["rollout"])
        col = np.searchsorted(np.unique(frame["step"]), frame["step"])
        for spec in specs:
            out.loc[frame.index, f"A_{spec.name}"] = group_scheme_advantages(frame, spec)[row, col]
    return out


def measure_schemes(
    instances: Sequence,
    policy,
    reasoner,
    settings,
    variants: Sequence[CreditVariant],
    specs: Sequence[SchemeSpec],
    seeds: Sequence[int] = (0,),
    all_questions: bool = True,
    batch_instances: int = 8,
) -> pd.DataFrame:
    """Roll out as :func:`finemem_lib.episodes.credit.measure_credit` does (same seeds, same batches, so the
    same rollouts) and give its step table plus the scheme ingredients and ``A_<scheme>`` columns."""
    from finemem_lib.episodes.rollout import rollout

    frames = []
    for seed in seeds:
        for start in range(0, len(instances), batch_instances):
            batch = list(instances[start : start + batch_instances])
            groups = rollout(batch, policy, reasoner, settings, seed=seed)
            questions = [inst.questions for inst in batch] if all_questions else None
            ids = [f"{inst.id}@s{seed}" for inst in batch]
            house = credit_steps(groups, reasoner, variants, settings.top_k, questions, ids)
            frames.append(house.merge(ingredient_rows(groups, ids), on=list(KEYS), how="left", validate="1:1"))
    steps = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return add_scheme_advantages(steps, specs) if len(steps) else steps


def schemes_quality(
    steps: pd.DataFrame, names: Sequence[str], n_boot: int = 1000, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(quality, differences)``: Spearman(A_t, v_t) per name, pooled and per source, with group-bootstrap
    intervals; and each name minus OR-only and minus Fine-Mem on the same steps (paired bootstrap)."""
    quality = [credit_quality(steps, names, n_boot=n_boot, seed=seed).assign(source="all")]
    for source in sorted(steps["source"].unique()):
        part = steps[steps["source"] == source]
        quality.append(credit_quality(part, names, n_boot=n_boot, seed=seed).assign(source=source))
    diffs = []
    for ref in REFERENCES:
        others = [n for n in names if n != ref]
        diffs.append(paired_credit_differences(steps, others, reference=ref, n_boot=n_boot, seed=seed))
    return pd.concat(quality, ignore_index=True), pd.concat(diffs, ignore_index=True)
