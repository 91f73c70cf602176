"""Review lines that show the memory item most like their sentence: an UPDATE's target beside its decision."""

from __future__ import annotations

import pytest

from finemem_lib.agents.policy import SamplingParams
from finemem_lib.agents.sft import build_sft_examples
from finemem_lib.agents.teacher import TeacherConfig, replay_teacher
from finemem_lib.agents.view import line_hints
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.review import parse_review_line, render_review, restated_line, split_review_line
from finemem_lib.data.synthetic import build_synthetic
from tests.tiny import tiny_policy

OLD = "The job of Rasmus Rosstad is a carpenter."
NEW = "The job of Rasmus Rosstad is now a locksmith."
OTHER = "Last week, a delivery van hosted a small concert."


@pytest.fixture(scope="module")
def data():
    return build_synthetic(
        {
            "synthetic": {
                "sources": ["synth_update"],
                "train_instances": 3,
                "test_instances": 1,
                "chunks_per_instance": 4,
            }
        },
        0,
    )


def test_a_sentence_is_hinted_with_the_item_it_would_replace():
    memory = Memory(id_style="short")
    memory.apply(Operation(OpKind.INSERT, content="The car of Ada Lind is a Saab."), 0)
    memory.apply(Operation(OpKind.INSERT, content=OLD), 0)
    hints = line_hints(memory, [NEW, "Zzz qqq."])
    assert hints[0] is not None and hints[0].content == OLD
    assert hints[1] is None  # no word in common: nothing to show
    assert line_hints(Memory(), [NEW]) == [None]


def test_the_hint_sits_before_the_arrow_and_the_line_still_parses():
    memory = Memory(id_style="short")
    memory.apply(Operation(OpKind.INSERT, content=OLD), 0)
    item = memory.items[0]
    head = restated_line(2, NEW, item)
    assert head == f"2. [{item.id}: {OLD}] {NEW} =>"
    assert split_review_line(f"{head} update {item.id}") == (2, f"[{item.id}: {OLD}] {NEW}", f"update {item.id}")
    op, _ = parse_review_line(f"{head} update {item.id}")
    assert op == Operation(OpKind.UPDATE, sentence=2, item_id=item.id)
    text = render_review([Operation(OpKind.UPDATE, sentence=2, item_id=item.id)], [OTHER, NEW], [None, item])
    assert text.splitlines() == [f"{restated_line(1, OTHER)} skip", f"{head} update"]


def test_a_bare_update_replaces_the_item_its_line_shows():
    memory = Memory(id_style="short")
    memory.apply(Operation(OpKind.INSERT, content=OLD), 0)
    memory.apply(Operation(OpKind.INSERT, content=OTHER), 0)
    old, other = memory.items
    op, _ = parse_review_line(f"{restated_line(3, NEW, old)} update")
    assert op == Operation(OpKind.UPDATE, sentence=3, item_id=old.id)
    op, _ = parse_review_line(f"{restated_line(3, NEW, old)} update {other.id}")  # an id still names any item
    assert op == Operation(OpKind.UPDATE, sentence=3, item_id=other.id)
    op, error = parse_review_line(f"{restated_line(3, NEW)} update")  # no item shown: nothing to replace
    assert op is None and "bare 'update'" in error
    op, error = parse_review_line(f"{restated_line(3, NEW, old)} delete")  # a delete always names its item
    assert op is None and "delete needs a memory id" in error
    # an UPDATE of another item than the shown one keeps its id when rendered, and parses back to itself
    ops = [Operation(OpKind.UPDATE, sentence=1, item_id=old.id), Operation(OpKind.UPDATE, sentence=2, item_id=old.id)]
    lines = render_review(ops, [NEW, NEW], [old, other]).splitlines()
    assert lines[0].endswith(f"{NEW} => update") and lines[1].endswith(f"{NEW} => update {old.id}")
    assert [parse_review_line(line)[0] for line in lines] == ops


def test_the_teacher_updates_only_the_item_a_line_shows(data):
    updates = 0
    for instance in data["train"]:
        steps = replay_teacher(instance, TeacherConfig(p_update=1.0), style="review", related_k=3, hints=True)
        for step in steps:
            assert step.hints is not None and len(step.hints) == len(step.sentences)
            for op in step.ops:
                if op.kind is OpKind.UPDATE:
                    updates += 1
                    assert step.hints[op.sentence - 1] is not None
                    assert step.hints[op.sentence - 1].id == op.item_id
    assert updates > 0
    examples = build_sft_examples(data["train"], TeacherConfig(p_update=1.0), style="review", review_hints=True)
    review = "\n".join(e["completion"][0]["content"] for e in examples)
    assert ". => update\n" in review + "\n" and "] The " in review


def test_the_harness_writes_each_lines_hint(data):
    policy = tiny_policy(data["train"], style="review", review_hints=True)
    memory = Memory(id_style="short")
    first = data["train"][0]
    for sentence in first.chunks[0].split(". ")[:3]:
        memory.apply(Operation(OpKind.INSERT, content=sentence.strip(". ") + "."), 0)
    chunk = first.chunks[1]
    steps, generations = policy.act([chunk], [memory], SamplingParams(), 3)
    assert steps[0].hints is not None and any(h is not None for h in steps[0].hints)
    for number, (line, hint) in enumerate(zip(generations[0].text.splitlines(), steps[0].hints, strict=False), 1):
        assert line.startswith(restated_line(number, steps[0].sentences[number - 1], hint))
    assert policy.settings()["review_hints"] is True
    plain = tiny_policy(data["train"], style="review")
    assert plain.step_prompt(chunk, memory).hints is None
