"""Token counting, pluggable: any ``Callable[[str], int]`` works.

The offline fallback counts word and punctuation pieces with a regex. It is documented as an
approximation of a BPE tokenizer (close to one token per English word); use
:func:`hf_token_counter` with a real tokenizer for exact lengths.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

TokenCounter = Callable[[str], int]

_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def regex_token_count(text: str) -> int:
    """Number of word and punctuation pieces in ``text`` (offline fallback counter)."""
    return len(_PIECE.findall(text))


def hf_token_counter(tokenizer: Any) -> TokenCounter:
    """Wrap a Hugging Face tokenizer as a token counter (no special tokens counted)."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


TOKEN_COUNTERS = ("regex", "manager")


def token_counter_from_config(cfg: Any, tokenizer: Any = None) -> TokenCounter:
    """The token counter of compression and memory length: ``rewards.token_counter`` of a profile.

    ``manager`` (paper profile) counts with the manager's tokenizer (Mem-alpha counts with a real
    tokenizer); ``regex`` (offline default) uses :func:`regex_token_count`.
    """
    kind = str(((cfg or {}).get("rewards") or {}).get("token_counter", "regex"))
    if kind not in TOKEN_COUNTERS:
        raise ValueError(f"rewards.token_counter must be one of {TOKEN_COUNTERS}, got {kind!r}")
    if kind == "regex":
        return regex_token_count
    if tokenizer is None:
        raise ValueError("rewards.token_counter: manager needs the manager's tokenizer")
    return hf_token_counter(tokenizer)
