"""One memory length for a baseline, whether notebook 02's summary or notebook 04's records count it."""

from __future__ import annotations

import pandas as pd
import pytest

from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.data.prepared import load_prepared, save_prepared
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.evaluation import memory_length
from finemem_lib.evaluation.methods import Method
from finemem_lib.evaluation.per_instance import evaluate_baselines
from finemem_lib.evaluation.runner import _header, preflight, run_evaluation
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths

NAMES = ["rag_bm25", "long_context", "store_everything"]


@pytest.fixture
def smoke(tmp_path):
    cfg = load_profile("smoke")
    paths = profile_paths(cfg, tmp_path / "results", tmp_path / "data")
    save_prepared(build_synthetic(cfg["data"], cfg["seed"]), paths.data)
    return cfg, paths


def test_the_summary_and_the_records_count_the_same_memory(smoke):
    cfg, paths = smoke
    records = run_evaluation(cfg, paths, methods=NAMES, benchmarks=["memalpha"], progress=False)
    recorded = records.groupby(["method", "instance_id"])["memory_tokens"].first()
    test = load_prepared(paths.data, "test")
    summary = evaluate_baselines(test, build_reasoner(cfg.get("reasoner")), cfg, names=NAMES)
    counted = summary.set_index(["method", "instance_id"])["memory_tokens"]
    pd.testing.assert_series_equal(recorded.sort_index(), counted.sort_index(), check_dtype=False, check_names=False)
    # RAG's memory is the text it hands the reader, not the chunks it could retrieve from (store-everything's)
    means = counted.groupby(level="method").mean()
    assert 0 < means["rag_bm25"] < means["store_everything"]


def test_records_made_under_another_memory_length_definition_are_redone(smoke, monkeypatch):
    cfg, paths = smoke
    bench = preflight(cfg, paths, methods=["rag_bm25"], benchmarks=["memalpha"]).benchmarks[0]
    rag, manager = Method("rag_bm25", "baseline"), Method("m", "manager", "no/such/model")
    before = _header(cfg, bench, rag)["config_hash"], _header(cfg, bench, manager)["config_hash"]
    monkeypatch.setattr("finemem_lib.evaluation.runner.MEMORY_LENGTH_DEFINITION", memory_length.DEFINITION + "!")
    after = _header(cfg, bench, rag)["config_hash"], _header(cfg, bench, manager)["config_hash"]
    assert before[0] != after[0] and before[1] == after[1]  # a manager's memory is its final memory either way
