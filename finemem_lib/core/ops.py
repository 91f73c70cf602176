"""Memory-operation tool schemas and a tolerant parser of model output.

Three op styles share one schema switch:

- ``content``: INSERT/UPDATE carry free text, as in the paper, for real LLMs.
- ``extractive``: the chunk is shown as numbered sentences and INSERT/UPDATE name a sentence
  number that the memory resolves to its text (for small models that cannot copy verbatim).
- ``review``: numbered sentences as in ``extractive``, answered by one line per sentence that restates
  it and then decides (``N. sentence => keep``; :mod:`finemem_lib.core.review`), no tool calls.

The parser accepts Qwen/Hermes ``<tool_call>{...}</tool_call>`` blocks and bare JSON objects or
lists (optionally in code fences, optionally OpenAI-style ``{"function": {...}}`` wrappers or
``arguments`` given as a JSON string). It never raises on model text; each call it finds is
reported valid or invalid with a reason, and it reads JSON with :mod:`finemem_lib.core.safe_json`, so the
time is linear in the text's length whatever the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from finemem_lib.core import safe_json
from finemem_lib.core.memory import Operation, OpKind, OpResult
from finemem_lib.core.review import parse_review_line, render_review, review_lines

STYLES = ("content", "extractive", "review")
NUMBERED_STYLES = ("extractive", "review")
"""Styles that show the chunk as numbered sentences and name a sentence by its number."""

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
    """The four memory tools in OpenAI tools format (usable with ``apply_chat_template(tools=...)``);
    none in the ``review`` style, whose instructions give its line format."""
    _check_style(style)
    if style == "review":
        return []
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


_TOOL_CALL_OPEN, _TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
_FENCE = "```"
_SURROGATE = re.compile("[\ud800-\udfff]")
_SENTENCE_NUMBER = re.compile(r"[0-9]{1,9}")
MAX_CALLS = 512
"""Calls read from one completion at most; more are reported as one invalid call."""


def parse_operations(text: str, style: str = "content") -> ParseResult:
    """Parse a completion into memory operations; never raises on model text, linear time.

    JSON is read by :mod:`finemem_lib.core.safe_json` (nesting and number length capped, spans checked
    before decoding), so no completion can raise or take quadratic time; a call with text that is not valid Unicode (a
    lone surrogate) is invalid, as is every call past :data:`MAX_CALLS`.
    """
    _check_style(style)
    if not isinstance(text, str):
        return ParseResult([ParsedCall(_safe_raw(repr(text)), None, "completion is not a string")])
    if style == "review":
        return _parse_review(text)
    calls: list[ParsedCall] = []
    if _TOOL_CALL_OPEN in text:
        for block in _tool_call_blocks(text):
            block = _strip_fence(block.strip())
            try:
                value = safe_json.loads(block)
            except safe_json.JSONScanError as exc:
                calls.append(ParsedCall(_safe_raw(block), None, f"malformed JSON in <tool_call> block ({exc})"))
            else:
                calls.extend(_calls_from_value(value, style))
            if len(calls) > MAX_CALLS:
                break
    else:
        for value in safe_json.find_values(text, max_values=MAX_CALLS + 1):
            calls.extend(_calls_from_value(value, style))
            if len(calls) > MAX_CALLS:
                break
    if len(calls) > MAX_CALLS:
        calls = [*calls[:MAX_CALLS], ParsedCall("", None, f"more than {MAX_CALLS} calls in one completion")]
    return ParseResult(calls)


def _parse_review(text: str) -> ParseResult:
    """A review completion: one call per non-empty line (a line that is not a decision is an invalid call)."""
    calls = []
    for line in review_lines(text)[: MAX_CALLS + 1]:
        op, error = parse_review_line(line)
        if op is not None and _has_surrogate(line):
            op, error = None, "review line is not valid Unicode (a lone surrogate)"
        calls.append(ParsedCall(_safe_raw(line), op, error))
    if len(calls) > MAX_CALLS:
        calls = [*calls[:MAX_CALLS], ParsedCall("", None, f"more than {MAX_CALLS} calls in one completion")]
    return ParseResult(calls)


def _tool_call_blocks(text: str) -> list[str]:
    """The bodies of ``<tool_call>...</tool_call>`` blocks; an unclosed last block runs to the end."""
    blocks, pos = [], 0
    while (start := text.find(_TOOL_CALL_OPEN, pos)) >= 0:
        body_start = start + len(_TOOL_CALL_OPEN)
        end = text.find(_TOOL_CALL_CLOSE, body_start)
        if end < 0:
            blocks.append(text[body_start:])
            break
        blocks.append(text[body_start:end])
        pos = end + len(_TOOL_CALL_CLOSE)
    return blocks


def _strip_fence(text: str) -> str:
    """The body of the first complete code fence (an optional ``json`` tag dropped), else the text."""
    start = text.find(_FENCE)
    if start < 0:
        return text
    body_start = start + len(_FENCE)
    end = text.find(_FENCE, body_start)
    if end < 0:
        return text
    body = text[body_start:end]
    if body.startswith("json"):
        body = body[4:]
    return body.strip()


def _calls_from_value(value: Any, style: str) -> list[ParsedCall]:
    """Calls in a parsed JSON value: lists and ``tool_calls`` wrappers are flattened (iteratively)."""
    calls: list[ParsedCall] = []
    todo = [value]
    while todo and len(calls) <= MAX_CALLS:
        value = todo.pop()
        if isinstance(value, list):
            todo.extend(reversed(value))
        elif isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
            todo.extend(reversed(value["tool_calls"]))
        else:
            calls.append(_call_from(value, style))
    return calls


def _call_from(value: Any, style: str) -> ParsedCall:
    raw = _safe_dump(value)
    if not isinstance(value, dict):
        return ParsedCall(raw, None, "a tool call must be a JSON object")
    if isinstance(value.get("function"), dict):
        value = value["function"]
    name, args = value.get("name"), value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = safe_json.loads(args) if args.strip() else {}
        except safe_json.JSONScanError:
            return ParsedCall(raw, None, "arguments string is not valid JSON")
    if not isinstance(name, str):
        return ParsedCall(raw, None, "missing tool name")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return ParsedCall(raw, None, "arguments must be a JSON object")
    op, error = _operation_from(name, args, style)
    return ParsedCall(raw, op, error)


def _safe_raw(text: str, limit: int = 500) -> str:
    """At most ``limit`` characters of ``text``, lone surrogates escaped (so logs and CSV files can hold it)."""
    text = text[:limit]
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _SURROGATE.search(text) else text


def _safe_dump(value: Any) -> str:
    try:
        return _safe_raw(json.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError):
        return _safe_raw(repr(value))


def _as_sentence_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _SENTENCE_NUMBER.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _as_id(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip().strip("[]")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _has_surrogate(*texts: str | None) -> bool:
    return any(t is not None and _SURROGATE.search(t) is not None for t in texts)


def _operation_from(name: str, args: dict[str, Any], style: str) -> tuple[Operation | None, str]:
    kind = _NAME_ALIASES.get(name.strip().lower())
    if kind is None:
        return None, f"unknown tool {_safe_raw(name, 80)!r}"
    if kind is OpKind.SKIP:
        return Operation(OpKind.SKIP), ""
    item_id = _as_id(args.get("memory_id", args.get("id")))
    if _has_surrogate(item_id):
        return None, f"{name} memory_id is not valid Unicode (a lone surrogate)"
    if kind is OpKind.DELETE:
        return (Operation(kind, item_id=item_id), "") if item_id else (None, "delete needs memory_id")
    if kind is OpKind.UPDATE and not item_id:
        return None, "update needs memory_id"
    if style == "content":
        key = "content" if kind is OpKind.INSERT else "new_content"
        content = args.get(key, args.get("content"))
        if not isinstance(content, str) or not content.strip():
            return None, f"{name} needs a non-empty string {key!r}"
        if _has_surrogate(content):
            return None, f"{name} {key!r} is not valid Unicode (a lone surrogate)"
        return Operation(kind, content=content, item_id=item_id), ""
    sentence = _as_sentence_number(args.get("sentence"))
    if sentence is None:
        return None, f"{name} needs an integer 'sentence'"
    return Operation(kind, sentence=sentence, item_id=item_id), ""


DUPLICATE_SKIP_REASON = "duplicate content: insert skipped"
"""The :class:`~finemem_lib.core.memory.OpResult` reason of an INSERT whose content was already stored."""
DUPLICATE_PREFIX = "duplicate content"
"""Every duplicate outcome starts so: a skipped INSERT, and an UPDATE merged into the item that holds its text."""


def format_score(parsed: ParseResult, results: Sequence[OpResult], count_duplicates: bool = False) -> float:
    """r_fmt: successful operations / operations emitted (0 when nothing parses).

    ``results`` are the outcomes of applying ``parsed.operations`` in order. As in Mem-alpha's
    ``fc_success`` (``memalpha/llm_agent/generation.py``: a call counts when it "executed
    successfully" and its status is not ``skipped``), an INSERT that memory skipped as a duplicate is
    not a success, and neither is an UPDATE whose new text was already stored (memory merges it into the
    item holding that text, exactly as it skips the INSERT: both wrote nothing new);
    ``count_duplicates=True`` counts both (they did execute).
    """
    if parsed.n_emitted == 0:
        return 0.0
    if len(results) != parsed.n_valid:
        raise ValueError(f"results has {len(results)} entries but parsed has {parsed.n_valid} valid ops")
    ok = sum(r.ok and (count_duplicates or not r.reason.startswith(DUPLICATE_PREFIX)) for r in results)
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


def render_tool_calls(
    ops: Sequence[Operation], style: str = "content", sentences: Sequence[str] = (), hints: Sequence[Any] | None = None
) -> str:
    """Operations as Qwen/Hermes ``<tool_call>`` blocks, one per line group (``review``: the chunk's
    ``sentences`` reviewed with their ``hints``, :func:`finemem_lib.core.review.render_review`)."""
    if style == "review":
        return render_review(ops, sentences, hints)
    blocks = [
        "<tool_call>\n" + json.dumps(operation_to_call(op, style), ensure_ascii=False) + "\n</tool_call>" for op in ops
    ]
    return "\n".join(blocks)


def render_numbered_sentences(sentences: Sequence[str]) -> str:
    """A chunk in the extractive style: one ``N. sentence`` line per sentence (1-based)."""
    return "\n".join(f"{i}. {s.strip()}" for i, s in enumerate(sentences, start=1))
