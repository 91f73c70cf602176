"""Tool schemas and the tolerant parser."""

import json

import pytest

from finemem_lib.core.memory import Memory, Operation, OpKind, OpResult
from finemem_lib.core.ops import (
    format_score,
    operation_to_call,
    parse_operations,
    render_numbered_sentences,
    render_tool_calls,
    tool_schemas,
)


@pytest.mark.parametrize("style", ["content", "extractive"])
def test_schemas_are_openai_tools(style):
    tools = tool_schemas(style)
    names = [t["function"]["name"] for t in tools]
    assert names == ["memory_insert", "memory_update", "memory_delete", "memory_skip"]
    for tool in tools:
        assert tool["type"] == "function"
        params = tool["function"]["parameters"]
        assert params["type"] == "object" and set(params["required"]) <= set(params["properties"])
    insert_props = tools[0]["function"]["parameters"]["properties"]
    assert ("content" in insert_props) == (style == "content")
    assert ("sentence" in insert_props) == (style == "extractive")


def test_schemas_render_through_a_chat_template():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tok.chat_template = (
        "{% for t in tools %}{{ t.function.name }};{% endfor %}{% for m in messages %}{{ m.content }}{% endfor %}"
    )
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tools=tool_schemas(), tokenize=False)
    assert text.startswith("memory_insert;memory_update;memory_delete;memory_skip;")


def test_parse_qwen_tool_call_blocks():
    text = (
        "I will store this.\n<tool_call>\n"
        '{"name": "memory_insert", "arguments": {"content": "Alice is 30."}}\n</tool_call>\n'
        '<tool_call>{"name": "memory_update", "arguments": "{\\"memory_id\\": \\"ab12\\", '
        '\\"new_content\\": \\"Alice is 31.\\"}"}</tool_call>'
        "<tool_call>{not json</tool_call>"
    )
    parsed = parse_operations(text)
    assert parsed.n_emitted == 3 and parsed.n_valid == 2
    assert parsed.operations[0] == Operation(OpKind.INSERT, content="Alice is 30.")
    assert parsed.operations[1] == Operation(OpKind.UPDATE, content="Alice is 31.", item_id="ab12")
    assert "malformed JSON" in parsed.calls[2].error


def test_parse_bare_json_list_object_and_fences():
    bare = parse_operations('[{"name": "memory_skip", "arguments": {}}, {"name": "memory_delete"}]')
    assert bare.n_emitted == 2 and bare.n_valid == 1 and "memory_id" in bare.calls[1].error
    fenced = parse_operations(
        '```json\n{"function": {"name": "insert", "arguments": {"sentence": "2"}}}\n```', style="extractive"
    )
    assert fenced.operations == [Operation(OpKind.INSERT, sentence=2)]
    wrapped = parse_operations('{"tool_calls": [{"type": "function", "function": {"name": "memory_skip"}}]}')
    assert wrapped.operations == [Operation(OpKind.SKIP)]


@pytest.mark.parametrize(
    ("text", "style", "error"),
    [
        ('{"name": "memory_fly", "arguments": {}}', "content", "unknown tool"),
        ('{"name": "memory_insert", "arguments": {"content": ""}}', "content", "non-empty"),
        ('{"name": "memory_insert", "arguments": {"content": "x"}}', "extractive", "integer 'sentence'"),
        ('{"name": "memory_update", "arguments": {"sentence": 2}}', "extractive", "memory_id"),
        ('{"arguments": {}}', "content", "missing tool name"),
        ('{"name": "memory_insert", "arguments": [1]}', "content", "JSON object"),
        ("[1, 2]", "content", "must be a JSON object"),
    ],
)
def test_invalid_calls_are_reported_not_raised(text, style, error):
    parsed = parse_operations(text, style)
    assert parsed.n_emitted >= 1 and parsed.n_valid == 0
    assert error in parsed.calls[0].error


def test_no_calls_gives_zero_format_score():
    for text in ["", "I think nothing matters.", "{broken", "<tool_call>", None]:
        parsed = parse_operations(text)  # type: ignore[arg-type]
        assert parsed.n_valid == 0
        assert format_score(parsed, []) == 0.0


def test_format_score_counts_valid_executed_over_emitted():
    text = (
        render_tool_calls([Operation(OpKind.INSERT, content="a"), Operation(OpKind.DELETE, item_id="zzzz")])
        + '<tool_call>{"name": "memory_update"}</tool_call>'
    )
    parsed = parse_operations(text)
    results = Memory().apply_all(parsed.operations, 0)
    assert [r.ok for r in results] == [True, False]
    assert format_score(parsed, results) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        format_score(parsed, [OpResult(True)])


@pytest.mark.parametrize("style", ["content", "extractive"])
def test_render_then_parse_roundtrip(style):
    if style == "content":
        ops = [
            Operation(OpKind.INSERT, content='Ünïcode fact "quoted".'),
            Operation(OpKind.UPDATE, content="new", item_id="00af"),
        ]
    else:
        ops = [Operation(OpKind.INSERT, sentence=3), Operation(OpKind.UPDATE, sentence=1, item_id="m2")]
    ops += [Operation(OpKind.DELETE, item_id="m9"), Operation(OpKind.SKIP)]
    assert parse_operations(render_tool_calls(ops, style), style).operations == ops
    assert json.loads(json.dumps(operation_to_call(ops[0], style)))["name"] == "memory_insert"


def test_numbered_sentences():
    assert render_numbered_sentences(["A b.", " C d. "]) == "1. A b.\n2. C d."


def test_unknown_style_is_a_clear_error():
    with pytest.raises(ValueError, match="style"):
        tool_schemas("xml")
