"""Reward kernels, checked against the formulas of docs/science.md §3."""

import numpy as np
import pytest

from finemem_lib.core.rewards import (
    chunk_step_reward,
    compression_reward,
    eara,
    evidence_contribution,
    format_reward,
    group_advantages,
    step_rewards,
)


def reference_N(scores, evidence, T):
    """Plain-loop transcription of N_t = sum_j sum_{m in M_j, phi(m)=t} s_j / (|M_j| n)."""
    n = len(scores)
    out = [0.0] * T
    for s, ev in zip(scores, evidence, strict=True):
        for step in ev:
            out[step] += s / (len(ev) * n)
    return np.array(out)


def test_chunk_step_reward_means_and_nan():
    correct = [[1, 0, 1, np.nan], [np.nan] * 4, [0, 0, 0, 0]]
    assert np.allclose(chunk_step_reward(correct), [2 / 3, 0.0, 0.0])
    ragged = [[1, 1], [], [0, 1, 1]]
    assert np.allclose(chunk_step_reward(ragged), [1.0, 0.0, 2 / 3])
    batched = np.ones((2, 3, 5))
    assert chunk_step_reward(batched).shape == (2, 3)
    with pytest.raises(ValueError, match="correct"):
        chunk_step_reward([1, 0])


def test_evidence_contribution_matches_the_formula():
    scores = [1.0, 0.5, 0.0, 1.0]
    evidence = [[0, 2], [2], [1, 1], []]
    expected = reference_N(scores, evidence, 3)
    assert np.allclose(evidence_contribution(scores, evidence, 3), expected)
    assert np.allclose(expected, [0.125, 0.0, 0.125 + 0.125])
    padded = np.array([[0, 2], [2, -1], [1, 1], [-1, -1]])
    assert np.allclose(evidence_contribution(scores, padded, 3), expected)


def test_evidence_contribution_batched_over_rollouts():
    rng = np.random.default_rng(0)
    scores = rng.random((3, 6))
    evidence = rng.integers(-1, 5, size=(3, 6, 2))
    batched = evidence_contribution(scores, evidence, 5)
    for g in range(3):
        lists = [[int(s) for s in row if s >= 0] for row in evidence[g]]
        assert np.allclose(batched[g], reference_N(scores[g], lists, 5))
    with pytest.raises(ValueError, match="evidence_steps"):
        evidence_contribution(scores, evidence[:, :, :1] * 0 + 5, 5)
    with pytest.raises(ValueError, match="evidence_steps"):
        evidence_contribution(scores, evidence[:2], 5)


def test_evidence_contribution_errors_name_the_argument():
    with pytest.raises(ValueError, match="evidence_steps"):
        evidence_contribution([1.0], [[3]], 3)
    with pytest.raises(ValueError, match="evidence_steps"):
        evidence_contribution([1.0], [[-1]], 3)
    with pytest.raises(ValueError, match="evidence_steps"):
        evidence_contribution([1.0, 1.0], [[0]], 3)
    with pytest.raises(ValueError, match="scores"):
        evidence_contribution([[[1.0]]], [[0]], 3)
    with pytest.raises(ValueError, match="T"):
        evidence_contribution([1.0], [[0]], 0)
    with pytest.raises(ValueError, match="integer"):
        evidence_contribution([1.0], [[0.5]], 3)
    assert np.array_equal(evidence_contribution([], [], 2), [0.0, 0.0])


def test_eara_beta_extremes_and_conservation():
    N = evidence_contribution([1.0, 0.5], [[0], [1, 3]], 4)
    r_global = 0.75
    assert np.allclose(eara(r_global, N, 0.0), [r_global / 4] * 4)
    assert np.allclose(eara(r_global, N, 1.0), N)
    assert eara(r_global, N, 0.5).sum() == pytest.approx(r_global)
    with pytest.raises(ValueError, match="beta"):
        eara(r_global, N, 1.5)
    batched = eara(np.array([0.5, 1.0]), np.zeros((2, 4)), 0.0)
    assert np.allclose(batched, [[0.125] * 4, [0.25] * 4])
    with pytest.raises(ValueError, match="r_global"):
        eara(np.array([0.5, 1.0, 2.0]), np.zeros((2, 4)), 0.5)


def test_step_rewards_variants():
    T = 3
    N = np.array([0.5, 0.0, 0.25])
    r_chunk = np.array([1.0, 0.4, 0.0])
    r_fmt = np.array([1.0, 0.5, 1.0])
    g, comp = 0.75, 0.6
    kw = dict(beta=0.5, w1=0.5, w2=0.05)
    e = 0.5 * g / T + 0.5 * N
    expected = {
        "or_only": g + r_fmt + 0.05 * comp,
        "csr": g + r_fmt + 0.5 * r_chunk + 0.05 * comp,
        "eara": e + r_fmt + 0.05 * comp,
        "finemem": e + r_fmt + 0.5 * r_chunk + 0.05 * comp,
    }
    for variant, want in expected.items():
        got = step_rewards(variant, g, N, r_chunk, r_fmt, comp, **kw)
        assert got.dtype == np.float64 and np.allclose(got, want), variant
    with pytest.raises(ValueError, match="variant"):
        step_rewards("bogus", g, N, r_chunk, r_fmt, comp)
    with pytest.raises(ValueError, match="r_chunk"):
        step_rewards("csr", g, N, r_chunk[:2], r_fmt, comp)
    G = step_rewards("finemem", [g, 0.0], np.stack([N, N]), np.stack([r_chunk] * 2), np.stack([r_fmt] * 2), [comp, 0])
    assert G.shape == (2, T) and np.allclose(G[0], expected["finemem"])


def test_format_and_compression_rewards():
    assert np.allclose(format_reward([2, 0, 3], [4, 0, 3]), [0.5, 0.0, 1.0])
    with pytest.raises(ValueError, match="n_valid_executed"):
        format_reward([5], [4])
    assert compression_reward(25, [50, 50]) == pytest.approx(0.75)
    assert np.allclose(compression_reward([0, 100], [50, 50]), [1.0, 0.0])
    with pytest.raises(ValueError, match="chunk_tokens"):
        compression_reward(1, [0, 0])


def test_group_advantages_modes():
    rewards = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 3.0]])
    step = group_advantages(rewards, "step", eps=0.0)
    assert np.allclose(step[:, 0], [-1.0, 1.0, 0.0])
    assert np.allclose(step.mean(axis=0), 0.0)
    episode = group_advantages(rewards, "episode", eps=0.0)
    assert np.isclose(episode.mean(), 0.0) and np.isclose(episode.std(ddof=1), 1.0)
    equal = group_advantages(np.full((4, 3), 0.7))
    assert np.all(equal == 0.0)
    assert np.all(group_advantages([[1.0, 2.0]]) == 0.0)
    with pytest.raises(ValueError, match="mode"):
        group_advantages(rewards, "token")
    with pytest.raises(ValueError, match="rewards"):
        group_advantages([1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        group_advantages([[np.nan], [1.0]])
