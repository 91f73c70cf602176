"""The credit-scheme measure: ingredients per step, scheme advantages from a step table, the same rollouts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finemem_lib.agents.policy import SamplingParams
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core import credit_schemes as cs
from finemem_lib.core.reward_spec import SCHEMES, RewardSpec
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.credit import CreditVariant, measure_credit, profile_variants
from finemem_lib.episodes.credit_schemes_study import (
    add_scheme_advantages,
    episode_ingredients,
    measure_schemes,
    profile_schemes,
    schemes_quality,
)
from finemem_lib.episodes.rollout import RolloutSettings
from tests.test_credit import FACTS, hand_episode
from tests.tiny import TINY_BENCH, tiny_policy


def _table(**columns: list[list[float]]) -> pd.DataFrame:
    """A one-group step table from [G][T] lists (scalars per rollout repeated along the row)."""
    G, T = len(columns["r_fmt"]), len(columns["r_fmt"][0])
    rows = []
    for g in range(G):
        for t in range(T):
            rows.append({"group": "x", "source": "s", "rollout": g, "step": t, "value": float(g + t),
                         **{k: float(v[g][t]) for k, v in columns.items()}})  # fmt: skip
    return pd.DataFrame(rows)


TABLE = _table(
    r_global=[[1.0, 1.0], [0.0, 0.0]],
    r_comp=[[0.5, 0.5], [0.3, 0.3]],
    r_fmt=[[1.0, 0.5], [1.0, 1.0]],
    r_chunk=[[0.2, 1.0], [0.8, 0.0]],
    retrieved=[[2.0, 0.0], [0.0, 1.0]],
    hindsight=[[1.0, 0.0], [0.0, 0.0]],
)


def test_each_scheme_reads_its_terms_from_the_step_table():
    schemes = profile_schemes({"rewards": {"w1": 0.5, "w2": 0.1}})
    assert [s.name for s in schemes] == list(SCHEMES)
    spec = {s.name: s for s in schemes}
    out = add_scheme_advantages(TABLE, schemes)
    A = {n: out.pivot(index="rollout", columns="step", values=f"A_{n}").to_numpy() for n in spec}
    fmt = np.array([[1.0, 0.5], [1.0, 1.0]])
    chunk = np.array([[0.2, 1.0], [0.8, 0.0]])
    traj = np.array([1.0 + 0.1 * 0.5, 0.0 + 0.1 * 0.3])
    np.testing.assert_allclose(A["gigpo"], cs.gigpo_advantages(fmt, traj))
    np.testing.assert_allclose(A["gigpo_csr"], cs.gigpo_advantages(fmt + 0.5 * chunk, traj))
    gated = np.array([[0.2, 0.0], [0.8, 0.0]])  # step 1 of rollout 0 had an invalid op
    np.testing.assert_allclose(A["adrpo"], cs.adrpo_advantages(gated, [[2, 0], [0, 1]], 4.0, "any"))
    np.testing.assert_allclose(A["adrpo_dominant"], cs.adrpo_advantages(gated, [[2, 0], [0, 1]], 4.0, "dominant"))
    # hindsight: step 0 of rollout 0 gets the routed score, every other cell only format + compression
    assert A["hindsight"][0, 0] > 0 > A["hindsight"][1, 0]
    # broadcast_traj: one value per rollout, the better rollout positive
    assert A["broadcast_traj"][0, 0] == A["broadcast_traj"][0, 1] > 0 > A["broadcast_traj"][1, 0]


def test_rows_in_any_order_give_the_same_advantages():
    specs = profile_schemes({})
    shuffled = TABLE.sample(frac=1.0, random_state=3)
    a = add_scheme_advantages(TABLE, specs).sort_values(["rollout", "step"]).reset_index(drop=True)
    b = add_scheme_advantages(shuffled, specs).sort_values(["rollout", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_a_table_without_ingredients_is_a_clear_error():
    with pytest.raises(ValueError, match="hindsight"):
        add_scheme_advantages(TABLE.drop(columns=["hindsight"]), profile_schemes({}))
    with pytest.raises(ValueError, match="not a credit scheme"):
        add_scheme_advantages(TABLE, [CreditVariant("finemem", RewardSpec("finemem"))])


def test_episode_ingredients_follow_the_evidence():
    episode = hand_episode({0: [FACTS[0]], 2: [FACTS[1], FACTS[2]]})
    parts = episode_ingredients(episode)
    assert parts["retrieved"].sum() == sum(len(e) for e in episode.evidence_steps)
    # both questions answered right from items of steps 0 and 2: each of those steps gets 1/2 at least
    assert parts["hindsight"][0] >= 0.5 and parts["hindsight"][2] >= 0.5
    assert parts["hindsight"][1] == parts["hindsight"][3] == 0.0
    assert np.all(parts["r_comp"] == episode.r_comp)


def test_measure_schemes_keeps_the_house_rollouts_and_adds_every_scheme():
    bench = build_synthetic(TINY_BENCH, seed=0)
    policy = tiny_policy(bench["train"])
    settings = RolloutSettings(
        num_generations=2, question_ratio=0.5, sampling=SamplingParams(temperature=1.0, max_new_tokens=12)
    )
    variants = profile_variants({})
    specs = profile_schemes({})
    house = measure_credit(bench["train"][:2], policy, OfflineReader(), settings, variants, seeds=[0])
    steps = measure_schemes(bench["train"][:2], policy, OfflineReader(), settings, variants, specs, seeds=[0])
    pd.testing.assert_frame_equal(steps[house.columns], house)  # the same rollouts, the same house columns
    names = [s.name for s in specs]
    assert np.isfinite(steps[[f"A_{n}" for n in names]].to_numpy()).all()
    quality, diffs = schemes_quality(steps, ["or_only", "finemem", *names], n_boot=20)
    assert set(quality["variant"]) == {"or_only", "finemem", *names}
    assert set(diffs["reference"]) == {"or_only", "finemem"}
    assert len(diffs) == 2 * (len(names) + 1)
