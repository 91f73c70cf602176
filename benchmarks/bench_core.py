"""Speed of the core pieces, as ratios measured in one run.

(a) Reward kernels on G rollouts x T steps x n queries x top-k evidence: the vectorised kernels
    (one batched call for the group) against a plain-Python-loop transcription of the same formulas.
(b) BM25 over a memory of N items: bm25s (used by finemem) against rank_bm25 (Mem-alpha's library),
    indexing and querying, and how often their top-k agree.

Usage: python benchmarks/bench_core.py [--repeats 5] [--items 10000] [--queries 200] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from finemem_lib.core.retrieval import BM25Index, tokenize
from finemem_lib.core.rewards import chunk_step_reward, evidence_contribution, group_advantages, step_rewards


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ----------------------------------------------------------------------------- (a) kernels
def loop_kernels(scores, evidence, correct, fmt, comp, beta=0.5, w1=0.5, w2=0.05):
    """Plain loops: N_t, EARA, CSR, Fine-Mem step rewards and step-wise advantages."""
    G, n = len(scores), len(scores[0])
    T = len(correct[0])
    rewards = []
    for g in range(G):
        N = [0.0] * T
        for j in range(n):
            items = [s for s in evidence[g][j] if s >= 0]
            for step in items:
                N[step] += scores[g][j] / (len(items) * n)
        r_global = sum(scores[g]) / n
        row = []
        for t in range(T):
            answered = [c for c in correct[g][t] if c == c]
            r_chunk = sum(answered) / len(answered) if answered else 0.0
            r_eara = (1 - beta) * r_global / T + beta * N[t]
            row.append(r_eara + fmt[g][t] + w1 * r_chunk + w2 * comp[g])
        rewards.append(row)
    adv = [[0.0] * T for _ in range(G)]
    for t in range(T):
        col = [rewards[g][t] for g in range(G)]
        mean = sum(col) / G
        std = (sum((x - mean) ** 2 for x in col) / (G - 1)) ** 0.5
        for g in range(G):
            adv[g][t] = (col[g] - mean) / (std + 1e-6)
    return adv


def vector_kernels(scores, evidence, correct, fmt, comp, beta=0.5, w1=0.5, w2=0.05):
    """The library kernels, one batched call per kernel for the whole group."""
    T = correct.shape[1]
    N = evidence_contribution(scores, evidence, T)
    r_chunk = chunk_step_reward(correct)
    rewards = step_rewards("finemem", scores.mean(axis=1), N, r_chunk, fmt, comp, beta=beta, w1=w1, w2=w2)
    return group_advantages(rewards, "step")


def bench_kernels(G: int, T: int, n: int, k: int, K: int, repeats: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    scores = rng.random((G, n))
    evidence = rng.integers(-1, T, size=(G, n, k))
    correct = rng.integers(0, 2, size=(G, T, K)).astype(float)
    correct[rng.random((G, T, K)) < 0.2] = np.nan
    fmt = rng.random((G, T))
    comp = rng.random(G)
    lists = (scores.tolist(), evidence.tolist(), correct.tolist(), fmt.tolist(), comp.tolist())
    fast = vector_kernels(scores, evidence, correct, fmt, comp)
    slow = np.asarray(loop_kernels(*lists))
    assert np.allclose(fast, slow), "vectorised and loop kernels disagree"
    t_vec = best_time(lambda: vector_kernels(scores, evidence, correct, fmt, comp), repeats)
    t_loop = best_time(lambda: loop_kernels(*lists), repeats)
    return {"loop_ms": 1e3 * t_loop, "vectorised_ms": 1e3 * t_vec, "speedup": t_loop / t_vec}


# ----------------------------------------------------------------------------- (b) BM25
def synthetic_memory(n_items: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(20000)]
    probs = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    probs /= probs.sum()
    lengths = rng.integers(6, 25, size=n_items)
    return [" ".join(rng.choice(vocab, size=length, p=probs)) for length in lengths]


def bench_bm25(n_items: int, n_queries: int, k: int, repeats: int, seed: int = 0) -> dict[str, float]:
    docs = synthetic_memory(n_items, seed)
    rng = np.random.default_rng(seed + 1)
    queries = [" ".join(docs[i].split()[:4]) for i in rng.integers(0, n_items, size=n_queries)]
    pairs = [(f"d{i}", d) for i, d in enumerate(docs)]

    t_index_ours = best_time(lambda: BM25Index(pairs), repeats)
    t_index_ref = best_time(lambda: BM25Okapi([tokenize(d) for d in docs]), repeats)
    ours, ref = BM25Index(pairs), BM25Okapi([tokenize(d) for d in docs])

    def query_ours():
        return [[h.position for h in ours.search(q, k)] for q in queries]

    def query_ref():
        out = []
        for q in queries:
            s = ref.get_scores(tokenize(q))
            out.append(np.lexsort((np.arange(len(s)), -s))[:k].tolist())
        return out

    t_query_ours = best_time(query_ours, repeats)
    t_query_ref = best_time(query_ref, repeats)
    a, b = query_ours(), query_ref()
    top1 = np.mean([x[0] == y[0] for x, y in zip(a, b, strict=True)])
    topk_overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)])
    return {
        "index_ms_bm25s": 1e3 * t_index_ours,
        "index_ms_rank_bm25": 1e3 * t_index_ref,
        "index_speedup": t_index_ref / t_index_ours,
        "query_ms_bm25s": 1e3 * t_query_ours / n_queries,
        "query_ms_rank_bm25": 1e3 * t_query_ref / n_queries,
        "query_speedup": t_query_ref / t_query_ours,
        "top1_agreement": float(top1),
        f"top{k}_overlap": float(topk_overlap),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--queries-per-episode", type=int, default=100)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()

    kernels = bench_kernels(args.rollouts, args.steps, args.queries_per_episode, args.top_k, 5, args.repeats)
    bm25 = bench_bm25(args.items, args.queries, args.top_k, args.repeats)
    shape = f"{args.rollouts} rollouts x {args.steps} steps x {args.queries_per_episode} queries x top-{args.top_k}"
    print(f"(a) reward kernels, {shape}")
    print(f"    plain loops {kernels['loop_ms']:.2f} ms, vectorised {kernels['vectorised_ms']:.3f} ms")
    print(f"    speedup (loop / vectorised): {kernels['speedup']:.1f}x")
    print(f"(b) BM25 over a {args.items}-item memory, {args.queries} queries, top-{args.top_k}")
    print(
        f"    index: rank_bm25 {bm25['index_ms_rank_bm25']:.0f} ms, bm25s {bm25['index_ms_bm25s']:.0f} ms "
        f"-> {bm25['index_speedup']:.1f}x"
    )
    print(
        f"    query: rank_bm25 {bm25['query_ms_rank_bm25']:.2f} ms/q, bm25s {bm25['query_ms_bm25s']:.3f} ms/q "
        f"-> {bm25['query_speedup']:.1f}x"
    )
    print(
        f"    agreement: top-1 {bm25['top1_agreement']:.3f}, top-{args.top_k} overlap "
        f"{bm25[f'top{args.top_k}_overlap']:.3f}"
    )
    if args.out:
        record = {
            "args": vars(args) | {"out": str(args.out)},
            "machine": platform.platform(),
            "kernels": kernels,
            "bm25": bm25,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
