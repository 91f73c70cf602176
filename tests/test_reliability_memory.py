"""Memory keeps one live copy of a text (UPDATE like INSERT), and Operation refuses wrong field types."""

from __future__ import annotations

import pytest

from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.ops import format_score, parse_operations, render_tool_calls


def test_an_update_to_text_held_elsewhere_merges_instead_of_duplicating():
    mem = Memory(id_style="short")
    old = mem.apply(Operation(OpKind.INSERT, content="Ada is 30."), 0).item_id
    new = mem.apply(Operation(OpKind.INSERT, content="Ada is 31."), 1).item_id
    result = mem.apply(Operation(OpKind.UPDATE, content=" Ada is 31. ", item_id=old), 2)
    assert result.ok and result.item_id == new and "duplicate content" in result.reason
    assert [item.content for item in mem.items] == ["Ada is 31."]  # was: two live items with this text
    assert old not in mem and mem.history(old)[-1].kind is OpKind.DELETE and mem.history(old)[-1].step == 2
    assert mem.writer_step(new) == 1  # like a duplicate INSERT, the kept item's provenance is unchanged


def test_insert_and_update_de_duplicate_the_same_way_in_a_scored_step():
    mem = Memory(id_style="short")
    mem.apply(Operation(OpKind.INSERT, content="Bo lives in Oslo."), 0)
    target = mem.apply(Operation(OpKind.INSERT, content="Bo lives in Rome."), 0).item_id
    ops = [
        Operation(OpKind.INSERT, content="Bo lives in Oslo."),
        Operation(OpKind.UPDATE, content="Bo lives in Oslo.", item_id=target),
    ]
    parsed = parse_operations(render_tool_calls(ops))
    results = mem.apply_all(parsed.operations, 1)
    assert [r.reason.split(":")[0] for r in results] == ["duplicate content"] * 2
    assert len(mem) == 1
    # both wrote nothing new: neither is a success under Mem-alpha's fc_success rule, both are with count_duplicates
    assert format_score(parsed, results) == 0.0
    assert format_score(parsed, results, count_duplicates=True) == 1.0


def test_an_update_to_its_own_text_is_a_plain_update():
    mem = Memory(id_style="short")
    item = mem.apply(Operation(OpKind.INSERT, content="Cy is 5."), 0).item_id
    result = mem.apply(Operation(OpKind.UPDATE, content="Cy is 5.", item_id=item), 3)
    assert result.ok and result.reason == "" and mem.writer_step(item) == 3 and len(mem) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": OpKind.INSERT, "sentence": 2.0}, "Operation.sentence"),
        ({"kind": OpKind.INSERT, "sentence": True}, "Operation.sentence"),
        ({"kind": OpKind.INSERT, "sentence": "2"}, "Operation.sentence"),
        ({"kind": OpKind.INSERT, "content": 123}, "Operation.content"),
        ({"kind": OpKind.DELETE, "item_id": 5}, "Operation.item_id"),
        ({"kind": "fly"}, "Operation.kind"),
    ],
)
def test_wrong_field_types_are_a_clear_error_naming_the_field(kwargs, field):
    with pytest.raises(TypeError, match=field):
        Operation(**kwargs)


def test_lone_surrogates_and_string_kinds():
    with pytest.raises(ValueError, match=r"Operation\.content.*surrogate"):
        Operation(OpKind.INSERT, content="x\ud800")
    assert Operation("insert", content="a") == Operation(OpKind.INSERT, content="a")
    assert Operation(OpKind.INSERT, sentence=__import__("numpy").int64(3)).sentence == 3
