"""A bounded JSON reader for untrusted text (model replies, dataset cells): linear time, one error type.

:func:`loads` reads one JSON document; :func:`find_values` finds the JSON objects and lists embedded
in free text, left to right. Python's :func:`json.loads` alone is not safe on such text: deep
nesting raises ``RecursionError``, an integer of more than 4,300 digits raises a plain
``ValueError``, and retrying it at every bracket of a broken text takes quadratic time. Here the
standard library's C decoder still does the reading, but only of spans whose nesting depth was first
checked by an iterative scan (so it never recurses deeply), with number literals capped in length,
and every failure becomes :class:`JSONScanError`. Escapes, ``NaN`` and ``Infinity`` behave as in
:mod:`json`; duplicate keys keep the last value.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting of objects/lists accepted (a tool call needs about 4)."""
MAX_NUMBER_CHARS = 64
"""Longest number literal accepted, in characters."""

_OPENERS = re.compile(r"[\[{]")
# inside a value: skip text and complete strings, then an opener run, a closer, or a quote whose string
# never closes (unambiguous, so a failed match backtracks at most linearly, and only at the end)
_NEXT_TOKEN = re.compile(
    r'[^"\[\]{}]*(?:"[^"\\]*(?:\\.[^"\\]*)*"[^"\[\]{}]*)*'
    r'(?:(?P<open>[\[{](?:[ \t\n\r]*[\[{])*)|(?P<close>[\]}])|(?P<lone>"))',
    re.DOTALL,
)
_CLOSER_OF = {"[": "]", "{": "}"}


class JSONScanError(ValueError):
    """Text that is not (bounded) JSON; ``pos`` is where reading stopped."""

    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(f"{reason} at char {pos}")
        self.reason, self.pos = reason, pos


class _TooLong(ValueError):
    """Internal: a number literal past the length cap."""


def _decoder(max_number_chars: int) -> json.JSONDecoder:
    def bounded(convert: Any) -> Any:
        def parse(token: str) -> Any:
            if len(token) > max_number_chars:
                raise _TooLong(f"number longer than {max_number_chars} characters")
            return convert(token)

        return parse

    return json.JSONDecoder(parse_int=bounded(int), parse_float=bounded(float))


_DECODERS: dict[int, json.JSONDecoder] = {}


def _decoder_for(max_number_chars: int) -> json.JSONDecoder:
    if max_number_chars not in _DECODERS:
        _DECODERS[max_number_chars] = _decoder(max_number_chars)
    return _DECODERS[max_number_chars]


def loads(text: str, max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS) -> Any:
    """One JSON document (whitespace around it allowed); raises only :class:`JSONScanError`."""
    if not isinstance(text, str):
        raise JSONScanError(f"expected a string, got {type(text).__name__}", 0)
    deepest, where = _deepest(text, max_depth)
    if deepest > max_depth:
        raise JSONScanError(f"nesting deeper than {max_depth}", where)
    try:
        return _decoder_for(max_number_chars).decode(text)
    except _TooLong as exc:
        raise JSONScanError(str(exc), 0) from None
    except json.JSONDecodeError as exc:
        raise JSONScanError(exc.msg, exc.pos) from None
    except (ValueError, RecursionError) as exc:  # not expected after the checks; kept as a guarantee
        raise JSONScanError(f"{type(exc).__name__}: {exc}"[:200], 0) from None


def _deepest(text: str, limit: int) -> tuple[int, int]:
    """The deepest bracket nesting in ``text`` (strings skipped) and where it first passed ``limit``."""
    depth = deepest = 0
    where = -1
    next_token = _NEXT_TOKEN.match
    pos = 0
    while (match := next_token(text, pos)) is not None:
        kind, pos = match.lastgroup, match.end()
        if kind == "open":
            lo = match.start(kind)
            depth += 1 if pos - lo == 1 else text.count("[", lo, pos) + text.count("{", lo, pos)
            if depth > deepest:
                deepest = depth
                if depth > limit and where < 0:
                    where = lo
                    break
        elif kind == "close":
            depth = max(0, depth - 1)
        elif kind == "lone":
            break
    return deepest, where


def find_values(
    text: str,
    max_depth: int = MAX_DEPTH,
    max_number_chars: int = MAX_NUMBER_CHARS,
    max_values: int | None = None,
) -> list[Any]:
    """The JSON objects and lists embedded in free text, left to right; never raises.

    One left-to-right scan matches brackets (outside strings) and records each bracketed span. A
    span whose brackets match and whose nesting is at most ``max_depth`` is decoded; when it is not
    valid JSON (or nested too deep, or its brackets never close) the spans inside it are tried
    instead, so complete values inside a broken one are kept. Every character is inside at most
    ``max_depth`` decoded spans, so the time is linear in the text's length. Stops after
    ``max_values`` values when given.
    """
    if not isinstance(text, str):
        return []
    decoder = _decoder_for(max_number_chars)
    values: list[Any] = []
    pos, n = 0, len(text)
    while pos < n and (max_values is None or len(values) < max_values):
        match = _OPENERS.search(text, pos)
        if match is None:
            break
        roots, pos = _scan_spans(text, match.start(), max_depth)
        _decode_spans(text, roots, max_depth, decoder, values, max_values)
    return values


# a span: [start, end (-1 while open or never closed), height, children, levels]; levels > 0 marks a
# placeholder standing for that many outer openers of one run, too deep to decode (and never decoded)
def _scan_spans(text: str, start: int, max_depth: int) -> tuple[list[Any], int]:
    """The tree of bracketed spans of the value that opens at ``start``; and where scanning stopped."""
    roots: list[list[Any]] = []
    stack: list[list[Any]] = []
    next_token = _NEXT_TOKEN.match
    pos = start
    while True:
        match = next_token(text, pos)
        if match is None:  # the end of the text: whatever is open never closes
            pos = len(text)
            break
        kind, pos = match.lastgroup, match.end()
        if kind == "open":
            lo = match.start(kind)
            if pos - lo <= max_depth:  # a short run (most often one opener)
                for p in range(lo, pos):
                    if text[p] in "[{":
                        span = [p, -1, 1, [], 0]
                        (stack[-1][3] if stack else roots).append(span)
                        stack.append(span)
            else:
                _push_openers(text, lo, pos, max_depth, stack, roots)
            continue
        if kind == "lone" or not stack:  # a string that never closes: nothing open can close either
            break
        top = stack[-1]
        if top[4]:  # a placeholder level closes (its kind does not matter: it is never decoded)
            top[4] -= 1
            if top[4]:
                continue
        stack.pop()
        if not top[4] and top[1] < 0 and _CLOSER_OF[text[top[0]]] == text[pos - 1]:
            top[1] = pos
        if stack and stack[-1][2] <= top[2]:
            stack[-1][2] = top[2] + 1
        if not stack:
            break
    # spans still open never closed: they are never decoded, whatever their height, so it is not propagated
    return roots, pos


def _push_openers(text: str, lo: int, hi: int, max_depth: int, stack: list, roots: list) -> None:
    """Open the spans of a run of openers in ``text[lo:hi]``; all but the innermost ``max_depth`` of a long
    run are too deep to decode, so they share one placeholder."""
    count = text.count("[", lo, hi) + text.count("{", lo, hi)
    keep = min(count, max_depth)
    if count == hi - lo:  # no whitespace in the run
        positions = range(hi - keep, hi)
    else:
        found, end = [], hi
        for _ in range(keep):
            end = max(text.rfind("[", lo, end), text.rfind("{", lo, end))
            found.append(end)
        positions = found[::-1]
    spans = [[lo, -1, max_depth + 1, [], count - keep]] if count > keep else []
    spans += [[p, -1, 1, [], 0] for p in positions]
    for span in spans:
        (stack[-1][3] if stack else roots).append(span)
        stack.append(span)


def _decode_spans(
    text: str,
    roots: list[list[Any]],
    max_depth: int,
    decoder: json.JSONDecoder,
    values: list[Any],
    max_values: int | None,
) -> None:
    """Decode the outermost decodable spans of a tree, left to right (iteratively)."""
    todo = roots[::-1]
    while todo:
        if max_values is not None and len(values) >= max_values:
            return
        start, end, height, children, levels = todo.pop()
        if end >= 0 and height <= max_depth and not levels:
            try:
                value, stop = decoder.raw_decode(text, start)
            except (ValueError, RecursionError):  # JSONDecodeError, a number too long
                pass
            else:
                if stop == end:
                    values.append(value)
                    continue
        todo.extend(reversed(children))
