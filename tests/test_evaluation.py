"""The evaluation stage: records, column mapping, bootstrap tables, baselines, preflight and bring-your-own sources."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finemem_lib.agents import instructions
from finemem_lib.agents.reasoner import AnswerRequest, Reasoner
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core import metrics
from finemem_lib.data.instance import QA, Instance
from finemem_lib.data.prepared import save_prepared
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes import baselines
from finemem_lib.evaluation import evaluate_baselines, evaluate_manager, summary_table
from finemem_lib.evaluation.columns import MAB_LAYOUT, MEMALPHA_LAYOUT, column_for
from finemem_lib.evaluation.methods import Method, run_manager
from finemem_lib.evaluation.records import RecordStore, read_records
from finemem_lib.evaluation.runner import EvaluationSetupError, preflight, records_path, run_evaluation
from finemem_lib.evaluation.sources import UnknownSourceError, register_sources
from finemem_lib.evaluation.tables import bootstrap_table, instance_scores, wide_table
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths
from tests.tiny import TINY_BENCH, tiny_policy


def _record(instance_id: str, score: float = 1.0) -> dict:
    return {"instance_id": instance_id, "question": "q", "score": score}


# ---------------------------------------------------------------------------- records
def test_records_resume_from_finished_instances_only(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path, {"config_hash": "abc", "model": "m"})
    store.append_instance([_record("a"), _record("a", 0.0)])
    store.append_instance([_record("b")])
    with pytest.raises(ValueError, match="already recorded"):
        store.append_instance([_record("a")])
    with path.open("a") as handle:  # a kill mid-write: one line of a 3-question instance, then a torn line
        handle.write(json.dumps({"type": "record", **_record("c"), "q": 0, "n_questions": 3}) + "\n")
        handle.write('{"type": "record", "instance_id": "c", "q": 1, "n_qu')
    reopened = RecordStore(path, {"config_hash": "abc", "model": "m"})
    assert reopened.finished() == {"a", "b"}
    assert [(r["instance_id"], r["q"]) for r in reopened.records] == [("a", 0), ("a", 1), ("b", 0)]
    header, records = read_records(path)
    assert header["config_hash"] == "abc" and header["model"] == "m" and len(records) == 3
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == 4


def test_records_of_another_configuration_are_moved_aside(tmp_path):
    path = tmp_path / "r.jsonl"
    RecordStore(path, {"config_hash": "old"}).append_instance([_record("a")])
    store = RecordStore(path, {"config_hash": "new"})
    assert store.finished() == set()
    assert len(list(tmp_path.glob("r.stale-*.jsonl"))) == 1
    with pytest.raises(ValueError, match="config_hash"):
        RecordStore(tmp_path / "x.jsonl", {})


# ---------------------------------------------------------------------------- columns and tables
def test_sources_map_onto_the_papers_columns():
    memalpha = {
        "squad": "squad",
        "synth_factoid": "squad",
        "lme_train": "lme",
        "synth_update": "lme",
        "icl_trec_coarse_6600shot_balance": "ttl",
        "ttl_train": "ttl",
        "synth_icl": "ttl",
        "pubmed-rct": "pubmed-rct",
    }
    for source, column in memalpha.items():
        assert column_for(source, MEMALPHA_LAYOUT).name == column
    mab = {
        "ruler_qa1_197K": "SH-Doc",
        "ruler_qa2_421K": "MH-Doc",
        "longmemeval_s*": "LME",
        "icl_trec_coarse_6600shot_balance": "TREC-C",
        "icl_nlu_8296shot_balance": "NLU",
        "icl_trec_fine_6400shot_balance": "TREC-F",
        "icl_clinic150_7050shot_balance": "Clinic",
        "icl_banking77_5900shot_balance": "Banking",
        "infbench_sum_eng_shots2": "InfBench-Sum",
        "factconsolidation_mh_262k": "CR",
    }
    for source, column in mab.items():
        assert column_for(source, MAB_LAYOUT).name == column
    own = column_for("mysrc", MAB_LAYOUT, {"mysrc": {"rule": "f1", "column": "Mine"}})
    assert own.name == "Mine" and own.in_average


def _per_instance(values: dict[str, list[float]], method: str = "m") -> pd.DataFrame:
    rows = [
        {
            "benchmark": "mab",
            "method": method,
            "instance_id": f"{col}/{i}",
            "source": col,
            "column": col,
            "score": v,
            "memory_tokens": 10 * i,
        }
        for col, scores in values.items()
        for i, v in enumerate(scores)
    ]
    return pd.DataFrame(rows)


def test_bootstrap_intervals_and_the_unweighted_average_without_cr():
    frame = _per_instance({"SH-Doc": [1.0, 0.0, 1.0, 1.0], "TREC-C": [0.5, 0.5], "CR": [0.0, 0.0, 0.0]})
    long = bootstrap_table(frame, "mab", samples=500, seed=0).set_index("column")
    assert long.loc["SH-Doc", "mean"] == pytest.approx(0.75)
    assert (
        long.loc["SH-Doc", "lo"] <= 0.75 <= long.loc["SH-Doc", "hi"]
        and long.loc["SH-Doc", "lo"] < long.loc["SH-Doc", "hi"]
    )
    assert long.loc["TREC-C", "lo"] == long.loc["TREC-C", "hi"] == 0.5  # no spread, no interval width
    assert long.loc["avg", "mean"] == pytest.approx((0.75 + 0.5) / 2)  # CR is not averaged; columns unweighted
    assert np.isnan(long.loc["NLU", "mean"]) and long.loc["NLU", "n"] == 0
    again = bootstrap_table(frame, "mab", samples=500, seed=0).set_index("column")
    assert again.loc["avg", "lo"] == long.loc["avg", "lo"]
    wide = wide_table(bootstrap_table(frame, "mab", samples=200))
    assert wide.loc["m", ("TTL", "NLU")] == "–" and wide.loc["m", ("AR", "SH-Doc")].startswith("0.750 [")
    assert list(wide.columns.get_level_values(1))[:4] == ["kind", "SH-Doc", "MH-Doc", "LME"]
    assert wide.loc["m", ("", "kind")] == "method"  # a method, not a ceiling (scripted reference policy)


# ---------------------------------------------------------------------------- baselines and managers
class EchoReasoner(Reasoner):
    """Answers every question with its first gold from a fixed table (a reasoner with prior knowledge)."""

    def __init__(self, known: dict[str, str]) -> None:
        self.known, self.requests = known, []

    def _answer_texts(self, requests: list[AnswerRequest]) -> list[str]:
        self.requests.extend(requests)
        return [self.known.get(r.question, "no idea") for r in requests]


def test_closed_book_sees_no_memory():
    inst = Instance(
        "synth_factoid/0",
        "synth_factoid",
        ("The pet of Ana Kel is a parrot.",),
        (QA("What is the pet of Ana Kel?", ("parrot",)), QA("Who?", ("x",))),
    )
    assert [r.score for r in baselines.closed_book(inst, OfflineReader())] == [0.0, 0.0]
    reasoner = EchoReasoner({"What is the pet of Ana Kel?": "a parrot"})
    results = baselines.closed_book(inst, reasoner)
    assert [r.score for r in results] == [1.0, 0.0] and all(r.evidence_ids == () for r in results)
    assert all(req.items == () for req in reasoner.requests)


def test_manager_results_carry_the_retrieved_texts_of_its_memory():
    bench = build_synthetic(TINY_BENCH, seed=0)
    policy = tiny_policy(bench["train"])
    cfg = load_profile("smoke")
    cfg["manager"]["sampling"]["max_new_tokens"] = 24
    (result,) = run_manager(policy, bench["test"][:1], OfflineReader(), cfg)
    assert len(result.results) == len(bench["test"][0].questions)
    for qa_result, texts in zip(result.results, result.evidence_texts, strict=True):
        assert len(texts) == len(qa_result.evidence_ids) and all(isinstance(t, str) and t for t in texts)
    assert result.memory_tokens >= 0 and 0.0 <= result.extra["format_rate"] <= 1.0


def test_per_instance_names_work_from_the_package():
    bench = build_synthetic(TINY_BENCH, seed=0)
    cfg = load_profile("smoke")
    frame = evaluate_baselines(bench["test"], OfflineReader(), cfg)
    assert set(frame["method"]) == {"long_context", "rag_bm25", "store_everything"}
    assert "avg" in summary_table(frame).columns and callable(evaluate_manager)


# ---------------------------------------------------------------------------- the stage
@pytest.fixture
def smoke(tmp_path):
    cfg = load_profile("smoke")
    paths = profile_paths(cfg, tmp_path / "results", tmp_path / "data")
    save_prepared(build_synthetic(cfg["data"], cfg["seed"]), paths.data)
    return cfg, paths


BASELINE_NAMES = ["long_context", "rag_bm25", "store_everything", "closed_book"]


def test_run_writes_one_record_per_question_with_a_header(smoke):
    cfg, paths = smoke
    records = run_evaluation(cfg, paths, methods=BASELINE_NAMES, progress=False)
    plan = preflight(cfg, paths, methods=BASELINE_NAMES)
    expected = sum(len(i.questions) for b in plan.benchmarks for i in b.instances) * len(BASELINE_NAMES)
    assert len(records) == expected
    assert set(records["benchmark"]) == {"memalpha", "mab"}
    header, lines = read_records(records_path(paths, "mab", "rag_bm25"))
    assert header["method"] == "rag_bm25" and header["config_hash"] and "revision" in header["git"]
    assert {"question", "golds", "prediction", "score", "evidence_ids", "evidence_steps", "memory_tokens"} <= set(
        lines[0]
    )
    assert set(instance_scores(records)["column"]) >= {"squad", "lme", "ttl", "SH-Doc", "CR"}
    again = run_evaluation(cfg, paths, methods=BASELINE_NAMES, progress=False)  # nothing left to do
    assert len(again) == expected


def test_preflight_names_the_fix_for_missing_data_models_and_endpoints(tmp_path, smoke):
    cfg, paths = smoke
    with pytest.raises(EvaluationSetupError, match=r"reproduce.sh --profile smoke --only 03"):
        preflight(cfg, paths, methods=["sft_manager"])
    empty = profile_paths(cfg, tmp_path / "r2", tmp_path / "d2")
    with pytest.raises(EvaluationSetupError, match=r"--only 01"):
        preflight(cfg, empty, methods=["rag_bm25"], benchmarks=["memalpha"])
    remote = {**cfg, "reasoner": {"backend": "openai", "model": "Qwen/Qwen3-32B", "base_url": None}}
    with pytest.raises(EvaluationSetupError, match="vllm serve"):
        preflight(remote, paths, methods=["rag_bm25"], benchmarks=["mab"])
    with pytest.raises(EvaluationSetupError, match=r"unknown method\(s\) \['nope'\]; this profile has: long_context"):
        preflight(cfg, paths, methods=["nope"], benchmarks=["mab"])


# ---------------------------------------------------------------------------- bring your own
def _own_parquet(path):
    rows = [
        {
            "context": "The vault code of Orla Brisk is 7731. Meanwhile, the tram line stood idle for a while.",
            "questions": ["What is the vault code of Orla Brisk?"],
            "answers": [["7731"]],
            "metadata": {"source": "mysrc"},
        },
        {
            "context": "The vault code of Ivo Tarn is 1234. Nothing else happened.",
            "questions": ["What is the vault code of Ivo Tarn?"],
            "answers": [["1234"]],
            "metadata": {"source": "mysrc"},
        },
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_bring_your_own_source_needs_a_rule_and_then_is_evaluated(smoke, tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "RULE_TABLES", dict(metrics.RULE_TABLES))  # restored after the test
    monkeypatch.setattr(instructions, "QUERY_INSTRUCTIONS", instructions.QUERY_INSTRUCTIONS)
    cfg, paths = smoke
    custom = {"mine": {"path": str(_own_parquet(tmp_path / "own.parquet")), "split": "Accurate_Retrieval"}}
    cfg = {**cfg, "evaluation": {**cfg["evaluation"], "custom_benchmarks": custom}}
    with pytest.raises(UnknownSourceError, match=r"(?s)mysrc.*Known rules: .*substring_exact_match.*source_rules"):
        preflight(cfg, paths, methods=["rag_bm25"], benchmarks=["mine"])
    rules = {"mysrc": {"rule": "substring_exact_match", "instruction": "Answer with the code only.", "column": "Vault"}}
    cfg = {**cfg, "evaluation": {**cfg["evaluation"], "source_rules": rules}}
    records = run_evaluation(cfg, paths, methods=["rag_bm25", "closed_book"], benchmarks=["mine"], progress=False)
    assert len(records) == 4 and set(records["column"]) == {"Vault"}
    assert records.loc[records["method"] == "rag_bm25", "score"].tolist() == [1.0, 1.0]
    assert instructions.build_query("Q?", "mysrc").startswith("Answer with the code only.")
    with pytest.raises(UnknownSourceError, match="unknown rule"):
        register_sources({"other": "no_such_rule"})
    assert Method("x", "baseline").identity()["fingerprint"] is None


# ---------------------------------------------------------------------------- the LongMemEval judge
def test_records_name_the_scorer_of_judged_sources_and_the_paper_profile_requires_a_judge():
    """The evaluation scores through the profile's scorer (finemem_lib.core.metrics.build_scorer): its records say which
    scorer made each score, and a profile that requires a judge stops before work without one."""
    from finemem_lib.episodes.qa import QAResult
    from finemem_lib.evaluation.methods import InstanceResult
    from finemem_lib.evaluation.runner import _records

    inst = Instance("longmemeval_s*/0", "longmemeval_s*", ("x",), (QA("Where?", ("Lisbon",)),))
    results = [QAResult("Where?", ("Lisbon",), "in Lisbon", 1.0, (), (), inst.source)]
    bench = type("B", (), {"name": "mab", "layout": "mab"})()
    lexical = metrics.build_scorer({}).rule_name(inst.source)
    assert lexical == metrics.LEXICAL_FALLBACK
    rows = _records(InstanceResult(inst, results, [[]], 0, 0), bench, Method("m", "baseline"), {}, lexical)
    assert rows[0]["scored_by"] == lexical and rows[0]["column"] == "LME" and rows[0]["score"] == 1.0
    judged = {"scoring": {"judge": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}}}
    assert metrics.build_scorer(judged).rule_name(inst.source) != lexical
    with pytest.raises(ValueError, match="require"):
        metrics.build_scorer({"scoring": {"require_judge": True}}).check([inst.source])


# ---------------------------------------------------------------------------- the paper profile's data path
def test_paper_mab_reads_mem_alpha_processed_copy_and_says_how_to_get_it(tmp_path, monkeypatch):
    from finemem_lib.data.memalpha import write_memalpha_parquet
    from finemem_lib.evaluation.benchmarks import load_benchmark

    cfg = load_profile("paper")
    paths = profile_paths(cfg, tmp_path / "results", tmp_path / "data")
    cfg["evaluation"]["mab"]["local_dir"] = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationSetupError, match=r"hf download YuWangX/Memalpha-Memoryagentbench"):
        preflight(cfg, paths, methods=["rag_bm25"], benchmarks=["mab"], check_endpoint=False)
    rows = [
        Instance("ruler_qa1_197K/0", "ruler_qa1_197K", ("The code is 7.",), (QA("What is the code?", ("7",)),)),
        Instance(
            "icl_nlu_8296shot_balance/1",
            "icl_nlu_8296shot_balance",
            ("Sample: a; Label: 3.",),
            (QA("Sample: a", ("3",)),),
        ),
    ]
    write_memalpha_parquet(rows, tmp_path / "copy" / "test.parquet")
    cfg["evaluation"]["mab"]["local_dir"] = str(tmp_path / "copy")
    bench = load_benchmark("mab", cfg, paths)
    assert bench.layout == "mab" and [i.source for i in bench.instances] == [
        "ruler_qa1_197K",
        "icl_nlu_8296shot_balance",
    ]
