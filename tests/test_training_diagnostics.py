"""Per-round GRPO diagnostics: reward-term spreads, zero-variance groups, store rates, and their figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.rollout import RolloutSettings, rollout
from finemem_lib.training.diagnostics import (
    STAT_NAMES,
    as_history_rows,
    diagnostics_summary,
    plot_diagnostics,
    reward_components,
    round_stats,
)
from tests.tiny import ScriptedPolicy


@pytest.fixture(scope="module")
def groups_and_instances():
    instances = build_synthetic({"train_instances": 2, "test_instances": 0, "chunks_per_instance": 3}, 0)["train"]
    chosen = [instances[0], instances[2]]  # synth_factoid, synth_update
    settings = RolloutSettings(num_generations=4, question_ratio=1.0)
    return rollout(chosen, ScriptedPolicy(), OfflineReader(), settings, seed=0), chosen


def test_components_add_up_to_the_step_reward(groups_and_instances):
    groups, _ = groups_and_instances
    for variant in ("or_only", "csr", "eara", "finemem"):
        for group in groups:
            parts = reward_components(group, RewardSpec(variant))
            total = sum(parts.values())
            expected = np.stack([e.step_rewards(variant) for e in group])
            np.testing.assert_allclose(total, expected)


def test_round_stats_see_the_scripted_behaviour(groups_and_instances):
    groups, instances = groups_and_instances
    stats = round_stats(groups, instances, RewardSpec("finemem"))
    assert set(STAT_NAMES) <= set(stats)
    means = as_history_rows(stats)
    # ScriptedPolicy: even rollouts store sentences 1 and 2, odd ones sentence 1 only; every step emits a bad op,
    # so the format term varies within a group exactly when the stored sentences do
    assert means["diag/spread/format"] > 0
    assert 0 < means["diag/store_rate/facts"] < 1 and 0 < means["diag/store_rate/filler"] < 1
    assert means["diag/spread/compression"] > 0 and 0.0 <= means["diag/zero_var_groups"] <= 1.0
    assert -1.0 <= means["diag/corr/format"] <= 1.0


def test_identical_rollouts_are_zero_variance_groups(groups_and_instances):
    groups, instances = groups_and_instances
    clones = [[group[0]] * 4 for group in groups]
    means = as_history_rows(round_stats(clones, instances, RewardSpec("or_only")))
    assert means["diag/zero_var_groups"] == 1.0
    assert means["diag/spread/total"] == 0.0
    assert np.isnan(means["diag/corr/global"])  # no spread: no correlation to report


def test_plot_and_summary_read_a_curves_table(tmp_path):
    steps = np.arange(1, 4)
    rows = []
    for variant in ("or_only", "finemem"):
        for seed in (0, 1):
            for step in steps:
                rows.append(
                    {"variant": variant, "seed": seed, "step": step, "diag/spread/format": 0.1 * step,
                     "diag/store_rate/facts": 0.5, "diag/store_rate/filler": 0.4, "kl": 0.001, "entropy": 0.3}
                )  # fmt: skip
    curves = pd.DataFrame(rows)
    fig = plot_diagnostics(curves, tmp_path / "diag.png")
    assert (tmp_path / "diag.png").is_file() and len([a for a in fig.axes if a.get_visible()]) == 4
    summary = diagnostics_summary(curves)
    assert list(summary["variant"]) == ["finemem", "or_only"]
    with pytest.raises(ValueError, match="no diagnostics"):
        plot_diagnostics(pd.DataFrame({"variant": ["a"], "step": [1], "loss": [0.1]}))
