"""Memory-operation tool schemas and a tolerant parser of model output.

Two op styles share one schema switch:

- ``content``: INSERT/UPDATE carry free text, as in the paper, for real LLMs.
- ``extractive``: the chunk is shown as numbered sentences and INSERT/UPDATE name a sentence
  number that the memory resolves to its text (for small models that cannot copy verbatim).

The parser accepts Qwen/Hermes ``<tool_call>{...}</tool_call>`` blocks and bare JSON objects or
lists (optionally in code fences, optionally OpenAI-style ``{"function": {...}}`` wrappers or
``arguments`` given as a JSON string). It never raises on model text; each call it finds is
reported valid or invalid with a reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from finemem_lib.memory import Operation, OpKind, OpResult

STYLES = ("content", "extractive")

TOOL_NAMES = {
    OpKind.INSERT: "memory_insert",
    OpKind.UPDATE: "memory_update",
    OpKind.DELETE: "memory_delete",
    OpKind.SKIP: "memory_skip",
}

_NAME_ALIASES = {
    "insert": OpKind.INSERT,
    "new_memory_insert": OpKind.INSERT,
    "update": OpKind.UPDATE,
    "delete": OpKind.DELETE,
    "skip": OpKind.SKIP,
    "noop": OpKind.SKIP,
} | {name: kind for kind, name in TOOL_NAMES.items()}


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


def tool_schemas(style: str = "content") -> list[dict[str, Any]]:
    """The four memory tools in OpenAI tools format (usable with ``apply_chat_template(tools=...)``)."""
    _check_style(style)
    memory_id = {"type": "string", "description": "Id of an existing memory item, as shown in memory."}
    if style == "content":
        insert_props = {"content": {"type": "string", "description": "The fact to store, self-contained."}}
        update_props = {"memory_id": memory_id, "new_content": {"type": "string", "description": "New text."}}
        insert_req, update_req = ["content"], ["memory_id", "new_content"]
    else:
        sentence = {"type": "integer", "description": "Number of a sentence of the chunk (1-based)."}
        insert_props = {"sentence": sentence}
        update_props = {"memory_id": memory_id, "sentence": sentence}
        insert_req, update_req = ["sentence"], ["memory_id", "sentence"]
    return [
        _tool(TOOL_NAMES[OpKind.INSERT], "Store new information in memory.", insert_props, insert_req),
        _tool(
            TOOL_NAMES[OpKind.UPDATE],
            "Replace the content of an existing memory item with newer information.",
            update_props,
            update_req,
        ),
        _tool(TOOL_NAMES[OpKind.DELETE], "Remove a memory item.", {"memory_id": memory_id}, ["memory_id"]),
        _tool(TOOL_NAMES[OpKind.SKIP], "Store nothing from this chunk.", {}, []),
    ]


# ---------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class ParsedCall:
    """One call found in model output: the operation if schema-valid, else the reason it is not."""

    raw: str
    operation: Operation | None
    error: str = ""

    @property
    def valid(self) -> bool:
        return self.operation is not None


@dataclass(frozen=True)
class ParseResult:
    """All calls found in one completion."""

    calls: list[ParsedCall] = field(default_factory=list)

    @property
    def operations(self) -> list[Operation]:
        """The schema-valid operations, in order."""
        return [c.operation for c in self.calls if c.operation is not None]

    @property
    def n_emitted(self) -> int:
        return len(self.calls)

    @property
    def n_valid(self) -> int:
        return sum(c.valid for c in self.calls)


_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_CODE_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_operations(text: str, style: str = "content") -> ParseResult:
    """Parse a completion into memory operations; never raises on model text."""
    _check_style(style)
    if not isinstance(text, str):
        return ParseResult([ParsedCall(repr(text)[:200], None, "completion is not a string")])
    blocks = _TOOL_CALL_BLOCK.findall(text) if "<tool_call>" in text else []
    calls: list[ParsedCall] = []
    if blocks:
        for block in blocks:
            block = _strip_fence(block.strip())
            try:
                value = json.loads(block)
            except (json.JSONDecodeError, RecursionError):
                calls.append(ParsedCall(block[:500], None, "malformed JSON in <tool_call> block"))
                continue
            calls.extend(_calls_from_value(value, style))
    else:
        for value in _bare_json_values(text):
            calls.extend(_calls_from_value(value, style))
    return ParseResult(calls)


def _strip_fence(text: str) -> str:
    match = _CODE_FENCE.search(text)
    return match.group(1).strip() if match else text


def _bare_json_values(text: str) -> list[Any]:
    """Top-level JSON objects or lists embedded in free text, left to right."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos = 0
    while True:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            return values
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            pos = start + 1
            continue
        if isinstance(value, dict | list):
            values.append(value)
        pos = end


def _calls_from_value(value: Any, style: str) -> list[ParsedCall]:
    if isinstance(value, list):
        return [c for v in value for c in _calls_from_value(v, style)]
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        return _calls_from_value(value["tool_calls"], style)
    raw = _safe_dump(value)
    if not isinstance(value, dict):
        return [ParsedCall(raw, None, "a tool call must be a JSON object")]
    if isinstance(value.get("function"), dict):
        value = value["function"]
    name, args = value.get("name"), value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except (json.JSONDecodeError, RecursionError):
            return [ParsedCall(raw, None, "arguments string is not valid JSON")]
    if not isinstance(name, str):
        return [ParsedCall(raw, None, "missing tool name")]
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return [ParsedCall(raw, None, "arguments must be a JSON object")]
    op, error = _operation_from(name, args, style)
    return [ParsedCall(raw, op, error)]


def _safe_dump(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)[:500]
    except (TypeError, ValueError, RecursionError):
        return repr(value)[:500]


def _as_sentence_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _as_id(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip().strip("[]")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _operation_from(name: str, args: dict[str, Any], style: str) -> tuple[Operation | None, str]:
    kind = _NAME_ALIASES.get(name.strip().lower())
    if kind is None:
        return None, f"unknown tool {name!r}"
    if kind is OpKind.SKIP:
        return Operation(OpKind.SKIP), ""
    item_id = _as_id(args.get("memory_id", args.get("id")))
    if kind is OpKind.DELETE:
        return (Operation(kind, item_id=item_id), "") if item_id else (None, "delete needs memory_id")
    if kind is OpKind.UPDATE and not item_id:
        return None, "update needs memory_id"
    if style == "content":
        key = "content" if kind is OpKind.INSERT else "new_content"
        content = args.get(key, args.get("content"))
        if not isinstance(content, str) or not content.strip():
            return None, f"{name} needs a non-empty string {key!r}"
        return Operation(kind, content=content, item_id=item_id), ""
    sentence = _as_sentence_number(args.get("sentence"))
    if sentence is None:
        return None, f"{name} needs an integer 'sentence'"
    return Operation(kind, sentence=sentence, item_id=item_id), ""


DUPLICATE_SKIP_REASON = "duplicate content: insert skipped"
"""The :class:`~finemem_lib.memory.OpResult` reason of an INSERT whose content was already stored."""


def format_score(parsed: ParseResult, results: Sequence[OpResult], count_duplicates: bool = False) -> float:
    """r_fmt: successful operations / operations emitted (0 when nothing parses).

    ``results`` are the outcomes of applying ``parsed.operations`` in order. As in Mem-alpha's
    ``fc_success`` (``memalpha/llm_agent/generation.py``: a call counts when it "executed
    successfully" and its status is not ``skipped``), an INSERT that memory skipped as a duplicate is
    not a success; ``count_duplicates=True`` counts it (it did execute, as a no-op).
    """
    if parsed.n_emitted == 0:
        return 0.0
    if len(results) != parsed.n_valid:
        raise ValueError(f"results has {len(results)} entries but parsed has {parsed.n_valid} valid ops")
    ok = sum(r.ok and (count_duplicates or r.reason != DUPLICATE_SKIP_REASON) for r in results)
    return ok / parsed.n_emitted


# ---------------------------------------------------------------------------- rendering
def operation_to_call(op: Operation, style: str = "content") -> dict[str, Any]:
    """The ``{"name", "arguments"}`` dict for an operation (the inverse of parsing)."""
    _check_style(style)
    args: dict[str, Any] = {}
    if op.kind in (OpKind.UPDATE, OpKind.DELETE):
        args["memory_id"] = op.item_id
    if op.kind in (OpKind.INSERT, OpKind.UPDATE):
        if style == "content":
            args["content" if op.kind is OpKind.INSERT else "new_content"] = op.content
        else:
            args["sentence"] = op.sentence
    return {"name": TOOL_NAMES[op.kind], "arguments": args}


def render_tool_calls(ops: Sequence[Operation], style: str = "content") -> str:
    """Operations as Qwen/Hermes ``<tool_call>`` blocks, one per line group."""
    blocks = [
        "<tool_call>\n" + json.dumps(operation_to_call(op, style), ensure_ascii=False) + "\n</tool_call>" for op in ops
    ]
    return "\n".join(blocks)


def render_numbered_sentences(sentences: Sequence[str]) -> str:
    """A chunk in the extractive style: one ``N. sentence`` line per sentence (1-based)."""
    return "\n".join(f"{i}. {s.strip()}" for i, s in enumerate(sentences, start=1))
