"""Each sentence's decision beside its step's advantage: what a variant's credit rewards before training."""

from __future__ import annotations

import numpy as np
import pytest

from finemem_lib.core.memory import MemoryItem, Operation, OpKind, OpResult
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.decision_credit import decision_table, sentence_keys, step_decisions
from tests.tiny import ScriptedPolicy


def test_decisions_are_read_from_the_executed_operations():
    texts = ["Ann lives in Oslo.", "Ann lives in Rome.", "Bob is a baker.", "Rain fell.", "Cat sat."]
    keys = {texts[0]: "ann/home", texts[1]: "ann/home", texts[2]: "bob/job", texts[3]: None, texts[4]: None}
    memory = {"m1": MemoryItem("m1", texts[0], 0), "m2": MemoryItem("m2", texts[2], 0)}
    ops = [
        Operation(OpKind.UPDATE, sentence=2, item_id="m1"),  # the new home over the old one
        Operation(OpKind.UPDATE, sentence=3, item_id="m1"),  # a job over a home: a fact lost
        Operation(OpKind.INSERT, sentence=4),
        Operation(OpKind.INSERT, sentence=9),  # out of range: no sentence of the step
    ]
    results = [OpResult(True), OpResult(True), OpResult(True), OpResult(False, "no sentence 9")]
    assert step_decisions(5, ops, results, memory, texts, keys) == [
        "skip",
        "update_same_key",
        "update_other",
        "keep",
        "skip",
    ]
    failed = step_decisions(
        2, [Operation(OpKind.UPDATE, sentence=1, item_id="m9")], [OpResult(False)], memory, texts, keys
    )
    assert failed == ["failed", "skip"]


def test_the_table_pairs_each_decision_with_its_steps_advantage():
    data = build_synthetic({"synthetic": {"train_instances": 1, "test_instances": 1, "chunks_per_instance": 3}}, 0)
    instance = data["train"][0]
    from finemem_lib.agents.reasoner_offline import OfflineReader
    from finemem_lib.episodes.rollout import RolloutSettings, rollout

    groups = rollout([instance], ScriptedPolicy(), OfflineReader(), RolloutSettings(num_generations=2), seed=0)
    steps = len(groups[0][0].steps)
    advantages = [np.array([[1.0] * steps, [-1.0] * steps])]
    table = decision_table([instance], groups, advantages)
    assert set(table["decision"]) <= {"keep", "skip", "update_same_key", "update_other", "failed"}
    assert table["n"].sum() == 2 * sum(len(k) for k in instance.metadata["sentences"])
    # rollout 0 (A = +1) keeps sentences 1 and 2, rollout 1 (A = -1) only sentence 1: sentence 2's keeps pay +1
    keep = table[table["decision"] == "keep"]
    assert (keep["mean_advantage"] >= 0).all() and (keep["mean_advantage"] > 0).any()
    assert set(sentence_keys(instance).values()) - {None}
    with pytest.raises(ValueError):
        decision_table([instance], groups, [np.zeros((1, steps))])
