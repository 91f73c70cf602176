"""The memory length a method holds for an instance, in tokens: the ``memory`` of every summary row.

- managers and ``store_everything``: the final memory's tokens;
- ``long_context``: the window the reasoner reads (the last ``baselines.long_context_tokens`` of the text);
- ``rag_bm25``: the text retrieved for a question (its top-k chunks), averaged over the questions;
- ``closed_book``: nothing (0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from finemem_lib.core.sentences import split_sentences
from finemem_lib.core.tokens import TokenCounter, regex_token_count
from finemem_lib.data.instance import Instance
from finemem_lib.episodes import baselines
from finemem_lib.episodes.qa import QAResult


def raw_item_texts(instance: Instance) -> dict[str, str]:
    """Text of every raw-text item id a baseline can produce (``c<t>`` chunks, ``c<t>.s<i>`` sentences)."""
    lookup = {}
    for t, chunk in enumerate(instance.chunks):
        lookup[f"c{t}"] = chunk
        for i, sentence in enumerate(split_sentences(chunk)):
            lookup[f"c{t}.s{i}"] = sentence
    return lookup


def retrieved_memory(
    results: Sequence[QAResult], lookup: Mapping[str, str], token_counter: TokenCounter = regex_token_count
) -> tuple[int, int]:
    """(tokens, items) retrieved per question, averaged over the questions and rounded (0, 0 with none)."""
    if not results:
        return 0, 0
    tokens = [sum(token_counter(lookup.get(i, "")) for i in r.evidence_ids) for r in results]
    items = [len(r.evidence_ids) for r in results]
    return round(sum(tokens) / len(tokens)), round(sum(items) / len(items))


def baseline_memory_tokens(
    name: str,
    instance: Instance,
    results: Sequence[QAResult],
    cfg: Mapping[str, Any] | None = None,
    token_counter: TokenCounter = regex_token_count,
) -> int:
    """The memory length of baseline ``name`` on one instance (see the module docstring)."""
    if name == "store_everything":
        return baselines.store_everything_memory(instance, token_counter).num_tokens()
    if name == "long_context":
        window = baselines.long_context_window(cfg)
        return sum(token_counter(item.content) for item in baselines.tail_window(instance, window, token_counter))
    if name == "rag_bm25":
        return retrieved_memory(results, raw_item_texts(instance), token_counter)[0]
    if name == "closed_book":
        return 0
    raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(baselines.BASELINES)}")
