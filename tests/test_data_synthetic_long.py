"""Knobs of the long-horizon profile: lures, stratified asked facts; the default benchmark is unchanged by them."""

import hashlib
import json
from collections import Counter
from dataclasses import asdict

import numpy as np
import pytest

from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core.retrieval import tokenize
from finemem_lib.data.synthetic import DEFAULT_ICL_QUESTION, LURE_PREFIX, RELATIONS, SyntheticConfig, build_synthetic
from finemem_lib.episodes.baselines import store_everything
from finemem_lib.episodes.qa import mean_score
from finemem_lib.infra.config import load_profile

# sha256 of the default profile's benchmark (json of every instance), taken before the long-horizon knobs existed
DEFAULT_DIGEST = "4fad9b8b91b0c251d0b56cf4d594aca755cfea03d950caaf9f9b8e5848b8e75d"


def _digest(data) -> str:
    text = json.dumps({s: [asdict(i) for i in v] for s, v in data.items()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def test_default_benchmark_is_byte_identical_to_before_the_new_knobs():
    cfg = load_profile("default")
    # with Mem-alpha's ICL wording (the default profile now asks "Which label fits this sample?")
    before = {**cfg["data"]["synthetic"], "icl_question": DEFAULT_ICL_QUESTION}
    assert _digest(build_synthetic({**cfg["data"], "synthetic": before}, cfg["seed"])) == DEFAULT_DIGEST
    explicit = {**before, "lure_ratio": 0.0, "asked_stratified": False}
    assert _digest(build_synthetic({**cfg["data"], "synthetic": explicit}, cfg["seed"])) == DEFAULT_DIGEST


LURES = {"train_instances": 0, "test_instances": 6, "chunks_per_instance": 8, "lure_ratio": 1.0}


@pytest.fixture(scope="module")
def lured():
    return build_synthetic({**LURES, "sources": ["synth_factoid", "synth_update"]}, seed=2)["test"]


def test_lures_name_an_asked_key_with_its_question_words_and_a_wrong_value(lured):
    relation_of = {r.name: r for r in RELATIONS}
    n_lures = 0
    for inst in lured:
        asked = {q["key"] for q in inst.metadata["questions"]}
        truth = {}
        for chunk in inst.metadata["sentences"]:
            for s in chunk:
                if s["role"] in ("fact", "update"):
                    truth.setdefault(s["key"], set()).add(s["value"])
        for t, chunk in enumerate(inst.metadata["sentences"]):
            text = inst.chunks[t]
            for s in chunk:
                if not s.get("lure"):
                    continue
                n_lures += 1
                assert s["role"] == "distractor" and s["key"] in asked and s["value"] not in truth[s["key"]]
                person, relation = s["key"].split("|")
                question = relation_of[relation].question.format(s=person)
                sentence = next(
                    x for x in text.split(". ") if x.startswith(LURE_PREFIX) and s["value"] in x and person in x
                )
                assert set(tokenize(question)) - {"what", "which"} <= set(tokenize(sentence)), (question, sentence)
        assert not any(chunk_qa.answers[0] == "Rumour" for qas in inst.chunk_qas for chunk_qa in qas)
    assert n_lures > 0


def test_lures_hurt_a_memory_that_keeps_everything():
    reader = OfflineReader()
    scores = {}
    for ratio in (0.0, 1.0):
        test = build_synthetic({**LURES, "lure_ratio": ratio, "sources": ["synth_factoid"]}, seed=2)["test"]
        scores[ratio] = np.mean([mean_score(store_everything(i, reader)) for i in test])
    assert scores[0.0] >= 0.95 and scores[1.0] < scores[0.0] - 0.1, scores


def test_stratified_asking_asks_the_same_share_of_every_chunk():
    cfg = {"train_instances": 0, "test_instances": 4, "chunks_per_instance": 8, "sources": ["synth_factoid"]}
    test = build_synthetic({**cfg, "asked_stratified": True, "sentences_per_chunk": 9}, seed=1)["test"]
    for inst in test:
        facts = Counter(t for t, chunk in enumerate(inst.metadata["sentences"]) for s in chunk if s["role"] == "fact")
        asked = Counter(q["chunk"] for q in inst.metadata["questions"])
        for t, n in facts.items():
            assert asked[t] == round(n * 0.5), (t, n, asked[t])


def test_lure_ratio_is_checked():
    with pytest.raises(ValueError, match="lure_ratio"):
        SyntheticConfig(lure_ratio=1.5)


def test_long_profile_has_long_episodes_and_enough_held_out_instances():
    cfg = load_profile("long")
    knobs = SyntheticConfig.from_mapping(cfg["data"])
    assert knobs.chunks_per_instance >= 16 and knobs.test_instances * len(knobs.sources) >= 96
    assert knobs.lure_ratio > 0 and knobs.asked_stratified and cfg["rewards"]["w2"] > 0
