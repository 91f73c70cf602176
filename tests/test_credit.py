"""Credit quality: leave-one-step-out marginal values, Spearman with a group bootstrap, advantage matrices."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from finemem_lib.agents.policy import SamplingParams
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.data.instance import QA
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.credit import (
    CreditVariant,
    bootstrap_spearman,
    credit_quality,
    credit_steps,
    group_advantage_matrices,
    leave_one_step_out,
    measure_credit,
    profile_variants,
    spearman,
)
from finemem_lib.episodes.qa import answer_over_memory
from finemem_lib.episodes.rollout import Episode, RolloutSettings, StepRecord
from tests.tiny import TINY_BENCH, tiny_policy

FACTS = [
    "The favourite colour of Mira Kelek is teal.",
    "The home city of Tobin Vorstad is Oslo.",
    "On Monday, the ferry was closed for repairs.",
]
QUESTIONS = (
    QA("What is the favourite colour of Mira Kelek?", ("teal",)),
    QA("What is the home city of Tobin Vorstad?", ("Oslo",)),
)


def _step(t: int, fmt: float = 1.0) -> StepRecord:
    return StepRecord(
        step=t,
        prompt_ids=torch.tensor([1]),
        completion_ids=torch.tensor([2]),
        old_logprobs=torch.tensor([-1.0]),
        text="",
        operations=[],
        results=[],
        n_emitted=1,
        format_score=fmt,
        memory_items=0,
        memory_tokens=10,
        chunk_correct=np.array([1.0]),
    )


def hand_episode(writes: dict[int, list[str]], T: int = 4, rollout: int = 0) -> Episode:
    """An episode whose step t inserted ``writes[t]``; scored on QUESTIONS by the offline reader."""
    memory = Memory()
    for t in range(T):
        for text in writes.get(t, []):
            memory.apply(Operation(OpKind.INSERT, content=text), step=t)
    results = answer_over_memory(memory, QUESTIONS, "synth_factoid", OfflineReader(), top_k=2)
    return Episode("inst", "synth_factoid", rollout, [40] * T, [_step(t) for t in range(T)], memory, results)


def test_removing_the_step_that_wrote_a_fact_costs_that_question():
    episode = hand_episode({0: [FACTS[0]], 2: [FACTS[1], FACTS[2]]})
    full, values = leave_one_step_out(episode, OfflineReader())
    assert full == pytest.approx(1.0) == pytest.approx(episode.r_global)
    assert values.tolist() == pytest.approx([0.5, 0.0, 0.5, 0.0])  # steps 1 and 3 wrote nothing


def test_a_step_whose_item_was_overwritten_later_has_no_value():
    episode = hand_episode({0: [FACTS[0]], 1: [FACTS[1]]})
    item = next(m for m in episode.memory.items if "Oslo" in m.content)
    episode.memory.apply(Operation(OpKind.UPDATE, item_id=item.id, content=FACTS[1]), step=3)
    _, values = leave_one_step_out(episode, OfflineReader())
    assert values[1] == 0.0 and values[3] == pytest.approx(0.5)


def test_marginal_values_can_use_other_questions_than_the_episode_was_scored_on():
    episode = hand_episode({0: [FACTS[0]], 1: [FACTS[1]]})
    full, values = leave_one_step_out(episode, OfflineReader(), questions=QUESTIONS[:1])
    assert full == 1.0 and values.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_an_episode_without_final_memory_is_a_clear_error():
    episode = hand_episode({0: [FACTS[0]]})
    episode.memory = None
    with pytest.raises(ValueError, match="no final memory"):
        leave_one_step_out(episode, OfflineReader())


def test_spearman_matches_ranks_with_ties_and_is_nan_when_constant():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties: ranks of x are [1, 2.5, 2.5, 4]; Pearson with [1, 2, 3, 4]
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1, 2, 3, 4])
    assert spearman([1, 2, 2, 3], [5, 6, 7, 8]) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def _steps_frame(n_groups: int, noise: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for _k in range(8):
            v = rng.normal()
            rows.append({"group": str(g), "value": v, "A_good": v + noise * rng.normal(), "A_bad": rng.normal()})
    return pd.DataFrame(rows)


def test_bootstrap_interval_brackets_the_point_and_separates_good_from_random_credit():
    steps = _steps_frame(40, noise=0.5)
    table = credit_quality(steps, ["good", "bad"], n_boot=300)
    good, bad = table.set_index("variant").loc["good"], table.set_index("variant").loc["bad"]
    assert good["lo"] <= good["spearman"] <= good["hi"] and bad["lo"] <= bad["spearman"] <= bad["hi"]
    assert good["lo"] > 0.6 and bad["lo"] < 0 < bad["hi"]
    assert good["n_groups"] == 40 and good["n_steps"] == 320


def test_bootstrap_interval_narrows_with_more_groups():
    few = bootstrap_spearman(_steps_frame(8, noise=1.0), "A_good", n_boot=300)
    many = bootstrap_spearman(_steps_frame(128, noise=1.0), "A_good", n_boot=300)
    assert many["hi"] - many["lo"] < few["hi"] - few["lo"]


def test_bootstrap_rejects_a_missing_column():
    with pytest.raises(ValueError, match="no column"):
        bootstrap_spearman(_steps_frame(2, 0.1), "A_missing")


def test_or_only_advantage_is_constant_within_a_rollout_and_fine_mem_is_not():
    group = [
        hand_episode({0: [FACTS[0]], 2: [FACTS[1]]}, rollout=0),
        hand_episode({1: [FACTS[0], FACTS[2]]}, rollout=1),
        hand_episode({3: [FACTS[2]]}, rollout=2),
    ]
    variants = [CreditVariant("or_only", RewardSpec("or_only")), CreditVariant("finemem", RewardSpec("finemem"))]
    adv = group_advantage_matrices(group, variants)
    assert adv["or_only"].shape == (3, 4)
    assert np.allclose(adv["or_only"], adv["or_only"][:, :1])  # r_fmt is the same at every step here
    assert not np.allclose(adv["finemem"], adv["finemem"][:, :1])


def test_credit_steps_has_a_row_per_step_and_matches_the_direct_values():
    group = [hand_episode({0: [FACTS[0]], 2: [FACTS[1]]}, rollout=0), hand_episode({1: [FACTS[0]]}, rollout=1)]
    variants = profile_variants({"rewards": {"beta": 1.0}}, ["or_only", "eara"])
    steps = credit_steps([group], OfflineReader(), variants)
    assert len(steps) == 2 * 4 and {"A_or_only", "A_eara", "value", "N"} <= set(steps.columns)
    assert steps.loc[steps.rollout == 0, "value"].tolist() == pytest.approx([0.5, 0.0, 0.5, 0.0])
    assert steps.loc[steps.rollout == 1, "value"].tolist() == pytest.approx([0.0, 0.5, 0.0, 0.0])
    assert variants[1].spec == RewardSpec("eara", beta=1.0)


def test_measure_credit_on_real_rollouts_of_a_tiny_manager():
    bench = build_synthetic(TINY_BENCH, seed=0)
    policy = tiny_policy(bench["train"])
    settings = RolloutSettings(
        num_generations=2, question_ratio=0.5, sampling=SamplingParams(temperature=1.0, max_new_tokens=12)
    )
    steps = measure_credit(bench["train"][:2], policy, OfflineReader(), settings, profile_variants({}), seeds=[0])
    T = bench["train"][0].num_chunks
    assert len(steps) == 2 * 2 * T and steps["group"].nunique() == 2
    assert np.isfinite(steps[[c for c in steps.columns if c.startswith("A_")]].to_numpy()).all()
    assert ((steps["value"] >= -1) & (steps["value"] <= 1)).all()


def test_the_paired_difference_is_that_of_the_same_steps():
    from finemem_lib.episodes.credit import paired_credit_differences

    steps = _steps_frame(40, noise=0.5).assign(A_copy=lambda f: f["A_bad"])
    table = paired_credit_differences(steps, ["good", "copy"], reference="bad", n_boot=300).set_index("variant")
    quality = credit_quality(steps, ["good", "bad"], n_boot=10).set_index("variant")["spearman"]
    assert table.loc["good", "diff"] == pytest.approx(quality["good"] - quality["bad"])
    assert table.loc["good", "lo"] > 0.5 and table.loc["good", "n_groups"] == 40
    # the same advantages as the reference: a difference of exactly 0 in every draw (paired, not independent)
    assert table.loc["copy", ["diff", "lo", "hi"]].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="no column"):
        paired_credit_differences(steps, ["missing"], reference="bad")
