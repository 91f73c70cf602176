"""Each credit-scheme kernel against a hand-worked example, plus its error messages."""

from __future__ import annotations

import numpy as np
import pytest

from finemem_lib.core import credit_schemes as cs
from finemem_lib.core import rewards


def test_discounted_returns_by_hand():
    # gamma 0.5 over [1, 1, 1]: R_2 = 1, R_1 = 1 + 0.5, R_0 = 1 + 0.5 * 1.5
    np.testing.assert_allclose(cs.discounted_returns([1.0, 1.0, 1.0], 0.5), [1.75, 1.5, 1.0])
    np.testing.assert_allclose(cs.discounted_returns([[0.0, 2.0]], 1.0), [[2.0, 2.0]])
    with pytest.raises(ValueError, match="gamma"):
        cs.discounted_returns([1.0], 1.5)


def test_gigpo_by_hand():
    # returns (gamma 0.5): rollout 0 [1, 0]; rollout 1 [0 + 0.5 * 1, 1] = [0.5, 1]
    # step 0 over the group: [1, 0.5] -> mean 0.75, population std 0.25 -> [1, -1]
    # step 1: [0, 1] -> [-1, 1]; trajectory scores [1, 0] -> [1, -1]
    adv = cs.gigpo_advantages([[1.0, 0.0], [0.0, 1.0]], [1.0, 0.0], gamma=0.5, lam=1.0, eps=0.0)
    np.testing.assert_allclose(adv, [[2.0, 0.0], [-2.0, 0.0]])
    half = cs.gigpo_advantages([[1.0, 0.0], [0.0, 1.0]], [1.0, 0.0], gamma=0.5, lam=0.5, eps=0.0)
    np.testing.assert_allclose(half, [[1.5, -0.5], [-1.5, 0.5]])


def test_gigpo_constant_group_gives_zero_and_checks_shapes():
    np.testing.assert_array_equal(cs.gigpo_advantages([[1.0, 1.0], [1.0, 1.0]], [0.3, 0.3]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="traj_scores"):
        cs.gigpo_advantages([[1.0, 0.0], [0.0, 1.0]], [1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="turn_scores"):
        cs.gigpo_advantages([1.0, 0.0], [1.0])


def test_hindsight_routes_whole_scores_to_writer_steps():
    # query 0 (s = 1) retrieved two items written at step 0: step 0 gets 1/2 once, not twice
    # query 1 (s = 0.5) retrieved items of steps 0 and 2: each gets 0.5/2
    H = cs.hindsight_credit([1.0, 0.5], [[0, 0], [0, 2]], T=3)
    np.testing.assert_allclose(H, [0.75, 0.0, 0.25])
    # EARA's N_t splits each score over the retrieved items instead: [0.5 + 0.125, 0, 0.125]
    np.testing.assert_allclose(rewards.evidence_contribution([1.0, 0.5], [[0, 0], [0, 2]], 3), [0.625, 0.0, 0.125])
    padded = np.array([[0, 0], [0, 2]], dtype=np.int64)
    np.testing.assert_allclose(cs.hindsight_credit([1.0, 0.5], padded, T=3), H)


def test_hindsight_edge_cases_and_errors():
    np.testing.assert_array_equal(cs.hindsight_credit([], [], T=2), [0.0, 0.0])
    np.testing.assert_array_equal(cs.hindsight_credit([1.0], [[]], T=2), [0.0, 0.0])
    np.testing.assert_array_equal(cs.hindsight_credit([0.0], [[1]], T=2), [0.0, 0.0])  # wrong answer: no credit
    with pytest.raises(ValueError, match="out-of-range step 3"):
        cs.hindsight_credit([1.0], [[3]], T=3)
    with pytest.raises(ValueError, match="2 queries but scores has 1"):
        cs.hindsight_credit([1.0], [[0], [1]], T=3)
    with pytest.raises(ValueError, match="integer"):
        cs.hindsight_credit([1.0], [[0.5]], T=3)


def test_retrieval_counts_and_attribution_weights_by_hand():
    counts = cs.retrieval_counts([[0, 0], [0, 2]], T=3)
    np.testing.assert_array_equal(counts, [3.0, 0.0, 1.0])
    np.testing.assert_array_equal(cs.attribution_weights(counts, 4.0, "any"), [4.0, 1.0, 4.0])
    np.testing.assert_array_equal(cs.attribution_weights(counts, 4.0, "dominant"), [4.0, 1.0, 1.0])
    # ties: the first most-retrieved step; no retrieval at all: weight 1 everywhere
    np.testing.assert_array_equal(cs.attribution_weights([[2, 2, 0], [0, 0, 0]], 4.0, "dominant"),
                                  [[4.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # fmt: skip
    with pytest.raises(ValueError, match="rule"):
        cs.attribution_weights(counts, 4.0, "most")
    with pytest.raises(ValueError, match="non-negative"):
        cs.attribution_weights([-1.0, 0.0])


def test_adrpo_by_hand():
    # step 0: rewards [1, 0] -> mean 0.5, unbiased std sqrt(0.5) -> [0.7071, -0.7071]; rollout 0's step 0
    # wrote retrieved evidence -> x4; step 1 is constant -> 0
    adv = cs.adrpo_advantages([[1.0, 0.0], [0.0, 0.0]], [[1, 0], [0, 0]], alpha=4.0, eps=0.0)
    z = 1 / np.sqrt(2)
    np.testing.assert_allclose(adv, [[4 * z, 0.0], [-z, 0.0]])
    # without attribution (alpha 1) it is the house per-step GRPO advantage
    plain = cs.adrpo_advantages([[1.0, 0.0], [0.0, 0.5]], [[1, 0], [0, 0]], alpha=1.0)
    np.testing.assert_allclose(plain, rewards.group_advantages([[1.0, 0.0], [0.0, 0.5]], "step"))
    with pytest.raises(ValueError, match="counts shape"):
        cs.adrpo_advantages([[1.0, 0.0], [0.0, 0.0]], [1, 0])


def test_adrpo_step_reward_gates_on_format():
    np.testing.assert_allclose(cs.adrpo_step_reward([0.6, 0.8, 1.0], [1.0, 0.5, 0.0]), [0.6, 0.0, 0.0])
    with pytest.raises(ValueError, match="r_chunk shape"):
        cs.adrpo_step_reward([0.6, 0.8], [1.0])


def test_trajectory_advantages_normalise_before_expanding():
    # [1, 0, 0.5]: mean 0.5, unbiased std 0.5 -> [1, -1, 0], the same on every step
    adv = cs.trajectory_advantages([1.0, 0.0, 0.5], T=2, eps=0.0)
    np.testing.assert_allclose(adv, [[1.0, 1.0], [-1.0, -1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(cs.trajectory_advantages([0.7], T=3), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="T must be"):
        cs.trajectory_advantages([1.0, 0.0], T=0)


def test_schemes_are_rows_of_the_variant_table_beside_the_paper_variants():
    from finemem_lib.core.reward_spec import SCHEME_TABLE, SCHEMES, TRAINABLE, VARIANTS, RewardSpec, Variant, variant

    assert VARIANTS == ("or_only", "csr", "eara", "finemem")  # the paper's four (its tables and figures)
    assert (*VARIANTS, *SCHEMES) == TRAINABLE  # what the trainer and the study accept
    assert set(SCHEMES) >= {"gigpo", "adrpo", "hindsight", "broadcast_traj"} and not set(SCHEMES) & set(VARIANTS)
    assert all(variant(row.name) is row and row.credit != "grpo" for row in SCHEME_TABLE)
    assert RewardSpec("gigpo_csr").row.uses("chunk") and not RewardSpec("gigpo").row.uses("chunk")
    with pytest.raises(ValueError, match="credit scheme"):  # a scheme's A_t is not a sum of terms
        rewards.step_rewards("gigpo", 1.0, [0.0], [0.0], [1.0], 0.5)
    with pytest.raises(ValueError, match="unknown reward term"):
        Variant("x", "x", "#000000", ("hindsight",))  # a scheme term in a summed row
    with pytest.raises(ValueError, match="credit must be"):
        Variant("x", "x", "#000000", ("fmt",), credit="reinforce")
