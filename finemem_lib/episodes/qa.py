"""Question answering over a memory: BM25 top-k retrieval, one batched reasoner call, per-source scores.

The path of a query (docs/science.md §2): 𝓜_j = BM25(q_j, M, top-k), a_j = reasoner(q_j, 𝓜_j), s_j =
the source's score. The evidence of q_j is 𝓜_j: its item ids and the steps that wrote them
(phi(m), the memory's provenance). ``[r.evidence_steps for r in results]`` feeds
``rewards.evidence_contribution(scores, evidence_steps, T)`` directly.

Many memories (e.g. the G rollouts of one instance at the same step) are answered in ONE reasoner
call by :func:`answer_over_memories` / :func:`chunk_correctness_many`.

How the query is built, which BM25 scores it and which scorer reads the answer are a
:class:`QAOptions` (from a profile: :func:`qa_options_from_config`): the paper profile queries BM25
with Mem-alpha's query (the source's instruction prefix, a blank line, the question; its
``generation.py`` builds it so before its memory server ranks with ``rank_bm25``) and ranks with the
Okapi-parity scorer; the offline default queries with the bare question and ranks with Lucene BM25.

Chunk QAs (the CSR questions) are short factoids whatever the instance's source, so they are asked
without the source's instruction and scored by containment, except on classification sources
where the chunk questions are labelled samples like the global ones (see :func:`chunk_qa_source`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finemem_lib.agents.instructions import CHUNK_QA_SOURCE, build_query, expects_boxed_label, query_instruction
from finemem_lib.agents.reasoner import AnswerRequest, Reasoner
from finemem_lib.core import metrics
from finemem_lib.core.memory import Memory, MemoryItem
from finemem_lib.core.retrieval import BM25Index
from finemem_lib.data.instance import QA

MemoryLike = Memory | Sequence[MemoryItem]


@dataclass(frozen=True)
class QAResult:
    """One answered question: prediction, score, and the evidence (retrieved ids and their writer steps)."""

    question: str
    golds: tuple[str, ...]
    prediction: str
    score: float
    evidence_ids: tuple[str, ...]
    evidence_steps: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class PreparedQuestion:
    """A question with the items retrieved for it (best first), ready for the reasoner."""

    qa: QA
    source: str
    items: tuple[MemoryItem, ...]


@dataclass(frozen=True)
class MemoryQuestions:
    """Questions to answer over one memory (one rollout's memory, one source)."""

    memory: MemoryLike
    qas: Sequence[QA]
    source: str


QUERY_STYLES = ("question", "instruction")


@dataclass(frozen=True)
class QAOptions:
    """How questions are retrieved for and scored.

    Args:
        top_k: BM25 items per question (paper: 2).
        bm25: the retrieval method (``okapi`` = rank_bm25 parity, ``lucene``, ...;
            see :mod:`finemem_lib.core.retrieval`).
        query: ``instruction`` = Mem-alpha's query (instruction prefix + question), ``question`` = the bare question.
        scorer: the :class:`~finemem_lib.core.metrics.Scorer` (protocol, judge).
    """

    top_k: int = 2
    bm25: str = "lucene"
    query: str = "question"
    scorer: metrics.Scorer = field(default_factory=metrics.Scorer)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.query not in QUERY_STYLES:
            raise ValueError(f"retrieval.query must be one of {QUERY_STYLES}, got {self.query!r}")

    def retrieval_query(self, question: str, source: str) -> str:
        """The text BM25 ranks the memory with."""
        return build_query(question, source) if self.query == "instruction" else question


def qa_options_from_config(cfg: Mapping[str, Any] | None) -> QAOptions:
    """Options from a profile: ``retrieval.top_k`` / ``bm25`` / ``query`` and the ``scoring`` section."""
    section = dict((cfg or {}).get("retrieval") or {})
    return QAOptions(
        top_k=int(section.get("top_k", 2)),
        bm25=str(section.get("bm25", "lucene")),
        query=str(section.get("query", "question")),
        scorer=metrics.build_scorer(cfg),
    )


def _options(top_k: int, judge: metrics.Judge | None, options: QAOptions | None) -> QAOptions:
    return options if options is not None else QAOptions(top_k=top_k, scorer=metrics.Scorer(judge=judge))


def _items_of(memory: MemoryLike) -> list[MemoryItem]:
    return memory.items if isinstance(memory, Memory) else list(memory)


def score_answers(items: Sequence[tuple[str, str, str, Sequence[str]]], scorer: metrics.Scorer) -> list[float]:
    """Scores of ``(source, question, prediction, golds)`` items (containment for :data:`CHUNK_QA_SOURCE`)."""
    out: list[float | None] = [None] * len(items)
    routed = [i for i, item in enumerate(items) if item[0] != CHUNK_QA_SOURCE]
    for i, (source, _q, prediction, golds) in enumerate(items):
        if source == CHUNK_QA_SOURCE:
            out[i] = metrics.containment(prediction, golds)
    for i, value in zip(routed, scorer.score_many([items[i] for i in routed]), strict=True):
        out[i] = value
    return [float(v) for v in out]  # type: ignore[arg-type]


def score_answer(source: str, prediction: str, golds: Sequence[str], judge: metrics.Judge | None = None) -> float:
    """The score of a prediction under its source's rule (containment for :data:`CHUNK_QA_SOURCE`)."""
    return score_answers([(source, "", prediction, golds)], metrics.Scorer(judge=judge))[0]


def chunk_qa_source(source: str) -> str:
    """The source under which a chunk's QAs are asked and scored: the instance's own source for
    classification sources (boxed labels), else :data:`CHUNK_QA_SOURCE`."""
    return source if expects_boxed_label(source) else CHUNK_QA_SOURCE


def prepare(
    memory: MemoryLike, qas: Sequence[QA], source: str, top_k: int = 2, options: QAOptions | None = None
) -> list[PreparedQuestion]:
    """Retrieve the BM25 top-``k`` items of ``memory`` for each question (query and method from ``options``)."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    opts = _options(top_k, None, options)
    for i, qa in enumerate(qas):
        if not isinstance(qa, QA):
            raise TypeError(f"qas[{i}] is a {type(qa).__name__}, not a QA")
    if source != CHUNK_QA_SOURCE:
        opts.scorer.check(source)  # an unknown or unscorable source fails here, before any reasoner call
    query_instruction(source)
    items = _items_of(memory)
    if not qas:
        return []
    index = BM25Index(items, method=opts.bm25)
    return [
        PreparedQuestion(
            qa,
            source,
            tuple(items[hit.position] for hit in index.search(opts.retrieval_query(qa.question, source), opts.top_k)),
        )
        for qa in qas
    ]


def answer_prepared(
    prepared: Sequence[PreparedQuestion],
    reasoner: Reasoner,
    judge: metrics.Judge | None = None,
    options: QAOptions | None = None,
) -> list[QAResult]:
    """Answer prepared questions in one reasoner call and score them (judged ones in one judge batch)."""
    scorer = _options(2, judge, options).scorer
    requests = [AnswerRequest(p.qa.question, p.source, p.items) for p in prepared]
    answers = reasoner.answer(requests)
    scores = score_answers(
        [(p.source, p.qa.question, a.text, p.qa.answers) for p, a in zip(prepared, answers, strict=True)], scorer
    )
    return [
        QAResult(
            question=p.qa.question,
            golds=p.qa.answers,
            prediction=answer.text,
            score=value,
            evidence_ids=tuple(item.id for item in p.items),
            evidence_steps=tuple(int(item.step) for item in p.items),
            source=p.source,
        )
        for p, answer, value in zip(prepared, answers, scores, strict=True)
    ]


def answer_over_memories(
    tasks: Sequence[MemoryQuestions],
    reasoner: Reasoner,
    top_k: int = 2,
    judge: metrics.Judge | None = None,
    options: QAOptions | None = None,
) -> list[list[QAResult]]:
    """Answer each task's questions over its memory; all questions go to the reasoner in one call."""
    opts = _options(top_k, judge, options)
    prepared = [prepare(task.memory, task.qas, task.source, opts.top_k, opts) for task in tasks]
    flat = answer_prepared([p for group in prepared for p in group], reasoner, options=opts)
    out, start = [], 0
    for group in prepared:
        out.append(flat[start : start + len(group)])
        start += len(group)
    return out


def answer_over_memory(
    memory: MemoryLike,
    qas: Sequence[QA],
    source: str,
    reasoner: Reasoner,
    top_k: int = 2,
    judge: metrics.Judge | None = None,
    options: QAOptions | None = None,
) -> list[QAResult]:
    """Answer ``qas`` over ``memory`` (BM25 top-``k``) and score them with ``source``'s rule."""
    return answer_over_memories([MemoryQuestions(memory, qas, source)], reasoner, top_k, judge, options)[0]


def chunk_correctness_many(
    tasks: Sequence[MemoryQuestions], reasoner: Reasoner, top_k: int = 2, options: QAOptions | None = None
) -> list[np.ndarray]:
    """For each (memory M_t, chunk QAs, instance source): the ``[K]`` 0/1 correctness, in one reasoner call.

    ``task.source`` is the instance's source; :func:`chunk_qa_source` picks how the QAs are asked.
    A question is correct when its score is 1 (``1[answer = y]`` in the paper).
    """
    routed = [MemoryQuestions(t.memory, t.qas, chunk_qa_source(t.source)) for t in tasks]
    results = answer_over_memories(routed, reasoner, top_k, options=options)
    return [np.array([float(r.score >= 1.0) for r in group], dtype=np.float64) for group in results]


def chunk_correctness(
    memory: MemoryLike, qas: Sequence[QA], source: str, reasoner: Reasoner, top_k: int = 2
) -> np.ndarray:
    """The ``[K]`` 0/1 correctness of one chunk's QAs on the current memory (r_chunk's input)."""
    return chunk_correctness_many([MemoryQuestions(memory, qas, source)], reasoner, top_k)[0]


def mean_score(results: Sequence[QAResult]) -> float:
    """r_global: the mean score (0.0 when there is no question)."""
    return float(np.mean([r.score for r in results])) if results else 0.0


def evidence_steps(results: Sequence[QAResult]) -> list[list[int]]:
    """Per query, the writer steps of its evidence: the ``evidence_steps`` argument of the reward kernels."""
    return [list(r.evidence_steps) for r in results]


def sample_questions(
    qas: Sequence[QA], ratio: float, rng: random.Random | int = 0, min_questions: int = 0
) -> tuple[QA, ...]:
    """A random ``ratio`` of the questions, in their original order; all if ratio >= 1.

    The paper answers a 20% subsample of the global questions in training and all in evaluation.
    ``min_questions`` > 0 is Mem-alpha's rule (``verl/trainer/ppo/ray_trainer.py``, ``fit``): only an
    instance with more than ``min_questions`` questions (Mem-alpha: 50) is subsampled, to
    ``int(len * ratio)`` questions; with 0 (the offline choice) every instance is subsampled to
    ``max(1, round(len * ratio))`` so that small synthetic instances keep a global reward.
    """
    if ratio <= 0.0:
        raise ValueError(f"ratio must be > 0, got {ratio}")
    qas = tuple(qas)
    if ratio >= 1.0 or not qas:
        return qas
    if min_questions > 0 and len(qas) <= min_questions:
        return qas
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    n = int(len(qas) * ratio) if min_questions > 0 else max(1, round(ratio * len(qas)))
    keep = sorted(rng.sample(range(len(qas)), n))
    return tuple(qas[i] for i in keep)
