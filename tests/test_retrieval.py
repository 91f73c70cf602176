"""BM25 retrieval over memory items."""

from rank_bm25 import BM25Okapi

from finemem_lib.core.memory import MemoryItem
from finemem_lib.core.retrieval import BM25Index, bm25_top_k, tokenize


def items(*texts: str) -> list[MemoryItem]:
    return [MemoryItem(f"i{n}", t, n) for n, t in enumerate(texts)]


def test_tokenize_lowercase_words():
    assert tokenize("Alice's CAT, 42 times!") == ["alice", "s", "cat", "42", "times"]


def test_top_k_returns_ids_and_scores_best_first():
    mem = items("The cat sat on the mat.", "Paris is the capital of France.", "A dog barked at the cat twice.")
    hits = bm25_top_k("What is the capital of France?", mem, k=2)
    assert hits[0].id == "i1"
    assert len(hits) == 2 and hits[0].score > hits[1].score


def test_ties_are_broken_by_memory_order():
    mem = items("apple pie", "banana split", "apple tart", "apple cake")
    index = BM25Index(mem)
    hits = index.search("zebra", k=3)  # nothing matches: all scores equal
    assert [h.id for h in hits] == ["i0", "i1", "i2"] and all(h.score == 0 for h in hits)
    same = BM25Index(items("red fish", "red fish")).search("red fish", k=2)
    assert [h.id for h in same] == ["i0", "i1"] and same[0].score == same[1].score


def test_empty_memory_and_empty_query_retrieve_nothing():
    assert BM25Index([]).search("anything", k=2) == []
    assert BM25Index(items("alpha beta")).search("?!", k=2) == []
    assert BM25Index(items("alpha")).search("alpha", k=0) == []


def test_min_score_filters_zero_scores():
    hits = BM25Index(items("alpha beta", "gamma delta")).search("alpha", k=2, min_score=0.0)
    assert [h.id for h in hits] == ["i0"]


def test_agrees_with_rank_bm25_top1_on_distinct_docs():
    docs = [f"entity{i} likes colour{i % 7} and city{i % 11} number{i}" for i in range(200)]
    index = BM25Index([(f"d{i}", d) for i, d in enumerate(docs)])
    reference = BM25Okapi([tokenize(d) for d in docs])
    for q in ["which colour does entity17 like", "city3 number45", "entity150 city7"]:
        ours = index.search(q, k=1)[0].position
        ref_scores = reference.get_scores(tokenize(q))
        assert ours == int(ref_scores.argmax())


def test_accepts_id_text_pairs_and_search_many():
    index = BM25Index([("a", "one two"), ("b", "three four")])
    assert [h[0].id for h in index.search_many(["four", "one"], k=1)] == ["b", "a"]
    assert len(index) == 2
