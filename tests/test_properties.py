"""Property tests: conservation, beta extremes, advantage normalisation, parser totality, memory invariants."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.ops import parse_operations
from finemem_lib.core.rewards import eara, evidence_contribution, group_advantages

scores_st = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def episodes(draw, nonempty: bool = True):
    T = draw(st.integers(1, 12))
    n = draw(st.integers(1, 10))
    min_k = 1 if nonempty else 0
    evidence = [draw(st.lists(st.integers(0, T - 1), min_size=min_k, max_size=4)) for _ in range(n)]
    scores = [draw(scores_st) for _ in range(n)]
    return T, scores, evidence


@given(episodes(), st.floats(0.0, 1.0))
def test_eara_conserves_the_global_reward(episode, beta):
    T, scores, evidence = episode
    r_global = float(np.mean(scores))
    N = evidence_contribution(scores, evidence, T)
    assert np.isclose(N.sum(), r_global)
    assert np.isclose(eara(r_global, N, beta).sum(), r_global)


@given(episodes(nonempty=False))
def test_beta_zero_is_uniform_and_beta_one_is_N(episode):
    T, scores, evidence = episode
    r_global = float(np.mean(scores))
    N = evidence_contribution(scores, evidence, T)
    assert np.allclose(eara(r_global, N, 0.0), r_global / T)
    assert np.allclose(eara(r_global, N, 1.0), N)
    assert N.sum() <= r_global + 1e-12


@given(
    st.integers(1, 8).flatmap(
        lambda g: st.integers(1, 6).flatmap(
            lambda t: st.lists(st.lists(st.floats(-5, 5), min_size=t, max_size=t), min_size=g, max_size=g)
        )
    ),
    st.sampled_from(["step", "episode"]),
)
def test_advantages_zero_mean_and_finite(rewards, mode):
    adv = group_advantages(rewards, mode)
    assert np.all(np.isfinite(adv))
    if mode == "step":
        assert np.allclose(adv.mean(axis=0), 0.0, atol=1e-6)
    else:
        assert np.isclose(adv.mean(), 0.0, atol=1e-6)


@given(st.floats(-3, 3), st.integers(1, 8), st.integers(1, 6))
def test_equal_rewards_give_zero_advantages(value, G, T):
    assert np.all(group_advantages(np.full((G, T), value)) == 0.0)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.text(max_size=300), st.sampled_from(["content", "extractive"]))
def test_parser_never_raises_on_arbitrary_text(text, style):
    parsed = parse_operations(text, style)
    assert parsed.n_valid <= parsed.n_emitted


@given(json_like, st.sampled_from(["content", "extractive"]))
def test_parser_never_raises_on_arbitrary_json(value, style):
    import json

    for text in (json.dumps(value), f"<tool_call>{json.dumps(value)}</tool_call>"):
        parsed = parse_operations(text, style)
        assert all(c.valid == (c.error == "") for c in parsed.calls)


op_st = st.one_of(
    st.builds(lambda t: ("insert", t), st.sampled_from(["a", "b", "c", "d", "e", ""])),
    st.builds(lambda i, t: ("update", i, t), st.integers(0, 6), st.sampled_from(["a", "x", "y", "z"])),
    st.builds(lambda i: ("delete", i), st.integers(0, 6)),
    st.just(("skip",)),
)


@given(st.lists(op_st, max_size=30), st.sampled_from(["hex", "short"]))
def test_memory_invariants(program, id_style):
    mem = Memory(id_style=id_style)
    ever = []
    for step, instr in enumerate(program):
        known = [it.id for it in mem.items]
        target = known[instr[1] % len(known)] if len(instr) > 1 and isinstance(instr[1], int) and known else "none"
        if instr[0] == "insert":
            res = mem.apply(Operation(OpKind.INSERT, content=instr[1]), step)
            if res.ok and res.reason == "":
                ever.append(res.item_id)
        elif instr[0] == "update":
            res = mem.apply(Operation(OpKind.UPDATE, content=instr[2], item_id=target), step)
            if res.ok and res.item_id == target:
                assert mem.writer_step(target) == step
                assert mem.get(target).content == instr[2]
            elif res.ok:  # the text was held by another item: the target merged into it
                assert target not in mem and mem.get(res.item_id).content == instr[2]
        elif instr[0] == "delete":
            res = mem.apply(Operation(OpKind.DELETE, item_id=target), step)
            if res.ok:
                assert target not in mem
        else:
            assert mem.apply(Operation(OpKind.SKIP), step).ok
        ids = [it.id for it in mem.items]
        assert len(ids) == len(set(ids))
        contents = [it.content for it in mem.items]
        assert len(contents) == len(set(contents))  # INSERT and UPDATE both de-duplicate
        for item in mem.items:
            assert mem.history(item.id)[-1].step == item.step
    assert len(ever) == len(set(ever))
