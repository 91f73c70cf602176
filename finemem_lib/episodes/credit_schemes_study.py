"""Credit quality of the peers' credit schemes, on the same rollouts as the house variants.

The measure is the one of :mod:`finemem_lib.episodes.credit`: Spearman between a scheme's advantage A_t
and each step's leave-one-step-out value v_t, pooled over the steps of many groups, with a bootstrap
over whole groups. Here each step also keeps the ingredients the schemes need (format score,
compression reward, retrieved items it wrote, hindsight credit), so every scheme's A_t is a pure
function of the saved step table and can be recomputed without rolling out again. The ingredients
(:func:`~finemem_lib.episodes.scheme_credit.episode_ingredients`) and the kernel each scheme's A_t comes
from (:func:`finemem_lib.core.credit_schemes.scheme_advantages`) are the trainer's, so the A_t measured
here is the A_t a scheme trains with.

A scheme is a row of the variant table (:data:`finemem_lib.core.reward_spec.SCHEME_TABLE`) whose
``credit`` names its kernel in :mod:`finemem_lib.core.credit_schemes`; it runs under a
:class:`~finemem_lib.core.reward_spec.RewardSpec` like the house variants, so its reward terms are the
house ones (r_global, r_fmt, r_comp with the profile's w2, r_chunk with w1) and the schemes differ from
OR-only and Fine-Mem only in how the credit is routed and normalised. Each kernel's own constants
(GiGPO's gamma and lambda, ADRPO's alpha) are the source's (:mod:`finemem_lib.core.credit_schemes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from finemem_lib.core import credit_schemes as cs
from finemem_lib.core.reward_spec import SCHEMES, RewardSpec
from finemem_lib.episodes.credit import (
    CreditVariant,
    credit_quality,
    credit_steps,
    paired_credit_differences,
    rollout_batches,
)
from finemem_lib.episodes.rollout import Episode
from finemem_lib.episodes.scheme_credit import INGREDIENTS, episode_ingredients

__all__ = [
    "INGREDIENTS",
    "KEYS",
    "REFERENCES",
    "add_scheme_advantages",
    "episode_ingredients",
    "group_scheme_advantages",
    "ingredient_rows",
    "measure_schemes",
    "profile_schemes",
    "schemes_quality",
]

KEYS = ("group", "rollout", "step")
REFERENCES = ("or_only", "finemem")


def profile_schemes(cfg: Mapping) -> list[CreditVariant]:
    """Every credit scheme of the variant table at the profile's reward settings (w1, w2, group_mode)."""
    return [CreditVariant(name, RewardSpec.from_config(cfg, variant=name)) for name in SCHEMES]


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


def group_scheme_advantages(frame: pd.DataFrame, spec: RewardSpec) -> np.ndarray:
    """``[G, T]`` A_t of one group (its rows of a step table) under one credit scheme (the trainer's kernel)."""
    inputs = cs.SchemeInputs(
        r_global=_matrix(frame, "r_global")[:, 0],
        r_comp=_matrix(frame, "r_comp")[:, 0],
        r_fmt=_matrix(frame, "r_fmt"),
        r_chunk=_matrix(frame, "r_chunk"),
        retrieved=_matrix(frame, "retrieved"),
        hindsight=_matrix(frame, "hindsight"),
    )
    return cs.scheme_advantages(spec, inputs)


def add_scheme_advantages(steps: pd.DataFrame, schemes: Sequence[CreditVariant]) -> pd.DataFrame:
    """A copy of a step table with an ``A_<name>`` column per scheme, computed group by group."""
    needed = [*KEYS, "r_global", "r_chunk", *INGREDIENTS]
    missing = [c for c in needed if c not in steps.columns]
    if missing:
        raise ValueError(f"steps has no column(s) {missing} (measure with measure_schemes)")
    out = steps.copy()
    for scheme in schemes:
        out[f"A_{scheme.name}"] = np.nan
    for _, frame in out.groupby("group", sort=False):
        # pivot() orders rollouts and steps ascending: map each row to its cell of the [G, T] matrix
        row = np.searchsorted(np.unique(frame["rollout"]), frame["rollout"])
        col = np.searchsorted(np.unique(frame["step"]), frame["step"])
        for scheme in schemes:
            out.loc[frame.index, f"A_{scheme.name}"] = group_scheme_advantages(frame, scheme.spec)[row, col]
    return out


def measure_schemes(
    instances: Sequence,
    policy,
    reasoner,
    settings,
    variants: Sequence[CreditVariant],
    schemes: Sequence[CreditVariant],
    seeds: Sequence[int] = (0,),
    all_questions: bool = True,
    batch_instances: int = 8,
) -> pd.DataFrame:
    """Roll out as :func:`finemem_lib.episodes.credit.measure_credit` does (same seeds, same batches, so the
    same rollouts) and give its step table plus the scheme ingredients and ``A_<scheme>`` columns."""
    frames = []
    batches = rollout_batches(instances, policy, reasoner, settings, seeds, all_questions, batch_instances)
    for groups, questions, ids in batches:
        house = credit_steps(groups, reasoner, variants, settings.top_k, questions, ids)
        frames.append(house.merge(ingredient_rows(groups, ids), on=list(KEYS), how="left", validate="1:1"))
    steps = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return add_scheme_advantages(steps, schemes) if len(steps) else steps


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
