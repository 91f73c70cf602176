"""Memory-free and trivial-memory baselines, answered by the same reasoner on the same questions.

- ``long_context``: the reasoner reads the last ``max_tokens`` tokens of the concatenated raw
  chunks (whole sentences, newest kept; Mem-alpha's long-context baseline with a 32K window).
- ``rag_bm25``: each raw chunk is a document; BM25 top-``k`` chunks (k = 2) per question
  (Mem-alpha's / MemoryAgentBench's RAG-Top2 baseline).
- ``store_everything``: a :class:`~finemem_lib.core.memory.Memory` holding every sentence, inserted at
  its chunk's step, answered through the normal :mod:`finemem_lib.episodes.qa` path (BM25 top-``k`` items).
- ``closed_book``: no memory at all; the reasoner sees the question alone (an empty memory), so
  questions answerable without the context (prior knowledge, guessable labels) show up here.

Raw text becomes reasoner items by the reasoner's ``item_granularity``: LLM backends get passages
(one item per chunk, or its tail), the offline reader gets one item per sentence. Item ids are
``c<t>`` (chunk ``t``) or ``c<t>.s<i>`` (its sentence ``i``), and an item's ``step`` is its chunk
index, so evidence steps mean "the chunk it came from". Every baseline returns
:class:`~finemem_lib.episodes.qa.QAResult` objects, like :func:`finemem_lib.episodes.qa.answer_over_memory`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from finemem_lib.agents.reasoner import Reasoner
from finemem_lib.core.memory import Memory, MemoryItem, Operation, OpKind
from finemem_lib.core.retrieval import BM25Index
from finemem_lib.core.sentences import split_sentences
from finemem_lib.core.tokens import TokenCounter, regex_token_count
from finemem_lib.data.instance import QA, Instance
from finemem_lib.episodes.qa import (
    PreparedQuestion,
    QAOptions,
    QAResult,
    answer_over_memory,
    answer_prepared,
    qa_options_from_config,
)


def _sentence_items(instance: Instance) -> list[MemoryItem]:
    """Every sentence of every chunk as an item, in reading order."""
    return [
        MemoryItem(f"c{t}.s{i}", sentence, t)
        for t, chunk in enumerate(instance.chunks)
        for i, sentence in enumerate(split_sentences(chunk))
    ]


def _keep_last_tokens(text: str, max_tokens: int, count: TokenCounter) -> str:
    """The longest word suffix of ``text`` within ``max_tokens`` tokens."""
    words = text.split()
    lo, hi = 0, len(words)  # find the smallest start whose suffix fits
    while lo < hi:
        mid = (lo + hi) // 2
        if count(" ".join(words[mid:])) <= max_tokens:
            hi = mid
        else:
            lo = mid + 1
    return " ".join(words[lo:])


def tail_window(instance: Instance, max_tokens: int, count: TokenCounter = regex_token_count) -> list[MemoryItem]:
    """The sentences in the last ``max_tokens`` tokens of the raw chunks, in reading order.

    Whole sentences are kept from the end while they fit; if even the last sentence is too long,
    its tail words that fit are kept.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    sentences = _sentence_items(instance)
    window: list[MemoryItem] = []
    used = 0
    for item in reversed(sentences):
        n = count(item.content)
        if used + n > max_tokens:
            if not window:
                tail = _keep_last_tokens(item.content, max_tokens, count)
                window = [MemoryItem(item.id, tail, item.step)] if tail else []
            break
        window.append(item)
        used += n
    return window[::-1]


def _as_passages(sentences: Sequence[MemoryItem]) -> list[MemoryItem]:
    """Group consecutive sentence items by chunk into one passage item per chunk."""
    passages: list[MemoryItem] = []
    for item in sentences:
        if passages and passages[-1].step == item.step:
            last = passages[-1]
            passages[-1] = MemoryItem(last.id, f"{last.content} {item.content}", last.step)
        else:
            passages.append(MemoryItem(f"c{item.step}", item.content, item.step))
    return passages


def _questions(instance: Instance, questions: Sequence[QA] | None) -> Sequence[QA]:
    return instance.questions if questions is None else questions


def long_context(
    instance: Instance,
    reasoner: Reasoner,
    max_tokens: int,
    token_counter: TokenCounter = regex_token_count,
    questions: Sequence[QA] | None = None,
    options: QAOptions | None = None,
) -> list[QAResult]:
    """Answer from the last ``max_tokens`` tokens of the raw chunks.

    The offline reader gets the window's sentences newest first (its tie-break then prefers the
    latest statement, as a reader of the whole window would); LLMs get the window's text per chunk,
    in reading order.
    """
    window = tail_window(instance, max_tokens, token_counter)
    items = window[::-1] if reasoner.item_granularity == "sentence" else _as_passages(window)
    prepared = [PreparedQuestion(qa, instance.source, tuple(items)) for qa in _questions(instance, questions)]
    return answer_prepared(prepared, reasoner, options=options)


def rag_bm25(
    instance: Instance,
    reasoner: Reasoner,
    top_k: int = 2,
    questions: Sequence[QA] | None = None,
    options: QAOptions | None = None,
) -> list[QAResult]:
    """Answer from the BM25 top-``k`` raw chunks (best first; the offline reader gets their sentences in order).

    ``options``: retrieval method, query style and scorer (with its judge); default :class:`QAOptions`."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    opts = options or QAOptions(top_k=top_k)
    index = BM25Index([(f"c{t}", chunk) for t, chunk in enumerate(instance.chunks)], method=opts.bm25)
    prepared = []
    for qa in _questions(instance, questions):
        chunks = [hit.position for hit in index.search(opts.retrieval_query(qa.question, instance.source), top_k)]
        if reasoner.item_granularity == "sentence":
            items = [
                MemoryItem(f"c{t}.s{i}", sentence, t)
                for t in chunks
                for i, sentence in enumerate(split_sentences(instance.chunks[t]))
            ]
        else:
            items = [MemoryItem(f"c{t}", instance.chunks[t], t) for t in chunks]
        prepared.append(PreparedQuestion(qa, instance.source, tuple(items)))
    return answer_prepared(prepared, reasoner, options=opts)


def store_everything_memory(instance: Instance, token_counter: TokenCounter = regex_token_count) -> Memory:
    """A memory holding every sentence of the instance, each inserted at its chunk's step."""
    memory = Memory(token_counter=token_counter, id_style="short")
    for t, chunk in enumerate(instance.chunks):
        memory.apply_all([Operation(OpKind.INSERT, content=s) for s in split_sentences(chunk)], step=t)
    return memory


def store_everything(
    instance: Instance,
    reasoner: Reasoner,
    top_k: int = 2,
    questions: Sequence[QA] | None = None,
    options: QAOptions | None = None,
    token_counter: TokenCounter = regex_token_count,
) -> list[QAResult]:
    """Answer over a memory that stored every sentence (the normal qa path: BM25 top-``k`` items)."""
    memory = store_everything_memory(instance, token_counter)
    qas = _questions(instance, questions)
    return answer_over_memory(memory, qas, instance.source, reasoner, top_k, options=options)


def closed_book(
    instance: Instance,
    reasoner: Reasoner,
    questions: Sequence[QA] | None = None,
    options: QAOptions | None = None,
) -> list[QAResult]:
    """Answer with no memory: every question goes to the reasoner with no retrieved item."""
    prepared = [PreparedQuestion(qa, instance.source, ()) for qa in _questions(instance, questions)]
    return answer_prepared(prepared, reasoner, options=options)


Baseline = Callable[..., list[QAResult]]
BASELINES: dict[str, Baseline] = {
    "long_context": long_context,
    "rag_bm25": rag_bm25,
    "store_everything": store_everything,
    "closed_book": closed_book,
}


def run_baseline(
    name: str,
    instances: Sequence[Instance],
    reasoner: Reasoner,
    cfg: Mapping[str, Any] | None = None,
    token_counter: TokenCounter = regex_token_count,
) -> list[list[QAResult]]:
    """Run one baseline over instances with settings from a profile.

    ``cfg`` is the whole profile (or None for defaults): ``baselines.long_context_tokens`` sets the
    long-context window, ``retrieval`` the retrieved chunks/items (``top_k``, ``bm25``, ``query``) and
    ``scoring`` the scorer (a judged source without a required judge fails before any reasoner call).
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    cfg = cfg or {}
    options = qa_options_from_config(cfg)
    options.scorer.check(sorted({inst.source for inst in instances}))
    top_k = options.top_k
    window = long_context_window(cfg)
    results = []
    for instance in instances:
        if name == "long_context":
            results.append(long_context(instance, reasoner, window, token_counter, options=options))
        elif name == "closed_book":
            results.append(closed_book(instance, reasoner, options=options))
        elif name == "store_everything":
            results.append(store_everything(instance, reasoner, top_k, options=options, token_counter=token_counter))
        else:
            results.append(BASELINES[name](instance, reasoner, top_k, options=options))
    return results


def long_context_window(cfg: Mapping[str, Any] | None) -> int:
    """Tokens the long-context baseline reads (``baselines.long_context_tokens``, default 32768)."""
    return int(((cfg or {}).get("baselines") or {}).get("long_context_tokens", 32768))
