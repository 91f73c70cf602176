"""Okapi-parity retrieval against rank_bm25 (Mem-alpha's ranker): identical top-k, and speed, in one run.

On ``--memories`` random memories (10 to 200 items of realistic sentences built from a small
vocabulary, so frequent words, negative IDFs and tied scores are common), each with ``--queries``
questions that also carry frequent words:

- parity: ``BM25Index(method="okapi")`` scores and top-k against ``rank_bm25.BM25Okapi`` ranked
  with Mem-alpha's stable sort (``memory_server.py``, ``search_memories``); also how often bm25s's
  Lucene top-k agrees with it;
- speed: query time (scores + top-k on a built index) and index+query time (Mem-alpha builds a
  fresh index per question), ours against rank_bm25, best of ``--repeats``.

Usage: python benchmarks/bench_retrieval.py [--memories 1000] [--queries 5] [--k 2] [--repeats 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from finemem_lib.core.retrieval import BM25Index, tokenize

SUBJECTS = ["The user", "My sister", "Alice", "The company", "Bob", "The team", "Our neighbour", "The doctor"]
VERBS = ["visited", "likes", "moved to", "bought", "works at", "called", "met", "wrote about"]
OBJECTS = ["Paris", "a red car", "the museum", "Rome in 1999", "the new office", "a blue bike", "Lyon", "the park"]
FILLER = ["on Monday", "last year", "with the family", "for the first time", "again", "in the morning", ""]
QUESTION_STARTS = ["What did", "Where did", "When did", "Who", "What is the name of the place"]


def random_memory(rng: random.Random) -> list[str]:
    return [
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(FILLER)}".strip() + "."
        for _ in range(rng.randint(10, 200))
    ]


def random_question(rng: random.Random) -> str:
    return f"{rng.choice(QUESTION_STARTS)} {rng.choice(SUBJECTS).lower()} {rng.choice(VERBS)} {rng.choice(FILLER)}?"


def mem_alpha_top_k(scores: np.ndarray, k: int) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[:k]


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "retrieval_cpu.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cases = [
        (mem, [random_question(rng) for _ in range(args.queries)])
        for mem in (random_memory(rng) for _ in range(args.memories))
    ]

    same_topk = same_scores = lucene_same_set = tied = total = 0
    for texts, questions in cases:
        corpus = [tokenize(t) for t in texts]
        reference = BM25Okapi(corpus)
        ours = BM25Index([(str(i), t) for i, t in enumerate(texts)], method="okapi")
        lucene = BM25Index([(str(i), t) for i, t in enumerate(texts)], method="lucene")
        for q in questions:
            ref_scores = reference.get_scores(tokenize(q))
            expected = mem_alpha_top_k(ref_scores, args.k)
            same_scores += bool(np.array_equal(ours.scores(q), ref_scores))
            same_topk += [h.position for h in ours.search(q, args.k)] == expected
            lucene_same_set += {h.position for h in lucene.search(q, args.k)} == set(expected)
            tied += len(np.unique(ref_scores)) < len(ref_scores)
            total += 1

    indexes = [
        (
            BM25Okapi([tokenize(t) for t in texts]),
            BM25Index([(str(i), t) for i, t in enumerate(texts)], method="okapi"),
            qs,
        )
        for texts, qs in cases
    ]

    def query_ref() -> None:
        for ref, _, qs in indexes:
            for q in qs:
                mem_alpha_top_k(ref.get_scores(tokenize(q)), args.k)

    def query_ours() -> None:
        for _, ours, qs in indexes:
            for q in qs:
                ours.search(q, args.k)

    def build_and_query_ref() -> None:
        for texts, qs in cases:
            for q in qs:
                mem_alpha_top_k(BM25Okapi([tokenize(t) for t in texts]).get_scores(tokenize(q)), args.k)

    def build_and_query_ours() -> None:
        for texts, qs in cases:
            for q in qs:
                BM25Index([(str(i), t) for i, t in enumerate(texts)], method="okapi").search(q, args.k)

    t_query_ref, t_query_ours = best_time(query_ref, args.repeats), best_time(query_ours, args.repeats)
    by_size = {}
    for name, lo, hi in (("10-50 items", 10, 50), ("51-150 items", 51, 150), ("151-200 items", 151, 200)):
        subset = [
            (ref, ours, qs)
            for (ref, ours, qs), (texts, _) in zip(indexes, cases, strict=True)
            if lo <= len(texts) <= hi
        ]

        def sub_ref(subset=subset) -> None:
            for ref, _, qs in subset:
                for q in qs:
                    mem_alpha_top_k(ref.get_scores(tokenize(q)), args.k)

        def sub_ours(subset=subset) -> None:
            for _, ours, qs in subset:
                for q in qs:
                    ours.search(q, args.k)

        r, o = best_time(sub_ref, args.repeats), best_time(sub_ours, args.repeats)
        by_size[name] = {"memories": len(subset), "rank_bm25": r, "okapi": o, "speedup": r / o}
    t_build_ref, t_build_ours = best_time(build_and_query_ref, 1), best_time(build_and_query_ours, 1)
    result = {
        "memories": args.memories,
        "queries": total,
        "k": args.k,
        "items_per_memory": [10, 200],
        "okapi_top_k_identical": same_topk,
        "okapi_scores_bit_identical": same_scores,
        "queries_with_tied_scores": tied,
        "lucene_top_k_set_agrees": lucene_same_set,
        "query_s": {"rank_bm25": t_query_ref, "okapi": t_query_ours, "speedup": t_query_ref / t_query_ours},
        "query_s_by_memory_size": by_size,
        "index_and_query_s": {"rank_bm25": t_build_ref, "okapi": t_build_ours, "speedup": t_build_ref / t_build_ours},
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
