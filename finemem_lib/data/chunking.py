"""Sentence packing under a token budget, as MemoryAgentBench and Mem-alpha chunk long contexts.

Text is split into sentences (offline, :func:`finemem_lib.core.sentences.split_sentences`), then sentences
are packed greedily in order while the chunk's token count stays within ``chunk_size``; a sentence
longer than ``chunk_size`` becomes a chunk of its own, whole. Empty text gives no chunks.

A chunk's token count is the sum of its sentences' counts (BPE counts of a joined string differ from
the sum by at most a token or so per sentence boundary; summing keeps packing linear in the text length).

Token counting is pluggable (any ``Callable[[str], int]``): :func:`make_token_counter` loads a
Hugging Face tokenizer that is available offline (a local path, or a name already in the cache) and
otherwise falls back to :func:`finemem_lib.core.tokens.regex_token_count` (about one token per word or
punctuation mark), with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from finemem_lib.core.sentences import split_sentences
from finemem_lib.core.tokens import TokenCounter, hf_token_counter, regex_token_count

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 2048
TTL_CHUNK_SIZE = 1024  # Mem-alpha's chunk size for MemoryAgentBench Test_Time_Learning


def default_chunk_size(split: str) -> int:
    """Mem-alpha's chunk size for a MemoryAgentBench split: 1024 for Test_Time_Learning, else 2048."""
    return TTL_CHUNK_SIZE if split.lower().replace("-", "_") == "test_time_learning" else DEFAULT_CHUNK_SIZE


def pack_sentences(sentences: list[str], chunk_size: int, count_tokens: TokenCounter) -> list[str]:
    """Greedy packing of sentences (in order) into chunks of at most ``chunk_size`` tokens, joined by spaces."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for sentence in sentences:
        size = count_tokens(sentence)
        if current and used + size > chunk_size:
            chunks.append(" ".join(current))
            current, used = [], 0
        current.append(sentence)
        used += size
    if current:
        chunks.append(" ".join(current))
    return chunks


def chunk_text(
    text: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    count_tokens: TokenCounter | None = None,
    splitter: Callable[[str], list[str]] = split_sentences,
) -> list[str]:
    """Split ``text`` into sentences and pack them into chunks of at most ``chunk_size`` tokens."""
    if not isinstance(text, str):
        raise TypeError(f"chunk_text needs a string, got {type(text).__name__}")
    return pack_sentences(splitter(text), chunk_size, count_tokens or regex_token_count)


def make_token_counter(tokenizer: str | Path | None = None, strict: bool = False) -> TokenCounter:
    """A token counter: ``None``/``"regex"`` gives the regex fallback; otherwise a Hugging Face tokenizer.

    The tokenizer is loaded from a local folder or the Hugging Face cache (``HF_HUB_OFFLINE=1`` is
    respected). When it cannot be loaded, the regex fallback is returned with a warning, or
    :class:`FileNotFoundError` is raised with ``strict=True``.
    """
    if tokenizer is None or str(tokenizer) == "regex":
        return regex_token_count
    try:
        from transformers import AutoTokenizer

        return hf_token_counter(AutoTokenizer.from_pretrained(str(tokenizer)))
    except (OSError, ValueError) as exc:
        message = f"tokenizer {str(tokenizer)!r} is not available offline ({type(exc).__name__})"
        if strict:
            raise FileNotFoundError(f"{message}; pass a local tokenizer folder or 'regex'") from None
        log.warning("%s; counting tokens with the regex fallback instead", message)
        return regex_token_count
