"""Long-context, RAG-BM25 over raw chunks, and store-everything baselines."""

from __future__ import annotations

import numpy as np
import pytest

from finemem_lib.agents import AnswerRequest, Reasoner
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core.tokens import regex_token_count
from finemem_lib.data.instance import QA, Instance
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes import baselines, qa

CHUNKS = (
    "The favourite colour of Zorvan Kell is teal. On Monday, the ferry was closed for repairs.",
    "Mira Holt lives in the city of Oslo. Last week, the museum hosted a small concert.",
    "Mira Holt now lives in the city of Lima. Every weekend Ivo Dal plays tennis with friends.",
)
COLOUR = QA("What is the favourite colour of Zorvan Kell?", ("teal",))
CITY = QA("According to the latest information, in which city does Mira Holt live?", ("Lima",))
SPORT = QA("Which sport does Ivo Dal play every weekend?", ("tennis",))
INSTANCE = Instance("toy/0", "synth_update", CHUNKS, (COLOUR, CITY, SPORT))


class PassageReasoner(Reasoner):
    """Stands in for an LLM backend: records what it is given and answers nothing useful."""

    def __init__(self) -> None:
        self.requests: list[AnswerRequest] = []

    def _answer_texts(self, requests: list[AnswerRequest]) -> list[str]:
        self.requests.extend(requests)
        return ["no idea"] * len(requests)


def scores(results: list[qa.QAResult]) -> list[float]:
    return [r.score for r in results]


# ---------------------------------------------------------------------------- long context
def test_tail_window_keeps_whole_sentences_from_the_end() -> None:
    window = baselines.tail_window(INSTANCE, 20)
    assert sum(regex_token_count(item.content) for item in window) <= 20
    assert [item.id for item in window] == ["c2.s0", "c2.s1"]
    assert [item.step for item in window] == [2, 2]
    everything = baselines.tail_window(INSTANCE, 10_000)
    assert len(everything) == 6 and everything[0].id == "c0.s0"


def test_tail_window_cuts_an_overlong_last_sentence() -> None:
    window = baselines.tail_window(INSTANCE, 4)
    assert len(window) == 1 and window[0].content == "tennis with friends."
    with pytest.raises(ValueError, match="max_tokens"):
        baselines.tail_window(INSTANCE, 0)


def test_long_context_sees_only_its_window() -> None:
    reader = OfflineReader()
    assert scores(baselines.long_context(INSTANCE, reader, 20)) == [0.0, 1.0, 1.0]
    assert scores(baselines.long_context(INSTANCE, reader, 10_000)) == [1.0, 1.0, 1.0]  # newest statement wins


def test_long_context_gives_llms_passages_in_reading_order() -> None:
    reasoner = PassageReasoner()
    results = baselines.long_context(INSTANCE, reasoner, 10_000)
    items = reasoner.requests[0].items
    assert [item.id for item in items] == ["c0", "c1", "c2"]
    assert items[2].content == CHUNKS[2]
    assert results[0].evidence_steps == (0, 1, 2)


# ---------------------------------------------------------------------------- RAG over raw chunks
def test_rag_bm25_retrieves_top_two_chunks() -> None:
    reasoner = PassageReasoner()
    results = baselines.rag_bm25(INSTANCE, reasoner, top_k=2)
    assert all(len(r.items) == 2 for r in reasoner.requests)
    assert reasoner.requests[0].items[0].id == "c0"  # the colour question finds its chunk first
    assert results[0].evidence_steps[0] == 0
    one = baselines.rag_bm25(INSTANCE, PassageReasoner(), top_k=1)
    assert all(len(r.evidence_ids) == 1 for r in one)


def test_rag_bm25_splits_retrieved_chunks_into_sentences_for_the_reader() -> None:
    results = baselines.rag_bm25(INSTANCE, OfflineReader(), top_k=2)
    assert results[0].prediction == "teal" and results[0].score == 1.0
    assert all(len(r.evidence_ids) == 4 for r in results)  # two chunks of two sentences
    assert all(i.startswith("c") and ".s" in i for r in results for i in r.evidence_ids)


# ---------------------------------------------------------------------------- store everything
def test_store_everything_memory_holds_every_sentence_at_its_step() -> None:
    memory = baselines.store_everything_memory(INSTANCE)
    assert len(memory) == 6
    assert [item.step for item in memory.items] == [0, 0, 1, 1, 2, 2]
    results = baselines.store_everything(INSTANCE, OfflineReader())
    assert results[0].score == 1.0 and results[2].score == 1.0
    assert all(set(r.evidence_steps) <= {0, 1, 2} for r in results)


def test_run_baseline_reads_the_profile() -> None:
    cfg = {"retrieval": {"top_k": 1}, "baselines": {"long_context_tokens": 20}}
    long_ctx = baselines.run_baseline("long_context", [INSTANCE], OfflineReader(), cfg)
    assert scores(long_ctx[0]) == [0.0, 1.0, 1.0]
    rag = baselines.run_baseline("rag_bm25", [INSTANCE, INSTANCE], PassageReasoner(), cfg)
    assert len(rag) == 2 and all(len(r.evidence_ids) == 1 for r in rag[0])
    with pytest.raises(ValueError, match="unknown baseline 'oracle'"):
        baselines.run_baseline("oracle", [INSTANCE], OfflineReader())


def test_baselines_on_the_synthetic_benchmark_order_as_expected() -> None:
    test = build_synthetic({"train_instances": 0, "test_instances": 6}, seed=2)["test"]
    reader = OfflineReader()

    def mean(name: str, source: str, **cfg: int) -> float:
        instances = [i for i in test if i.source == source]
        profile = {"baselines": {"long_context_tokens": cfg.get("window", 32768)}}
        return float(np.mean([qa.mean_score(r) for r in baselines.run_baseline(name, instances, reader, profile)]))

    assert mean("long_context", "synth_factoid") >= 0.9  # the whole instance fits the window
    assert mean("long_context", "synth_factoid", window=64) < mean("long_context", "synth_factoid", window=256)
    assert mean("store_everything", "synth_update") < mean("store_everything", "synth_factoid")
    assert mean("rag_bm25", "synth_icl") > 0.0
