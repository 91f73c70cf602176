"""Question answering over a memory: retrieval, evidence provenance, batching, r_chunk, and the offline
reader on the synthetic benchmark."""

from __future__ import annotations

import random

import numpy as np
import pytest

from finemem_lib.agents import AnswerRequest, Reasoner
from finemem_lib.agents.instructions import CHUNK_QA_SOURCE
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.retrieval import BM25Index
from finemem_lib.core.rewards import evidence_contribution
from finemem_lib.core.sentences import split_sentences
from finemem_lib.data.instance import QA, Instance
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes import qa
from finemem_lib.episodes.baselines import store_everything


class RecordingReasoner(Reasoner):
    """The offline reader, recording every backend call."""

    def __init__(self) -> None:
        self.calls: list[list[AnswerRequest]] = []
        self._reader = OfflineReader()

    def _answer_texts(self, requests: list[AnswerRequest]) -> list[str]:
        self.calls.append(requests)
        return [self._reader.answer_one(r) for r in requests]


def insert(memory: Memory, text: str, step: int) -> str:
    result = memory.apply(Operation(OpKind.INSERT, content=text), step)
    assert result.ok
    return result.item_id


COLOUR = QA("What is the favourite colour of Zorvan Kell?", ("teal",))
CITY = QA("In which city does Mira Holt live?", ("Lima",))


def facts_memory() -> Memory:
    memory = Memory(id_style="short")
    insert(memory, "The favourite colour of Zorvan Kell is teal.", 0)
    insert(memory, "On Monday, the ferry was closed for repairs.", 0)
    insert(memory, "Mira Holt lives in the city of Oslo.", 1)
    insert(memory, "Every weekend Ivo Dal plays tennis with friends.", 2)
    return memory


def test_answers_scores_and_evidence_follow_bm25() -> None:
    memory = facts_memory()
    results = qa.answer_over_memory(memory, [COLOUR, CITY], "synth_factoid", OfflineReader(), top_k=2)
    assert [r.score for r in results] == [1.0, 0.0]  # Oslo is stale for a gold of Lima
    index = BM25Index(memory.items)
    for result, question in zip(results, [COLOUR, CITY], strict=True):
        assert result.evidence_ids == tuple(hit.id for hit in index.search(question.question, 2))
        assert result.evidence_steps == tuple(memory.writer_step(i) for i in result.evidence_ids)
        assert result.golds == question.answers and result.source == "synth_factoid"


def test_evidence_steps_are_the_last_writer_steps() -> None:
    memory = facts_memory()
    oslo = next(item.id for item in memory.items if "Oslo" in item.content)
    memory.apply(Operation(OpKind.UPDATE, content="Mira Holt now lives in the city of Lima.", item_id=oslo), 3)
    result = qa.answer_over_memory(memory, [CITY], "synth_update", OfflineReader(), top_k=1)[0]
    assert result.evidence_ids == (oslo,) and result.evidence_steps == (3,)
    assert result.prediction == "Lima" and result.score == 1.0


def test_results_feed_the_evidence_kernel_directly() -> None:
    memory = facts_memory()
    results = qa.answer_over_memory(memory, [COLOUR, CITY], "synth_factoid", OfflineReader(), top_k=2)
    n_contrib = evidence_contribution([r.score for r in results], qa.evidence_steps(results), 4)
    assert n_contrib.shape == (4,)
    assert n_contrib.sum() == pytest.approx(qa.mean_score(results))
    assert n_contrib[0] > 0  # the colour fact was written at step 0 and answered right


def test_empty_memory_gives_no_evidence_and_zero_scores() -> None:
    results = qa.answer_over_memory(Memory(), [COLOUR, CITY], "synth_factoid", OfflineReader())
    assert [r.evidence_ids for r in results] == [(), ()]
    assert [r.score for r in results] == [0.0, 0.0]
    assert evidence_contribution([0.0, 0.0], qa.evidence_steps(results), 3).tolist() == [0.0, 0.0, 0.0]


def test_group_of_rollouts_is_answered_in_one_reasoner_call() -> None:
    memories = [Memory(id_style="short") for _ in range(3)]
    insert(memories[0], "The favourite colour of Zorvan Kell is teal.", 0)
    insert(memories[1], "The favourite colour of Zorvan Kell is crimson.", 1)
    reasoner = RecordingReasoner()
    tasks = [qa.MemoryQuestions(m, [COLOUR, CITY], "synth_factoid") for m in memories]
    results = qa.answer_over_memories(tasks, reasoner)
    assert len(reasoner.calls) == 1 and len(reasoner.calls[0]) == 6
    assert [[r.score for r in group] for group in results] == [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert results[1][0].prediction == "crimson" and results[1][0].evidence_steps == (1,)


def test_chunk_correctness_is_zero_one_per_question_in_one_call() -> None:
    memories = [facts_memory(), Memory()]
    reasoner = RecordingReasoner()
    tasks = [qa.MemoryQuestions(m, [COLOUR, CITY, COLOUR], "synth_factoid") for m in memories]
    correct = qa.chunk_correctness_many(tasks, reasoner)
    assert len(reasoner.calls) == 1
    assert [c.tolist() for c in correct] == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert all(r.source == CHUNK_QA_SOURCE for r in reasoner.calls[0])  # asked without the source's prefix
    assert qa.chunk_correctness(Memory(), [], "synth_factoid", reasoner).shape == (0,)


def test_chunk_qas_of_classification_sources_are_boxed_labels() -> None:
    memory = Memory()
    insert(memory, "Sample: the striker and the referee at the stadium; Label: 3.", 0)
    question = QA("Sample: the striker scored\nWhat is the label for the above sample?", ("3",))
    reasoner = RecordingReasoner()
    assert qa.chunk_correctness(memory, [question], "synth_icl", reasoner).tolist() == [1.0]
    assert reasoner.calls[0][0].source == "synth_icl"


def test_chunk_qa_scoring_is_containment() -> None:
    assert qa.score_answer(CHUNK_QA_SOURCE, "now lives in Lima", ["lima"]) == 1.0
    assert qa.score_answer(CHUNK_QA_SOURCE, "Oslo", ["Lima"]) == 0.0


def test_bad_inputs_are_named() -> None:
    with pytest.raises(TypeError, match=r"qas\[0\]"):
        qa.answer_over_memory(Memory(), ["What?"], "squad", OfflineReader())  # type: ignore[list-item]
    with pytest.raises(ValueError, match="top_k"):
        qa.answer_over_memory(Memory(), [COLOUR], "squad", OfflineReader(), top_k=0)
    with pytest.raises(ValueError, match="unknown data source"):
        qa.answer_over_memory(facts_memory(), [COLOUR], "mystery", OfflineReader())


def test_sample_questions() -> None:
    questions = tuple(QA(f"Question {i}?", (str(i),)) for i in range(10))
    picked = qa.sample_questions(questions, 0.2, rng=3)
    assert len(picked) == 2 and picked == tuple(q for q in questions if q in picked)  # original order
    assert picked == qa.sample_questions(questions, 0.2, rng=random.Random(3))
    assert len(qa.sample_questions(questions, 0.01)) == 1
    assert qa.sample_questions(questions, 1.0) == questions
    with pytest.raises(ValueError, match="ratio"):
        qa.sample_questions(questions, 0.0)


# ---------------------------------------------------------------------------- synthetic benchmark
@pytest.fixture(scope="module")
def benchmark() -> list[Instance]:
    knobs = {"train_instances": 0, "test_instances": 6, "sources": ["synth_factoid", "synth_update"]}
    return build_synthetic(knobs, seed=1)["test"]


def oracle_memory(instance: Instance) -> Memory:
    """Exactly the asked facts, at their latest values."""
    memory = Memory(id_style="short")
    for meta in instance.metadata["questions"]:
        sentence = split_sentences(instance.chunks[meta["chunk"]])[meta["sentence"]]
        insert(memory, sentence, meta["chunk"])
    return memory


def mean_over(instances: list[Instance], source: str, answer) -> float:
    return float(np.mean([qa.mean_score(answer(i)) for i in instances if i.source == source]))


@pytest.mark.parametrize("source", ["synth_factoid", "synth_update"])
def test_offline_reader_needs_the_fact_in_memory(benchmark: list[Instance], source: str) -> None:
    reader = OfflineReader()
    oracle = mean_over(
        benchmark, source, lambda i: qa.answer_over_memory(oracle_memory(i), i.questions, source, reader)
    )
    empty = mean_over(benchmark, source, lambda i: qa.answer_over_memory(Memory(), i.questions, source, reader))
    assert oracle >= 0.85
    assert empty == 0.0


def test_keeping_stale_facts_hurts_on_updates(benchmark: list[Instance]) -> None:
    reader = OfflineReader()
    everything = mean_over(benchmark, "synth_update", lambda i: store_everything(i, reader))
    oracle = mean_over(
        benchmark, "synth_update", lambda i: qa.answer_over_memory(oracle_memory(i), i.questions, i.source, reader)
    )
    assert everything < oracle - 0.2
