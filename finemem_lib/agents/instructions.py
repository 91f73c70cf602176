"""Per-source query instructions and the reasoner's prompt.

The instruction prefixes are Mem-alpha's ``config/prompts_wrt_datasource.yaml``, verbatim, as data:
a source-name pattern (full match, case-insensitive, first match wins) maps to a prefix or to None.
A prefix is prepended as ``prefix + "\\n\\n" + question``. The wording still speaks of Mem-alpha's
core/semantic memory; it is kept unchanged so that reasoner behaviour is comparable to Mem-alpha's.

The system prompt follows Mem-alpha's memory server (``construct_system_prompt``) for a flat memory:
the retrieved items are numbered ``1. content`` (ids are not shown to the reasoner).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CLASSIFICATION_PREFIX = (
    "Your core memory is used to store the classification rules of the articles. Identify the meaning of each "
    "class and how the article is classified. Fulfill the user's request with the core memory.\n\n"
    "When answering questions, you should put the final prediction in the format of \\boxed{label}. "
    "Note that the label is a single number."
)
"""pubmed-rct, TREC-coarse and TREC-fine."""

CLASSIFICATION_WITH_EXAMPLES_PREFIX = (
    "Your core memory is used to store the classification rules of the articles. Identify the meaning of each "
    "class and how the article is classified. Your semantic memory likely includes example labels. Fulfill the "
    "user's request with the core memory.\n\n"
    "When answering questions, you should put the final prediction in the format of \\boxed{label}. "
    "Note that the label is a single number."
)
"""ttl_train, test_time_learning, Banking77, Clinic150, NLU (and the synthetic ICL source)."""

SUMMARY_PREFIX = (
    "Your core memory contains a comprehensive book summary. Use this information to fulfill the user's request."
)
BRIEF_ANSWER_PREFIX = (
    "The book has been memorized in the memory. Answer the question as briefly as possible. "
    "Only output the answer with no other text."
)

CHUNK_QA_SOURCE = "chunk_qa"
"""Pseudo-source of the per-chunk factoid QAs (CSR): no prefix, scored by containment."""

QUERY_INSTRUCTIONS: tuple[tuple[str, str | None], ...] = (
    # Memalpha training/test sources
    (r"squad.*|hotpotqa.*|perltqa.*|lme_train.*", None),
    (r"booksum.*", SUMMARY_PREFIX),
    (r"pubmed[-_]rct.*", CLASSIFICATION_PREFIX),
    (r"ttl.*", CLASSIFICATION_WITH_EXAMPLES_PREFIX),
    # MemoryAgentBench (split names and sub-sources)
    (r"accurate_retrieval|ruler_qa.*|longmemeval.*", None),
    (r"long_range_understanding|infbench_sum.*", SUMMARY_PREFIX),
    (r"infbench_qa.*", BRIEF_ANSWER_PREFIX),
    (r"test_time_learning", CLASSIFICATION_WITH_EXAMPLES_PREFIX),
    (r"icl_trec_(coarse|fine).*", CLASSIFICATION_PREFIX),
    (r"icl_(banking77|clinic150|nlu).*", CLASSIFICATION_WITH_EXAMPLES_PREFIX),
    (r"icl.*", CLASSIFICATION_WITH_EXAMPLES_PREFIX),
    # MemoryAgentBench sources Mem-alpha does not prompt specially (plain question)
    (r"eventqa.*|factconsolidation.*|detective_qa.*|recsys.*", None),
    # synthetic miniature benchmark and the per-chunk QAs
    (r"synth_factoid|synth_update", None),
    (r"synth_icl", CLASSIFICATION_WITH_EXAMPLES_PREFIX),
    (re.escape(CHUNK_QA_SOURCE), None),
)

SYSTEM_PROMPT = """You are a reasoning assistant with access to a memory. Use the memories below to provide accurate, \
relevant, and comprehensive responses to user queries.

CURRENT MEMORY STATE:

<memory>
{memory}
</memory>

INSTRUCTIONS:
- Use the memories above to inform your responses
- If information is available in memory, reference it appropriately
- If memory is insufficient to answer a question, acknowledge this clearly
- Provide helpful and contextual responses based on the available memory
- Be concise but comprehensive in your answers"""

EMPTY_MEMORY = "(No memories stored)"


def _match(source: str) -> tuple[str, str | None]:
    key = source.strip().lower()
    for pattern, prefix in QUERY_INSTRUCTIONS:
        if re.fullmatch(pattern, key):
            return pattern, prefix
    known = ", ".join(p for p, _ in QUERY_INSTRUCTIONS)
    raise ValueError(f"no query instruction for data source {source!r}; known source patterns: {known}")


def query_instruction(source: str) -> str | None:
    """The instruction prefix for a data source (None where Mem-alpha asks the bare question)."""
    return _match(source)[1]


def expects_boxed_label(source: str) -> bool:
    """True for classification sources, whose answer is a ``\\boxed{label}`` number."""
    prefix = query_instruction(source)
    return prefix is not None and "\\boxed{label}" in prefix


def build_query(question: str, source: str) -> str:
    """The user turn: ``prefix + "\\n\\n" + question`` or the bare question."""
    prefix = query_instruction(source)
    return question if prefix is None else f"{prefix}\n\n{question}"


def render_memory(contents: Sequence[str]) -> str:
    """Retrieved items as a numbered list (``1. content``), or the empty-memory marker."""
    if not contents:
        return EMPTY_MEMORY
    return "\n".join(f"{i}. {text}" for i, text in enumerate(contents, start=1))


def build_messages(question: str, source: str, contents: Sequence[str]) -> list[dict[str, str]]:
    """Chat messages for the reasoner: system prompt with the retrieved items, user turn with the query."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(memory=render_memory(contents))},
        {"role": "user", "content": build_query(question, source)},
    ]
