"""Memory: operations, provenance, duplicates, snapshot/restore, the manager's view, token length."""

import pytest

from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.tokens import regex_token_count


def insert(text: str) -> Operation:
    return Operation(OpKind.INSERT, content=text)


def test_insert_update_delete_skip_and_provenance():
    mem = Memory()
    a = mem.apply(insert("Alice lives in Paris."), step=0)
    b = mem.apply(insert("Bob is 42."), step=1)
    assert a.ok and b.ok and a.item_id != b.item_id
    assert mem.writer_step(a.item_id) == 0

    up = mem.apply(Operation(OpKind.UPDATE, content="Alice lives in Rome.", item_id=a.item_id), step=3)
    assert up.ok
    assert mem.get(a.item_id).content == "Alice lives in Rome."
    assert mem.writer_step(a.item_id) == 3
    assert [(r.step, r.kind) for r in mem.history(a.item_id)] == [(0, OpKind.INSERT), (3, OpKind.UPDATE)]

    assert mem.apply(Operation(OpKind.SKIP), step=4).ok
    assert len(mem) == 2
    gone = mem.apply(Operation(OpKind.DELETE, item_id=b.item_id), step=5)
    assert gone.ok and b.item_id not in mem and len(mem) == 1
    assert mem.history(b.item_id)[-1].kind is OpKind.DELETE


@pytest.mark.parametrize(
    ("op", "reason"),
    [
        (Operation(OpKind.UPDATE, content="x", item_id="nope"), "unknown memory id"),
        (Operation(OpKind.DELETE, item_id="nope"), "unknown memory id"),
        (Operation(OpKind.DELETE), "unknown memory id"),
        (Operation(OpKind.INSERT, content="   "), "empty content"),
        (Operation(OpKind.INSERT), "needs content or a sentence"),
        (Operation(OpKind.INSERT, sentence=1), "needs the chunk's sentences"),
    ],
)
def test_bad_operations_return_a_reason(op, reason):
    result = Memory().apply(op, step=0)
    assert not result.ok and reason in result.reason


def test_insert_of_present_content_is_skipped():
    mem = Memory()
    first = mem.apply(insert("Same fact."), 0)
    again = mem.apply(insert("  Same fact. "), 2)
    assert again.ok and "duplicate" in again.reason and again.item_id == first.item_id
    assert len(mem) == 1 and mem.writer_step(first.item_id) == 0


def test_extractive_ops_resolve_sentence_numbers():
    sentences = ["Alice lives in Paris.", "The sky is blue.", "Alice now lives in Rome."]
    mem = Memory(id_style="short")
    ins = mem.apply(Operation(OpKind.INSERT, sentence=1), 0, sentences)
    assert ins.ok and ins.item_id == "m1" and mem.get("m1").content == "Alice lives in Paris."
    up = mem.apply(Operation(OpKind.UPDATE, sentence=3, item_id="m1"), 1, sentences)
    assert up.ok and mem.get("m1").content == "Alice now lives in Rome."
    for bad in (0, 4, -1):
        res = mem.apply(Operation(OpKind.INSERT, sentence=bad), 1, sentences)
        assert not res.ok and "out of range" in res.reason


def test_view_shows_most_recent_writes():
    mem = Memory(id_style="short")
    for i in range(7):
        mem.apply(insert(f"fact {i}"), i)
    assert [it.content for it in mem.view(3)] == ["fact 4", "fact 5", "fact 6"]
    mem.apply(Operation(OpKind.UPDATE, content="fact 0 revised", item_id="m1"), 7)
    assert [it.id for it in mem.view(2)] == ["m7", "m1"]
    assert mem.render(1) == "[m1] fact 0 revised"
    assert Memory().render() == "(memory is empty)"
    assert len(mem.view(None)) == 7


def test_snapshot_restore_roundtrip():
    mem = Memory(seed=3)
    mem.apply(insert("one"), 0)
    snap = mem.snapshot()
    mem.apply(insert("two"), 1)
    mem.apply(Operation(OpKind.DELETE, item_id=mem.items[0].id), 2)
    mem.restore(snap)
    assert [it.content for it in mem.items] == ["one"]
    assert len(mem.history(mem.items[0].id)) == 1
    # ids continue deterministically after a restore
    twin = Memory(seed=3)
    twin.apply(insert("one"), 0)
    assert mem.apply(insert("three"), 1).item_id == twin.apply(insert("three"), 1).item_id


def test_hex_ids_are_4_chars_and_reproducible():
    ids1 = [Memory(seed=7).apply(insert("x"), 0).item_id for _ in range(2)]
    assert ids1[0] == ids1[1] and len(ids1[0]) == 4 and int(ids1[0], 16) >= 0


def test_token_length_uses_the_pluggable_counter():
    mem = Memory(token_counter=lambda s: 10)
    mem.apply(insert("a"), 0)
    mem.apply(insert("b"), 0)
    assert mem.num_tokens() == 20
    mem2 = Memory()
    mem2.apply(insert("Alice lives in Paris."), 0)
    assert mem2.num_tokens() == regex_token_count("Alice lives in Paris.") == 5


def test_negative_step_is_rejected():
    with pytest.raises(ValueError, match="step"):
        Memory().apply(insert("x"), -1)
