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
