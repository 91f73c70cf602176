"""The op parser never raises, whatever the completion: reproducers, the bounded JSON reader, a fuzz test.

The fuzz tests draw completions from the hostile classes that once made the parser raise or stall
(deep nesting, runs of brackets, integers past Python's 4,300-digit limit, non-ASCII digit strings,
lone surrogates) mixed with valid calls, tags, fences and free text: 20,000 from a seeded generator
and 2,000 from hypothesis in the default run, 100,000 from hypothesis in the slow one. Parse time on 64 KB of such
text is measured in benchmarks/bench_parser.py, not here.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finemem_lib.core import safe_json
from finemem_lib.core.memory import Operation, OpKind
from finemem_lib.core.ops import MAX_CALLS, parse_operations, render_tool_calls

STYLES = ("content", "extractive")


# ---------------------------------------------------------------------------- the reproducers
@pytest.mark.parametrize(
    ("text", "style"),
    [
        ("[" * 600 + "]" * 600, "content"),  # was RecursionError
        ("{" * 600 + "}" * 600, "content"),
        ('{"name": "memory_insert", "arguments": {"sentence": ' + "9" * 5000 + "}}", "extractive"),  # was ValueError
        ("<tool_call>" + "[" * 5000 + "</tool_call>", "content"),
        ("[" * 16_000, "content"),  # was quadratic: ~3 s
        ('{"a": ' * 3000, "content"),
    ],
)
def test_hostile_completions_parse_without_raising(text, style):
    parsed = parse_operations(text, style)
    assert parsed.n_valid == 0 and parsed.n_emitted <= 1


def test_a_non_ascii_digit_sentence_is_an_invalid_call_not_a_crash():
    text = '{"name": "memory_insert", "arguments": {"sentence": "²"}}'
    parsed = parse_operations(text, "extractive")  # was ValueError (isdigit but not int)
    assert parsed.n_emitted == 1 and parsed.n_valid == 0 and "integer 'sentence'" in parsed.calls[0].error
    assert parse_operations('{"name": "insert", "arguments": {"sentence": " 12 "}}', "extractive").operations == [
        Operation(OpKind.INSERT, sentence=12)
    ]


@pytest.mark.parametrize(
    "call",
    [
        {"name": "memory_insert", "arguments": {"content": "x\ud800"}},
        {"name": "memory_update", "arguments": {"memory_id": "ab12", "new_content": "\udfffy"}},
        {"name": "memory_delete", "arguments": {"memory_id": "a\ud83d"}},
    ],
)
def test_lone_surrogates_make_the_call_invalid(call):
    for text in (json.dumps(call, ensure_ascii=False), json.dumps(call), render_like_qwen(call)):
        parsed = parse_operations(text)  # was: accepted as content, crashing the tokenizer and CSV writers later
        assert parsed.n_emitted == 1 and parsed.n_valid == 0 and "lone surrogate" in parsed.calls[0].error
        parsed.calls[0].raw.encode("utf-8")  # what is kept of the call can be written anywhere


def render_like_qwen(call):
    return "<tool_call>\n" + json.dumps(call, ensure_ascii=False) + "\n</tool_call>"


def test_numbers_within_limits_still_parse():
    parsed = parse_operations('{"name": "memory_insert", "arguments": {"sentence": 3.0}}', "extractive")
    assert parsed.operations == [Operation(OpKind.INSERT, sentence=3)]


def test_complete_calls_inside_a_broken_value_are_kept():
    ok = '{"name": "memory_insert", "arguments": {"content": "Ada is 30."}}'
    cut = "[" + ok + ", " + ok.replace("30", "31") + ', {"name": "memory_upd'
    parsed = parse_operations("Calls: " + cut)
    assert [op.content for op in parsed.operations] == ["Ada is 30.", "Ada is 31."]
    missing_comma = "[" + ok + " " + ok.replace("Ada", "Bo") + "]"
    assert [op.content for op in parse_operations(missing_comma).operations] == ["Ada is 30.", "Bo is 30."]


def test_tool_call_blocks_fences_and_unclosed_blocks():
    call = '{"name": "memory_skip", "arguments": {}}'
    text = f"<tool_call>```json\n{call}\n```</tool_call> then <tool_call>{call}"
    assert parse_operations(text).operations == [Operation(OpKind.SKIP)] * 2
    assert "malformed JSON" in parse_operations("<tool_call>```" + " " * 5000).calls[0].error


def test_the_number_of_calls_is_capped():
    text = render_tool_calls([Operation(OpKind.SKIP)] * (MAX_CALLS + 50))
    parsed = parse_operations(text)
    assert parsed.n_emitted == MAX_CALLS + 1 and parsed.n_valid == MAX_CALLS
    assert "more than" in parsed.calls[-1].error


# ---------------------------------------------------------------------------- the bounded JSON reader
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.sampled_from([None, 0, 2]))
def test_safe_json_reads_what_json_writes(value, indent):
    text = json.dumps(value, indent=indent)
    assert safe_json.loads(text) == json.loads(text)
    assert safe_json.find_values(f"free text {text} more") == ([value] if isinstance(value, dict | list) else [])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 40 + "]" * 40, "nesting deeper than 32"),
        ("[" + "1" * 65 + "]", "number longer than 64"),
        ('{"a" 1}', "Expecting ':'"),
        ("[1,]", "Expecting value"),
        ('["x', "Unterminated string"),
        ("[1] [2]", "Extra data"),
        ("", "Expecting value"),
    ],
)
def test_safe_json_errors_say_why_and_where(text, reason):
    with pytest.raises(safe_json.JSONScanError, match=reason) as error:
        safe_json.loads(text)
    assert 0 <= error.value.pos <= len(text)


# ---------------------------------------------------------------------------- the fuzz test
CALLS = [
    '{"name": "memory_insert", "arguments": {"content": "Ada is 30."}}',
    '{"name": "memory_update", "arguments": {"memory_id": "ab12", "new_content": "Ada is 31."}}',
    '{"name": "memory_insert", "arguments": {"sentence": 2}}',
    '{"function": {"name": "memory_delete", "arguments": "{\\"memory_id\\": \\"m1\\"}"}}',
    '{"tool_calls": [{"function": {"name": "memory_skip"}}]}',
]
UNICODE_DIGITS = "²³¹٣۴߅१১੨૩୪௫౬೭൮๙໑༢၃႔០᠑᥆᧑᪒᭓᮴᱅᱖꘠꣐꤁꧐꩑꯲０１"
SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)

fragment = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["[", "]", "{", "}", ",", ":", '"', "\\", " ", "\n", "null", "NaN", "-", "."]),
    st.integers(1, 2_000).map(lambda k: "[" * k),
    st.integers(1, 2_000).map(lambda k: "{" * k),
    st.integers(1, 2_000).map(lambda k: "]" * k),
    st.integers(1, 300).map(lambda k: '{"a": [' * k),
    st.integers(4_000, 6_000).map(lambda k: "9" * k),  # past Python's int-string limit
    st.text(UNICODE_DIGITS, min_size=1, max_size=4).map(lambda d: f'"{d}"'),
    SURROGATES,
    SURROGATES.map(lambda s: f'"x{s}"'),
    st.integers(0xD800, 0xDFFF).map(lambda c: f'"\\u{c:04x}"'),  # an escaped lone surrogate
    st.sampled_from(CALLS),
    st.sampled_from(["<tool_call>", "</tool_call>", "```json", "```", "<think>", "</think>"]),
)


@st.composite
def completions(draw):
    """A completion: hostile fragments glued together, sometimes inside a valid call's arguments."""
    text = "".join(draw(st.lists(fragment, max_size=8)))
    shape = draw(st.integers(0, 3))
    if shape == 1:
        text = '{"name": "memory_insert", "arguments": {"content": ' + text + ', "sentence": ' + text + "}}"
    elif shape == 2:
        text = "<tool_call>" + text + "</tool_call>"
    return text


def assert_well_formed(text: str, style: str) -> None:
    parsed = parse_operations(text, style)
    assert 0 <= parsed.n_valid <= parsed.n_emitted <= MAX_CALLS + 1
    for call in parsed.calls:
        assert call.valid == (call.error == "")
        call.raw.encode("utf-8")  # no lone surrogate leaks into what is kept
        call.error.encode("utf-8")
    for op in parsed.operations:
        assert isinstance(op.kind, OpKind)
        if op.content is not None:
            op.content.encode("utf-8")
        if op.sentence is not None:
            assert type(op.sentence) is int


def run_fuzz(batches: int, batch_size: int) -> int:
    """Parse ``batches * batch_size`` completions generated by hypothesis; returns how many were parsed."""
    parsed = 0

    @settings(max_examples=batches, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(completions(), st.sampled_from(STYLES)), min_size=batch_size, max_size=batch_size))
    def batch(cases):
        nonlocal parsed
        for text, style in cases:
            assert_well_formed(text, style)
            parsed += 1

    batch()
    return parsed


def random_fragment(rng: random.Random) -> str:
    """One fragment of the same classes as ``fragment``, drawn by a seeded generator, shorter runs (fast)."""
    pick = rng.randrange(13)
    if pick == 0:
        return "".join(chr(rng.choice((rng.randrange(32, 127), rng.randrange(0x80, 0x3000)))) for _ in range(20))
    if pick == 1:
        return rng.choice(["[", "]", "{", "}", ",", ":", '"', "\\", " ", "\n", "null", "NaN", "-", "."])
    if pick in (2, 3, 4):
        return "[{]"[pick - 2] * rng.randint(1, 200)  # past the depth cap of 32
    if pick == 5:
        return '{"a": [' * rng.randint(1, 40)
    if pick == 6:
        return "9" * rng.randint(4_300, 4_400)  # past Python's int-string limit
    if pick == 7:
        return '"' + "".join(rng.choice(UNICODE_DIGITS) for _ in range(rng.randint(1, 4))) + '"'
    if pick == 8:
        return chr(rng.randint(0xD800, 0xDFFF))
    if pick == 9:
        return f'"x{chr(rng.randint(0xD800, 0xDFFF))}"'
    if pick == 10:
        return f'"\\u{rng.randint(0xD800, 0xDFFF):04x}"'
    if pick == 11:
        return rng.choice(CALLS)
    return rng.choice(["<tool_call>", "</tool_call>", "```json", "```", "<think>", "</think>"])


def random_completion(rng: random.Random) -> str:
    text = "".join(random_fragment(rng) for _ in range(rng.randint(0, 8)))
    shape = rng.randrange(4)
    if shape == 1:
        return '{"name": "memory_insert", "arguments": {"content": ' + text + ', "sentence": ' + text + "}}"
    if shape == 2:
        return "<tool_call>" + text + "</tool_call>"
    return text


def test_fuzz_20000_seeded_hostile_completions_parse_with_zero_exceptions():
    rng = random.Random(13)
    parsed = 0
    for _ in range(20_000):
        assert_well_formed(random_completion(rng), STYLES[parsed % 2])
        parsed += 1
    assert parsed == 20_000


def test_fuzz_hypothesis_hostile_completions_parse_with_zero_exceptions():
    assert run_fuzz(batches=50, batch_size=40) >= 2_000


@pytest.mark.slow
def test_fuzz_100000_hypothesis_hostile_completions_parse_with_zero_exceptions():
    assert run_fuzz(batches=1_000, batch_size=100) >= 100_000
