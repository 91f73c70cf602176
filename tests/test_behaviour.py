"""Store rates by sentence kind, and the miniature's measurement tool."""

from __future__ import annotations

import math

from finemem_lib.core.memory import Operation, OpKind, OpResult
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes import behaviour, ceilings
from finemem_lib.evaluation.miniature import measure, view_coverage, with_overrides


def test_step_counts_count_only_executed_writes():
    kinds = ["fact", "filler", "update", "lure"]
    ops = [
        Operation(OpKind.INSERT, sentence=1),
        Operation(OpKind.INSERT, sentence=2),
        Operation(OpKind.UPDATE, sentence=3, item_id="m1"),
        Operation(OpKind.INSERT, sentence=4),
    ]
    results = [OpResult(True), OpResult(True), OpResult(True), OpResult(False, "bad")]
    counts = behaviour.step_counts(kinds, ops, results)
    rates = behaviour.rates(counts)
    assert rates["store_rate/facts"] == 1.0
    assert rates["store_rate/filler"] == 0.5
    assert rates["store_rate/lure"] == 0.0
    assert math.isnan(rates["store_rate/example"])
    assert rates["updates"] == 1.0


def test_overrides_and_view_coverage():
    cfg = with_overrides({"memory": {"view_k": 5}}, ["memory.view_related=3", "data.synthetic.test_instances=2"])
    assert cfg["memory"] == {"view_k": 5, "view_related": 3}
    bench = build_synthetic({"train_instances": 0, "test_instances": 3, "sources": ["synth_update"]}, 0)["test"]
    recent = view_coverage(bench, {"memory": {"view_k": 5}})
    related = view_coverage(bench, {"memory": {"view_k": 5, "view_related": 3}})
    assert recent["updates"] > 0 and recent["old_item_in_view"] < recent["updates"]
    assert related["old_item_in_view"] > recent["old_item_in_view"]


def test_measure_reports_baselines_and_ceilings():
    knobs = {"synthetic": {"train_instances": 0, "test_instances": 1, "chunks_per_instance": 3}}
    report = measure({"data": knobs})
    names = [row["method"] for row in report["rows"]]
    assert names[:2] == ["store_everything", "rag_bm25"]
    assert names[2:] == [f"ceiling:{name}" for name in ceilings.CEILINGS]
    oracle = report["rows"][2]
    assert oracle["avg"] == 1.0 and oracle["memory_tokens"] < report["rows"][0]["memory_tokens"]
