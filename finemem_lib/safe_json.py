"""A bounded JSON reader for untrusted text (model replies, dataset cells): iterative, linear time.

:func:`loads` reads one JSON document; :func:`find_values` finds the JSON objects and lists embedded
in free text, left to right. Neither recurses, both cap the nesting depth and the length of a number
(Python's :func:`json.loads` recurses, so deep nesting raises ``RecursionError``, and an integer of
more than 4,300 digits raises a plain ``ValueError``), and the only error either raises is
:class:`JSONScanError`. Strings are decoded by the standard library's (iterative) string scanner, so
escapes, ``NaN`` and ``Infinity`` behave as in :mod:`json`. Duplicate keys keep the last value.
"""

from __future__ import annotations

import re
from json.decoder import scanstring
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting of objects/lists accepted (a tool call needs about 4)."""
MAX_NUMBER_CHARS = 64
"""Longest number literal accepted, in characters."""

_WS = re.compile(r"[ \t\n\r]*")
_VALUE = re.compile(
    r"[ \t\n\r]*(?:(?P<open>[\[{])|(?P<string>\")"
    r"|(?P<number>-?(?:0|[1-9][0-9]*)(?P<frac>\.[0-9]+)?(?P<exp>[eE][-+]?[0-9]+)?)"
    r"|(?P<literal>true|false|null|NaN|Infinity|-Infinity))"
)
_NEXT_CHAR = re.compile(r"[ \t\n\r]*(.?)", re.DOTALL)
_KEY_QUOTE = re.compile(r"[ \t\n\r]*\"")
_COLON = re.compile(r"[ \t\n\r]*:[ \t\n\r]*")
_OPENERS = re.compile(r"[\[{]")
_OPEN_RUN = re.compile(r"[\[{ \t\n\r]*")
_LITERALS = {
    "true": True,
    "false": False,
    "null": None,
    "NaN": float("nan"),
    "Infinity": float("inf"),
    "-Infinity": float("-inf"),
}


class JSONScanError(ValueError):
    """Text that is not (bounded) JSON; ``pos`` is where reading stopped."""

    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(f"{reason} at char {pos}")
        self.reason, self.pos = reason, pos


class _Failure(Exception):
    """Internal: where and why a value failed, and the frames open at that point."""

    def __init__(self, reason: str, pos: int, open_frames: list[list[Any]]) -> None:
        self.reason, self.pos, self.open_frames = reason, pos, open_frames


def loads(text: str, max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS) -> Any:
    """One JSON document (whitespace around it allowed); raises only :class:`JSONScanError`."""
    if not isinstance(text, str):
        raise JSONScanError(f"expected a string, got {type(text).__name__}", 0)
    start = _WS.match(text, 0).end()
    try:
        value, end = _read_value(text, start, max_depth, max_number_chars)
    except _Failure as failure:
        raise JSONScanError(failure.reason, failure.pos) from None
    end = _WS.match(text, end).end()
    if end != len(text):
        raise JSONScanError("extra data after the JSON value", end)
    return value


def find_values(text: str, max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS) -> list[Any]:
    """The JSON objects and lists embedded in free text, left to right; never raises.

    Reading starts at each ``{`` or ``[`` outside a value already read. When a value turns out
    broken (say, cut off), the complete objects and lists already read inside it are kept and
    reading goes on from the point where it broke, so every character is read a bounded number of
    times: the time is linear in the text's length. (Brackets inside a string of a broken value are
    not tried again as starts of values.)
    """
    if not isinstance(text, str):
        return []
    values: list[Any] = []
    pos, n = 0, len(text)
    while pos < n:
        match = _OPENERS.search(text, pos)
        if match is None:
            break
        start = match.start()
        try:
            value, pos = _read_value(text, start, max_depth, max_number_chars)
        except _Failure as failure:
            for frame in failure.open_frames:
                children = frame[0].values() if isinstance(frame[0], dict) else frame[0]
                values.extend(child for child in children if isinstance(child, dict | list))
            pos = failure.pos
            if failure.reason.startswith("nesting"):
                # a run of openers deeper than the cap: only its last max_depth openers can start a value
                run_end = _OPEN_RUN.match(text, pos).end()
                pos = max(pos, _last_openers_start(text, pos, run_end, max_depth))
            continue
        values.append(value)
    return values


def _last_openers_start(text: str, start: int, end: int, count: int) -> int:
    """Position of the ``count``-th opener counted back from ``end`` within ``text[start:end]``."""
    seen = 0
    for i in range(end - 1, start - 1, -1):
        if text[i] in "[{":
            seen += 1
            if seen == count:
                return i
    return start


def _read_value(text: str, pos: int, max_depth: int, max_number_chars: int) -> tuple[Any, int]:
    """Read one value at ``pos``; iterative. Raises :class:`_Failure` with the frames still open."""
    stack: list[list[Any]] = []  # frames: [container, pending key]
    value_at, next_char = _VALUE.match, _NEXT_CHAR.match
    while True:
        # ---- expecting a value at pos
        match = value_at(text, pos)
        if match is None:
            raise _Failure("expected a value", _WS.match(text, pos).end(), stack)
        kind, pos = match.lastgroup, match.end()
        if kind == "open":
            if len(stack) >= max_depth:
                raise _Failure(f"nesting deeper than {max_depth}", pos - 1, stack)
            is_dict = text[pos - 1] == "{"
            frame: list[Any] = [{} if is_dict else [], None]
            stack.append(frame)
            step = next_char(text, pos)
            if step.group(1) == ("}" if is_dict else "]"):
                stack.pop()
                value, pos = frame[0], step.end()
            elif is_dict:
                frame[1], pos = _read_key(text, pos, stack)
                continue
            else:
                continue
        elif kind == "string":
            value, pos = _read_string(text, pos, stack)
        elif kind == "number":
            if pos - match.start(kind) > max_number_chars:
                raise _Failure(f"number longer than {max_number_chars} characters", match.start(kind), stack)
            token = match.group(kind)
            value = float(token) if match.group("frac") or match.group("exp") else int(token)
        else:
            value = _LITERALS[match.group(kind)]
        # ---- have a value: attach it, then read separators and closers
        while True:
            if not stack:
                return value, pos
            frame = stack[-1]
            container = frame[0]
            if type(container) is list:
                container.append(value)
            else:
                container[frame[1]] = value
            step = next_char(text, pos)
            c = step.group(1)
            if c == ",":
                pos = step.end()
                if type(container) is dict:
                    frame[1], pos = _read_key(text, pos, stack)
                break
            if c == ("]" if type(container) is list else "}"):
                stack.pop()
                value, pos = container, step.end()
                continue
            raise _Failure(
                "unexpected end of text" if not c else "expected ',' or a closing bracket", step.start(1), stack
            )


def _read_string(text: str, pos: int, stack: list[list[Any]]) -> tuple[str, int]:
    """The string whose opening quote ends just before ``pos`` (the standard library's iterative scanner)."""
    try:
        return scanstring(text, pos, True)
    except ValueError as exc:  # json.JSONDecodeError: unterminated string, bad escape, control character
        raise _Failure(f"bad string ({getattr(exc, 'msg', exc)})", getattr(exc, "pos", pos), stack) from None


def _read_key(text: str, pos: int, stack: list[list[Any]]) -> tuple[str, int]:
    """An object key and the ``:`` after it; returns the key and the position of its value."""
    match = _KEY_QUOTE.match(text, pos)
    if match is None:
        raise _Failure("expected a string key", _WS.match(text, pos).end(), stack)
    key, pos = _read_string(text, match.end(), stack)
    match = _COLON.match(text, pos)
    if match is None:
        raise _Failure("expected ':' after a key", _WS.match(text, pos).end(), stack)
    return key, match.end()
