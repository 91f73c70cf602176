"""The scripted imperfect teacher that writes the SFT cold-start traces."""

from __future__ import annotations

import random

import pytest

from finemem_lib.agents.teacher import TeacherConfig, decide_ops, replay_teacher, sentence_metadata
from finemem_lib.core.memory import OpKind
from finemem_lib.data.instance import Instance
from finemem_lib.data.synthetic import build_synthetic

KNOBS = {"train_instances": 6, "test_instances": 1, "chunks_per_instance": 4, "sentences_per_chunk": 6}


@pytest.fixture(scope="module")
def bench():
    return build_synthetic(KNOBS, seed=0)


def _roles(instance, step):
    return [m["role"] for m in sentence_metadata(instance)[step]]


def test_perfect_knobs_store_every_fact_and_no_distractor(bench):
    perfect = TeacherConfig(p_store_fact=1.0, p_store_distractor=0.0, p_update=0.0)
    for instance in bench["train"]:
        for step in replay_teacher(instance, perfect):
            roles = _roles(instance, step.step)
            stored = sorted(op.sentence for op in step.ops if op.kind is OpKind.INSERT)
            assert stored == [i + 1 for i, role in enumerate(roles) if role in ("fact", "update", "example")]
            assert all(result.ok for result in step.results)


def test_updates_name_the_item_holding_the_same_key(bench):
    always = TeacherConfig(p_store_fact=1.0, p_store_distractor=0.0, p_update=1.0)
    n_updates = 0
    for instance in bench["train"]:
        if instance.source != "synth_update":
            continue
        meta = sentence_metadata(instance)
        written_key: dict[str, str] = {}  # memory id -> key of the sentence that last wrote it
        for step in replay_teacher(instance, always):
            for op, result in zip(step.ops, step.results, strict=True):
                key = meta[step.step][op.sentence - 1]["key"]
                if op.kind is OpKind.UPDATE:
                    n_updates += 1
                    assert op.item_id in {item.id for item in step.view}  # the prompt shows that id
                    assert written_key[op.item_id] == key
                    assert meta[step.step][op.sentence - 1]["role"] == "update"
                if result.ok:
                    written_key[result.item_id] = key
    assert n_updates > 0


def test_nothing_stored_gives_a_skip(bench):
    silent = TeacherConfig(p_store_fact=0.0, p_store_distractor=0.0, p_update=0.0)
    steps = replay_teacher(bench["train"][0], silent)
    assert all([op.kind for op in step.ops] == [OpKind.SKIP] for step in steps)


def test_default_teacher_is_imperfect(bench):
    stored = {"useful": 0, "distractor": 0}
    totals = {"useful": 0, "distractor": 0}
    for instance in bench["train"]:
        for step in replay_teacher(instance, TeacherConfig(seed=1)):
            roles = _roles(instance, step.step)
            for role in roles:
                totals["distractor" if role == "distractor" else "useful"] += 1
            for op in step.ops:
                if op.sentence is not None:
                    stored["distractor" if roles[op.sentence - 1] == "distractor" else "useful"] += 1
    assert 0.5 < stored["useful"] / totals["useful"] < 0.97  # misses some facts
    assert 0.02 < stored["distractor"] / totals["distractor"] < 0.5  # keeps some distractors


def test_replay_is_seeded(bench):
    instance = bench["train"][3]
    first = [step.ops for step in replay_teacher(instance, TeacherConfig(seed=4))]
    assert first == [step.ops for step in replay_teacher(instance, TeacherConfig(seed=4))]
    others = [[step.ops for step in replay_teacher(inst, TeacherConfig(seed=5))] for inst in bench["train"]]
    mine = [[step.ops for step in replay_teacher(inst, TeacherConfig(seed=4))] for inst in bench["train"]]
    assert others != mine


def test_views_are_what_the_manager_would_see(bench):
    steps = replay_teacher(bench["train"][0], TeacherConfig(), view_k=2)
    assert steps[0].view == ()
    assert all(len(step.view) <= 2 for step in steps)
    assert any(step.view for step in steps[1:])


def test_content_style_carries_the_sentence_text(bench):
    instance = bench["train"][0]
    for step in replay_teacher(instance, TeacherConfig(), style="content", id_style="hex"):
        for op in step.ops:
            if op.kind in (OpKind.INSERT, OpKind.UPDATE):
                assert op.content in step.sentences and op.sentence is None


def test_missing_metadata_is_named():
    bare = Instance("plain/1", "squad", ("One. Two.",), ())
    with pytest.raises(ValueError, match="plain/1"):
        replay_teacher(bare)


def test_config_checks_knobs():
    assert TeacherConfig.from_mapping({"p_update": 0.5}).p_update == 0.5
    with pytest.raises(ValueError, match="unknown teacher knob"):
        TeacherConfig.from_mapping({"p_forget": 0.5})
    with pytest.raises(ValueError, match="p_store_fact"):
        TeacherConfig(p_store_fact=1.5)


def test_unknown_roles_count_as_distractors():
    meta = [{"role": "mystery", "key": None}, {"role": "fact", "key": "a|b"}]
    ops = decide_ops(meta, {}, set(), random.Random(0), TeacherConfig(p_store_fact=1.0, p_store_distractor=0.0))
    assert [(op.kind, op.sentence) for op in ops] == [(OpKind.INSERT, 2)]
