"""Okapi-parity retrieval, Mem-alpha's query, the manager's view, format score and question subsampling."""

from __future__ import annotations

import random

import numpy as np
import pytest
import rank_bm25

from finemem_lib.agents import prompts
from finemem_lib.agents.instructions import CLASSIFICATION_PREFIX
from finemem_lib.core.memory import Memory, MemoryItem, Operation, OpKind
from finemem_lib.core.ops import format_score, parse_operations, render_tool_calls
from finemem_lib.core.retrieval import BM25Index, OkapiScorer, tokenize
from finemem_lib.core.tokens import regex_token_count, token_counter_from_config
from finemem_lib.data.instance import QA
from finemem_lib.episodes.qa import QAOptions, prepare, sample_questions

VOCAB = ["the", "user", "likes", "red", "blue", "cats", "dogs", "paris", "rome", "1999", "is", "a", "of"]


def _random_memory(rng: random.Random) -> list[str]:
    n = rng.randint(1, 60)
    frequent = VOCAB[:4]  # words in most items give negative IDFs (the epsilon floor)
    return [
        " ".join(rng.choice(frequent if rng.random() < 0.5 else VOCAB) for _ in range(rng.randint(0, 9)))
        for _ in range(n)
    ]


def _mem_alpha_top_k(texts: list[str], query: str, k: int) -> tuple[list[int], np.ndarray]:
    """memory_server.py, MemoryProcessor.search_memories: BM25Okapi over ``\\b\\w+\\b`` lower-case tokens,
    ``list.sort(key=score, reverse=True)`` (stable), first k."""
    scores = rank_bm25.BM25Okapi([tokenize(t) for t in texts]).get_scores(tokenize(query))
    order = sorted(range(len(texts)), key=lambda i: scores[i], reverse=True)
    return order[:k], scores


def test_okapi_scores_and_top_k_equal_rank_bm25_on_random_memories():
    """rank_bm25.BM25Okapi (k1 1.5, b 0.75, epsilon 0.25): bit-identical scores, same stable top-k
    (ties included: many items share words and scores)."""
    rng = random.Random(7)
    checked = ties = 0
    for _ in range(400):
        texts = _random_memory(rng)
        if not any(tokenize(t) for t in texts):
            continue
        query = " ".join(rng.choice([*VOCAB, "zebra"]) for _ in range(rng.randint(1, 8)))
        expected, ref_scores = _mem_alpha_top_k(texts, query, 2)
        index = BM25Index([(f"m{i}", t) for i, t in enumerate(texts)], method="okapi")
        assert np.array_equal(index.scores(query), ref_scores)
        assert [h.position for h in index.search(query, 2)] == expected
        ties += len(set(ref_scores.tolist())) < len(texts)
        checked += 1
    assert checked > 300 and ties > 100


def test_okapi_floors_negative_idf_at_epsilon_times_mean_idf():
    """rank_bm25.BM25Okapi._calc_idf: idf < 0 (term in more than half of the docs) becomes epsilon * mean idf."""
    corpus = [["a", "b"], ["a"], ["a", "c"]]
    scorer = OkapiScorer(corpus)
    reference = rank_bm25.BM25Okapi(corpus)
    assert scorer.idf == reference.idf
    assert scorer.idf["a"] == pytest.approx(0.25 * reference.average_idf)
    assert OkapiScorer([[], []]).get_scores(["a"]).tolist() == [0.0, 0.0]


def test_lucene_stays_an_option_and_ranks_differently_on_frequent_words():
    texts = ["the user likes the red car", "the user", "blue"]
    okapi = BM25Index([(str(i), t) for i, t in enumerate(texts)], method="okapi")
    lucene = BM25Index([(str(i), t) for i, t in enumerate(texts)], method="lucene")
    assert okapi.scores("the user").tolist() != lucene.scores("the user").tolist()
    with pytest.raises(ValueError, match="okapi"):
        BM25Index([], method="tfidf")


def test_query_is_mem_alphas_instruction_plus_question():
    """Mem-alpha memalpha/llm_agent/generation.py: ``query_prompt + "\\n\\n" + question`` is what the memory
    server ranks with."""
    opts = QAOptions(query="instruction")
    assert opts.retrieval_query("Which label?", "pubmed-rct") == CLASSIFICATION_PREFIX + "\n\nWhich label?"
    assert opts.retrieval_query("Who?", "squad") == "Who?"
    memory = [
        MemoryItem("a", "label 1 means the article is classified as background", 0),
        MemoryItem("b", "Which city hosted it?", 0),
        MemoryItem("c", "nothing to see", 0),
        MemoryItem("d", "more filler text", 0),
    ]
    question = QA("Which city?", ("x",))
    bare = prepare(memory, [question], "pubmed-rct", 1, QAOptions(top_k=1, bm25="okapi"))
    full = prepare(memory, [question], "pubmed-rct", 1, QAOptions(top_k=1, bm25="okapi", query="instruction"))
    assert bare[0].items[0].id == "b" and full[0].items[0].id == "a"


def test_view_by_position_keeps_an_updated_item_in_place_and_says_showing_k_of_m():
    """Mem-alpha memory.py, Memory.render_system_prompt: ``semantic[-k:]`` by list position, memory_update
    replaces in place, heading "(Only show the most recent k out of M memories)"."""
    memory = Memory()
    memory.apply_all([Operation(OpKind.INSERT, content=f"fact {i}") for i in range(4)], step=0)
    first = memory.items[0].id
    memory.apply(Operation(OpKind.UPDATE, item_id=first, content="fact 0 v2"), step=1)
    assert [i.content for i in memory.view(2, "position")] == ["fact 2", "fact 3"]
    assert [i.content for i in memory.view(2)] == ["fact 3", "fact 0 v2"]
    text = prompts.user_prompt("chunk", memory.view(2, "position"), "content", total=len(memory))
    assert "showing the most recent 2 of 4 items" in text


def test_duplicate_insert_is_not_a_successful_operation():
    """Mem-alpha memalpha/llm_agent/generation.py: a call counts when it "executed successfully" and its
    status is not 'skipped' (functions.py: a duplicate insert is skipped)."""
    memory = Memory()
    memory.apply(Operation(OpKind.INSERT, content="Paris is in France."), step=0)
    ops = [Operation(OpKind.INSERT, content="Paris is in France."), Operation(OpKind.INSERT, content="Rome.")]
    parsed = parse_operations(render_tool_calls(ops, "content"), "content")
    results = memory.apply_all(parsed.operations, step=1)
    assert format_score(parsed, results) == 0.5
    assert format_score(parsed, results, count_duplicates=True) == 1.0


def test_question_subsample_only_above_fifty_questions_in_mem_alphas_rule():
    """Mem-alpha verl/trainer/ppo/ray_trainer.py, fit: ``if len(qas) > 50: random.sample(qas, int(len * ratio))``."""
    qas = [QA(f"q{i}?", ("a",)) for i in range(60)]
    assert len(sample_questions(qas[:50], 0.2, 0, min_questions=50)) == 50
    assert len(sample_questions(qas[:59], 0.2, 0, min_questions=50)) == 11  # int(11.8)
    assert len(sample_questions(qas[:7], 0.2, 0)) == 1  # offline rule: every instance, at least one


def test_token_counter_follows_the_profile():
    assert token_counter_from_config({}) is regex_token_count

    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": list(text)}

    assert token_counter_from_config({"rewards": {"token_counter": "manager"}}, Tok())("abc") == 3
    with pytest.raises(ValueError, match="tokenizer"):
        token_counter_from_config({"rewards": {"token_counter": "manager"}})
