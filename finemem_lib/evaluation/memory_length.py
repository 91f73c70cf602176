"""The memory length a method holds for an instance, in tokens: the ``memory`` of every table and summary row.

One definition, "the text the reader is given to answer from", used by notebook 02's summary
(:func:`finemem_lib.evaluation.per_instance.evaluate_baselines`) and notebook 04's recorded tables
(:func:`finemem_lib.evaluation.methods.baseline_result`) alike, through :func:`baseline_memory`:

- managers, ceilings and ``store_everything``: the final memory's tokens (what retrieval picks from);
- ``long_context``: the window the reasoner reads (the last ``baselines.long_context_tokens`` of the text);
- ``rag_bm25``: the text retrieved for a question (its top-k chunks), averaged over the questions; it keeps
  no memory of its own, so its stored chunks (the whole context) are not counted;
- ``closed_book``: nothing (0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from finemem_lib.core.sentences import split_sentences
from finemem_lib.core.tokens import TokenCounter, regex_token_count
from finemem_lib.data.instance import Instance
from finemem_lib.episodes import baselines
from finemem_lib.episodes.qa import QAResult

DEFINITION = "reader input: memories final; long_context window; rag_bm25 retrieved text per question; closed_book 0"
"""A tag of the definition above; evaluation records made under another one are redone, not reused."""


@dataclass(frozen=True)
class BaselineMemory:
    """What a baseline holds for one instance: tokens, items, and the text of every item id it can cite."""

    tokens: int
    items: int
    texts: dict[str, str] = field(default_factory=dict)


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


def baseline_memory(
    name: str,
    instance: Instance,
    results: Sequence[QAResult],
    cfg: Mapping[str, Any] | None = None,
    token_counter: TokenCounter = regex_token_count,
) -> BaselineMemory:
    """The memory length of baseline ``name`` on one instance (see the module docstring), given its answers."""
    texts = raw_item_texts(instance)
    if name == "store_everything":
        memory = baselines.store_everything_memory(instance, token_counter)
        texts.update({item.id: item.content for item in memory.items})
        return BaselineMemory(memory.num_tokens(), len(memory), texts)
    if name == "long_context":
        window = baselines.tail_window(instance, baselines.long_context_window(cfg), token_counter)
        texts.update({item.id: item.content for item in window})
        return BaselineMemory(sum(token_counter(item.content) for item in window), len(window), texts)
    if name == "rag_bm25":
        tokens, items = retrieved_memory(results, texts, token_counter)
        return BaselineMemory(tokens, items, texts)
    if name == "closed_book":
        return BaselineMemory(0, 0, texts)
    raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(baselines.BASELINES)}")


def baseline_memory_tokens(
    name: str,
    instance: Instance,
    results: Sequence[QAResult],
    cfg: Mapping[str, Any] | None = None,
    token_counter: TokenCounter = regex_token_count,
) -> int:
    """The memory length in tokens of baseline ``name`` on one instance (:func:`baseline_memory`)."""
    return baseline_memory(name, instance, results, cfg, token_counter).tokens
