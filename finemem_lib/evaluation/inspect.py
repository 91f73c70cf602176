"""Looking inside an evaluation: benchmark sizes against training, and questions where two methods differ."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from finemem_lib.core.tokens import TokenCounter, regex_token_count
from finemem_lib.data.instance import Instance
from finemem_lib.evaluation.benchmarks import Benchmark


def benchmark_overview(
    benchmarks: Sequence[Benchmark], train: Sequence[Instance] = (), count: TokenCounter = regex_token_count
) -> pd.DataFrame:
    """Per benchmark and source: instances, questions, mean chunks and tokens, and chunks relative to training."""
    train_chunks = sum(i.num_chunks for i in train) / len(train) if train else float("nan")
    rows = []
    for bench in benchmarks:
        for inst in bench.instances:
            rows.append(
                {
                    "benchmark": bench.name,
                    "source": inst.source,
                    "chunks": inst.num_chunks,
                    "tokens": sum(count(c) for c in inst.chunks),
                    "questions": len(inst.questions),
                }
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    table = frame.groupby(["benchmark", "source"], sort=False).agg(
        instances=("chunks", "size"),
        questions=("questions", "sum"),
        chunks=("chunks", "mean"),
        tokens=("tokens", "mean"),
    )
    table["chunks_vs_train"] = table["chunks"] / train_chunks
    return table.round(2)


def compare_methods(records: pd.DataFrame, better: str, worse: str) -> pd.DataFrame:
    """Questions answered by both methods, side by side: score, prediction and retrieved texts of each, and the gap."""
    keys = ["benchmark", "instance_id", "question"]
    cols = [*keys, "source", "golds", "score", "prediction", "evidence_texts", "evidence_steps", "memory_tokens"]
    a = records.loc[records["method"] == better, cols]
    b = records.loc[records["method"] == worse, cols]
    merged = a.merge(b.drop(columns=["source", "golds"]), on=keys, suffixes=(f"[{better}]", f"[{worse}]"))
    merged["gap"] = merged[f"score[{better}]"] - merged[f"score[{worse}]"]
    return merged


def example_pair(records: pd.DataFrame, trained: str, start: str) -> tuple[pd.Series | None, pd.Series | None]:
    """One question where ``trained`` beats ``start`` and one where it loses (largest gaps; None if there is none)."""
    merged = compare_methods(records, trained, start)
    if merged.empty:
        return None, None
    ordered = merged.sort_values(["gap", "benchmark", "instance_id"], ascending=[False, True, True])
    win = ordered.iloc[0] if ordered.iloc[0]["gap"] > 0 else None
    last = ordered.iloc[-1]
    return win, (last if last["gap"] < 0 else None)


def describe_example(row: pd.Series | None, trained: str, start: str) -> str:
    """A readable account of one compared question (what each method answered from what it retrieved)."""
    if row is None:
        return "(no such question)"
    lines = [
        f"[{row['benchmark']}] {row['instance_id']} ({row['source']})",
        f"Q: {row['question']}",
        f"gold: {row['golds']}",
    ]
    for method in (trained, start):
        lines.append(f"-- {method}: score {row[f'score[{method}]']:.2f}, answer {row[f'prediction[{method}]']!r}")
        for text, step in zip(row[f"evidence_texts[{method}]"], row[f"evidence_steps[{method}]"], strict=False):
            lines.append(f"     retrieved (written at step {step}): {text}")
        if not row[f"evidence_texts[{method}]"]:
            lines.append("     retrieved nothing")
    return "\n".join(lines)
