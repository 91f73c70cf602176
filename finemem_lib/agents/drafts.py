"""Draft continuations for speculative decoding: what followed the same ``n`` tokens before.

The manager writes tool calls in a fixed format (``<tool_call>``, a JSON object with the function's name and
arguments, ``</tool_call>``), so most of a completion's tokens are the ones that followed the same few
tokens earlier: in the row's own completion (its previous call) or in another completion. :class:`NgramDrafts`
keeps both indexes (the row's own first, then every row's) and proposes up to ``k`` tokens. A draft is
only a guess: the decoder scores it and keeps what the model's own distribution accepts
(:mod:`finemem_lib.agents.speculative`), so the drafts change how fast rows decode, never what they sample.
"""

from __future__ import annotations

from collections.abc import Sequence

# Entries of the shared index kept at most (each keeps its row's token list alive): cleared when exceeded.
MAX_SHARED = 1 << 16


class DraftRow:
    """One row's tokens (the prompt's last ``n`` tokens, then its completion) and the index of its n-grams."""

    __slots__ = ("indexed", "own", "tokens")

    def __init__(self, tail: Sequence[int]) -> None:
        self.tokens: list[int] = list(tail)
        self.own: dict[tuple[int, ...], int] = {}  # n-gram -> where the tokens after its latest occurrence start
        self.indexed = 0  # continuations starting before this position are indexed


class NgramDrafts:
    """Up to ``k`` draft tokens after a row's last ``n`` tokens (see the module).

    The shared index points into the rows' token lists (a continuation is read when proposed, so it grows
    with the row that wrote it); it lives as long as the drafts object, i.e. its decoder.
    """

    def __init__(self, n: int = 3) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = n
        self.shared: dict[tuple[int, ...], tuple[list[int], int]] = {}

    def row(self, tail: Sequence[int]) -> DraftRow:
        """A new row whose prompt ends with ``tail`` (its last ``n`` tokens, fewer for a shorter prompt)."""
        row = DraftRow(tail[-self.n :] if self.n else ())
        row.indexed = len(row.tokens)
        return row

    def propose(self, row: DraftRow, k: int) -> list[int]:
        """Up to ``k`` tokens that followed the row's last ``n`` tokens before (its own completion first)."""
        tokens = row.tokens
        if k <= 0 or len(tokens) < self.n:
            return []
        key = tuple(tokens[-self.n :])
        start = row.own.get(key)
        if start is not None:
            return tokens[start : start + k]
        found = self.shared.get(key)
        if found is None:
            return []
        source, start = found
        return source[start : start + k]

    def extend(self, row: DraftRow, new: Sequence[int]) -> None:
        """Append the row's newly decoded tokens and index the n-grams they complete."""
        tokens = row.tokens
        tokens.extend(new)
        n, own, shared = self.n, row.own, self.shared
        if len(shared) > MAX_SHARED:
            shared.clear()
        for start in range(max(row.indexed, n), len(tokens)):
            key = tuple(tokens[start - n : start])
            own[key] = start
            shared[key] = (tokens, start)
        row.indexed = len(tokens)
