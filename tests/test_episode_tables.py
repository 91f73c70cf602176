"""Episode tables for notebook 02: the parts of r_t, the advantages of a group, stale values beside updates."""

import numpy as np
import pytest

from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.data.instance import QA, Instance
from finemem_lib.episodes.rollout import RolloutSettings, group_advantages, rollout
from finemem_lib.report.episode_tables import advantage_table, credit_table, stale_items
from tests.tiny import ScriptedPolicy


def _role(key, value):
    return {"role": "fact", "key": key, "value": value, "asked": True}


@pytest.fixture(scope="module")
def instance():
    # ScriptedPolicy keeps sentences 1 and 2 of every chunk (rollout 0) and overwrites m1 from step 1 on,
    # so "Ada|city" is stored twice: Rome (m2, stale) and Oslo (m3)
    return Instance(
        id="t/0",
        source="synth_update",
        chunks=("Ada works at Acme. Ada lives in Rome. The sky is grey.", "Ada lives in Oslo. Bo has a cat. It rains."),
        questions=(QA("Where does Ada live?", ("Oslo",)),),
        chunk_qas=((QA("Where does Ada work?", ("Acme",)),), (QA("What pet does Bo have?", ("cat",)),)),
        metadata={
            "sentences": [
                [_role("Ada|job", "Acme"), _role("Ada|city", "Rome"), {"role": "distractor", "asked": False}],
                [_role("Ada|city", "Oslo"), _role("Bo|pet", "cat"), {"role": "distractor", "asked": False}],
            ]
        },
    )


@pytest.fixture(scope="module")
def group(instance):
    settings = RolloutSettings(num_generations=2, question_ratio=1.0, top_k=2)
    return rollout([instance], ScriptedPolicy(), build_reasoner({"backend": "offline"}), settings, seed=0)[0]


def test_credit_table_shares_r_global_equally_only_under_or_only(group):
    episode = group[0]
    credit = credit_table(episode, beta=0.5, w1=0.5, w2=0.05)
    assert np.allclose(credit["r_global (OR-only, +CSR)"], episode.r_global)
    assert credit["r_EARA (+EARA, Fine-Mem)"].sum() == pytest.approx(episode.r_global)
    parts = credit[["r_global (OR-only, +CSR)", "w1·r_chunk (+CSR, Fine-Mem)", "r_fmt (all)", "w2·r_comp (all)"]]
    assert np.allclose(parts.sum(axis=1), episode.step_rewards("csr", 0.5, 0.5, 0.05))


def test_advantage_table_rows_are_the_group_advantages(group):
    table = advantage_table(group, ("or_only", "finemem"))
    assert table.shape == (4, 1 + group[0].T)
    for variant in ("or_only", "finemem"):
        shown = table.loc[variant].filter(like="A_").to_numpy()
        assert np.allclose(shown, group_advantages(group, variant))


def test_stale_items_find_the_old_value_kept_beside_the_new(group, instance):
    stale = stale_items(group[0], instance)
    assert stale["key"].tolist() == ["Ada|city", "Ada|city"]
    assert stale["value"].tolist() == ["Rome", "Oslo"] and stale["current"].tolist() == [False, True]
    assert stale_items(group[0], Instance("x", "synth_update", instance.chunks, instance.questions)).empty
