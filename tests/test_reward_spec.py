"""The reward spec and the variant table: one object from the profile, one row per variant."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from finemem_lib.core import rewards
from finemem_lib.core.reward_spec import VARIANT_TABLE, VARIANTS, RewardSpec, Variant, variant, variant_label
from finemem_lib.report import plots, viewer


def test_spec_from_a_profile_reads_rewards_and_training_variant_and_overrides_win():
    cfg = {"rewards": {"beta": 0.25, "w1": 0, "group_mode": "episode", "token_counter": "regex"},
           "training": {"variant": "csr"}}  # fmt: skip
    spec = RewardSpec.from_config(cfg)
    assert spec == RewardSpec("csr", beta=0.25, w1=0, w2=RewardSpec().w2, group_mode="episode")
    assert isinstance(spec.w1, int)  # kept as written: it is part of a run's identity hash
    assert RewardSpec.from_config(cfg, variant="eara", beta=None, w2=0.2) == dataclasses.replace(
        spec, variant="eara", w2=0.2
    )
    assert RewardSpec.from_config({}) == RewardSpec()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"variant": "fine-mem"}, "fine-mem"), ({"group_mode": "token"}, "group_mode"), ({"beta": 1.5}, "beta")],
)
def test_bad_settings_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RewardSpec(**kwargs)
    with pytest.raises(ValueError, match="unknown reward setting"):
        RewardSpec.of("csr", lr=0.1)


def test_spec_is_frozen_and_hashable():
    spec = RewardSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.beta = 0.1  # type: ignore[misc]
    assert len({spec, RewardSpec(), spec.with_variant("csr")}) == 2


def test_the_kernel_takes_the_spec_whole_or_loose_knobs_alike():
    rng = np.random.default_rng(0)
    N, r_chunk, r_fmt = rng.random((3, 2, 5))
    g, comp = rng.random(2), rng.random(2)
    for name in VARIANTS:
        spec = RewardSpec(name, beta=0.3, w1=0.7, w2=0.1)
        loose = rewards.step_rewards(name, g, N, r_chunk, r_fmt, comp, beta=0.3, w1=0.7, w2=0.1)
        assert np.array_equal(rewards.step_rewards(spec, g, N, r_chunk, r_fmt, comp), loose)
    r = rng.random((4, 3))
    episode = RewardSpec(group_mode="episode")
    assert np.array_equal(rewards.group_advantages(r, episode), rewards.group_advantages(r, "episode"))


def test_every_term_of_the_table_has_a_kernel_and_rows_sum_their_terms():
    assert set(rewards.TERM_KERNELS) == {t for v in VARIANT_TABLE for t in v.terms}
    N, r_chunk, r_fmt = np.array([[0.2, 0.8]]), np.array([[1.0, 0.0]]), np.array([[1.0, 0.5]])
    g, comp = 0.6, 0.5
    spec = RewardSpec(beta=0.5, w1=0.5, w2=0.1)
    terms = {
        "global": np.array([0.6, 0.6]),
        "eara": 0.5 * 0.6 / 2 + 0.5 * N[0],
        "fmt": r_fmt[0],
        "comp": np.array([0.05, 0.05]),
        "chunk": 0.5 * r_chunk[0],
    }
    for row in VARIANT_TABLE:
        got = rewards.step_rewards(spec.with_variant(row.name), g, N[0], r_chunk[0], r_fmt[0], comp)
        assert np.allclose(got, sum(terms[t] for t in row.terms)), row.name


def test_figures_and_viewer_read_the_table():
    assert plots.VARIANT_ORDER == VARIANTS == tuple(v.name for v in VARIANT_TABLE)
    assert all(plots.VARIANT_LABELS[v] == viewer.VARIANT_NAMES[v] == variant(v).label for v in VARIANTS)
    assert all(plots.VARIANT_COLOURS[v] == variant(v).colour for v in VARIANTS)
    assert variant_label("finemem_beta0") == "finemem_beta0"


def test_a_row_names_only_known_terms():
    with pytest.raises(ValueError, match="unknown reward term"):
        Variant("x", "X", "#000000", ("global", "bonus"))
    assert Variant("x", "X", "#000000", ("chunk", "global")).terms == ("global", "chunk")  # summed in a fixed order
