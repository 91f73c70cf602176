"""Scripted reference policies (ceilings), the sentence kinds they read, and the manager's view."""

from __future__ import annotations

import pytest

from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.agents.teacher import TeacherConfig, replay_teacher
from finemem_lib.agents.view import manager_view
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.sentences import split_sentences
from finemem_lib.data.instance import QA, Instance
from finemem_lib.data.roles import MissingRolesError, has_roles, sentence_kinds
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes import ceilings
from finemem_lib.episodes.baselines import store_everything
from finemem_lib.evaluation.methods import baseline_result, discover_methods
from finemem_lib.infra.paths import profile_paths

KNOBS = {"train_instances": 0, "test_instances": 4, "chunks_per_instance": 6, "sentences_per_chunk": 8}
LURED = {**KNOBS, "lure_ratio": 0.5, "sources": ["synth_update"]}


@pytest.fixture(scope="module")
def bench():
    return build_synthetic(KNOBS, seed=0)["test"]


@pytest.fixture(scope="module")
def reasoner():
    return build_reasoner({"backend": "offline"})


def _texts(memory):
    return {item.content for item in memory.items}


def _by_kind(instance, kinds):
    return {
        s
        for chunk, chunk_kinds in zip(instance.chunks, sentence_kinds(instance), strict=True)
        for s, k in zip(split_sentences(chunk), chunk_kinds, strict=True)
        if k in kinds
    }


def test_oracle_keeps_facts_drops_filler_and_lures_and_replaces_stale_values():
    for instance in build_synthetic(LURED, seed=0)["test"]:
        memory = ceilings.ceiling_memory("oracle", instance)
        kept = _texts(memory)
        assert not kept & _by_kind(instance, ("filler", "lure"))
        assert _by_kind(instance, ("other_fact",)) <= kept
        meta = instance.metadata["sentences"]
        latest = {}  # key -> text of its last statement
        for chunk, records in zip(instance.chunks, meta, strict=True):
            for text, record in zip(split_sentences(chunk), records, strict=True):
                if record["role"] in ("fact", "update"):
                    latest[record["key"]] = text
        held = [t for t in kept if any(t == v for v in latest.values())]
        assert set(latest.values()) <= kept
        stale = _by_kind(instance, ("fact", "update")) - set(latest.values())
        assert not stale & kept, "an UPDATE should have replaced the old statement"
        assert len(held) == len(latest)


def test_oracle_scores_full_marks_where_store_everything_keeps_stale_values(bench, reasoner):
    update = [inst for inst in bench if inst.source == "synth_update"]
    oracle = [r.score for inst in update for r in ceilings.run_ceiling("oracle", inst, reasoner)[0]]
    everything = [r.score for inst in update for r in store_everything(inst, reasoner)]
    assert sum(oracle) / len(oracle) == 1.0
    assert sum(everything) < sum(oracle)


def test_skip_filler_never_updates_and_question_oracle_is_a_subset(bench):
    for instance in bench:
        skip = _texts(ceilings.ceiling_memory("skip_filler", instance))
        assert skip == _by_kind(instance, ("fact", "update", "example", "other_fact"))
        oracle = _texts(ceilings.ceiling_memory("oracle", instance))
        asked = _texts(ceilings.ceiling_memory("oracle_questions", instance))
        assert asked <= oracle
        if instance.source != "synth_icl":
            assert len(asked) < len(oracle)


def test_view_limited_oracle_keeps_stale_items_that_related_view_recovers(bench):
    update = [inst for inst in bench if inst.source == "synth_update"]
    recent = {"memory": {"view_k": 5, "view_related": 0}}
    related = {"memory": {"view_k": 5, "view_related": 3}}
    full = sum(len(ceilings.ceiling_memory("oracle", i)) for i in update)
    limited = sum(len(ceilings.ceiling_memory("oracle_view", i, recent)) for i in update)
    helped = sum(len(ceilings.ceiling_memory("oracle_view", i, related)) for i in update)
    assert limited > full  # stale items left behind by updates the view hid
    assert full <= helped < limited


def test_teacher_ceiling_replays_the_sft_teacher(bench):
    cfg = {"sft": {"teacher": {"p_store_fact": 0.8, "p_store_distractor": 0.2, "p_update": 0.3, "seed": 1}}}
    for instance in bench:
        memory = ceilings.ceiling_memory("teacher", instance, cfg)
        replay = Memory(id_style="short")
        for step in replay_teacher(instance, TeacherConfig(0.8, 0.2, 0.3, seed=1)):
            replay.apply_all(step.ops, step.step, step.sentences)
        assert [(i.id, i.content, i.step) for i in memory.items] == [(i.id, i.content, i.step) for i in replay.items]


def test_instances_without_roles_fail_with_a_clear_error(reasoner):
    bare = Instance("x/0", "synth_factoid", ("A sentence. Another one.",), (QA("What?", ("a",)),))
    assert not has_roles(bare)
    with pytest.raises(MissingRolesError, match="x/0"):
        ceilings.run_ceiling("oracle", bare, reasoner)
    with pytest.raises(ValueError, match="unknown ceiling"):
        ceilings.ceiling_memory("nope", bare)


def test_ceilings_are_methods_of_a_profile(bench, reasoner, tmp_path):
    cfg = {"evaluation": {"baselines": [], "ceilings": ["oracle", "teacher"], "trained_managers": False}}
    paths = profile_paths(cfg, results_dir=tmp_path / "r", data_dir=tmp_path / "d")
    methods = [m for m in discover_methods(cfg, paths) if m.role == "ceiling"]
    assert [(m.name, m.kind) for m in methods] == [("oracle", "baseline"), ("teacher", "baseline")]
    result = baseline_result("oracle", bench[0], reasoner, cfg)
    assert result.memory_items == len(ceilings.ceiling_memory("oracle", bench[0]))
    assert all(r.score == 1.0 for r in result.results)
    assert all(text for texts in result.evidence_texts for text in texts)
    with pytest.raises(ValueError, match=r"evaluation\.ceilings"):
        discover_methods({**cfg, "evaluation": {**cfg["evaluation"], "ceilings": ["nope"]}}, paths)


def test_manager_view_adds_the_items_the_chunk_is_about():
    memory = Memory(id_style="short")
    sentences = [f"The home city of Person{i} Kel is Oslo{i}." for i in range(8)]
    memory.apply_all([Operation(OpKind.INSERT, content=s) for s in sentences], step=0)
    update = ["The home city of Person0 Kel is now Lima.", "On Monday, the ferry was late."]
    assert manager_view(memory, 5, "recency", update, 0) == memory.view(5)
    shown = manager_view(memory, 5, "recency", update, 2)
    assert "m1" in {item.id for item in shown} and "m1" not in {item.id for item in memory.view(5)}
    assert [item.id for item in shown] == [item.id for item in memory.view(None) if item in shown]
    assert len(shown) <= 7
    with pytest.raises(ValueError):
        manager_view(memory, -1)


# ---------------------------------------------------------------------------- ceilings in the evaluation stage
@pytest.fixture
def smoke(tmp_path):
    from finemem_lib.data.prepared import save_prepared
    from finemem_lib.infra.config import load_profile

    cfg = load_profile("smoke")
    paths = profile_paths(cfg, tmp_path / "results", tmp_path / "data")
    save_prepared(build_synthetic(cfg["data"], cfg["seed"]), paths.data)
    return cfg, paths


def test_ceilings_run_where_the_instances_carry_roles_and_skip_mab_in_one_line(smoke, caplog):
    import json

    from finemem_lib.evaluation.plots import plot_score_vs_memory
    from finemem_lib.evaluation.runner import ceilings_log_path, run_evaluation
    from finemem_lib.evaluation.tables import instance_scores, paper_tables, rows_of_kind

    cfg, paths = smoke
    assert cfg["evaluation"]["ceilings"] == list(ceilings.CEILINGS)  # the default profile's, inherited
    methods = ["rag_bm25", "oracle", "teacher"]
    with caplog.at_level("INFO", logger="finemem_lib.evaluation.runner"):
        records = run_evaluation(cfg, paths, methods=methods, progress=False)
    per_benchmark = records.groupby("benchmark")["method"].unique()
    assert set(per_benchmark["memalpha"]) == {"rag_bm25", "oracle", "teacher"}
    assert set(per_benchmark["mab"]) == {"rag_bm25"}  # skipped, not an error
    skipped = [r for r in caplog.records if "skipped on mab" in r.getMessage()]
    assert len(skipped) == 1 and "no per-sentence roles" in skipped[0].getMessage()
    assert set(records.loc[records["method"] == "oracle", "role"]) == {"ceiling"}
    log = json.loads(ceilings_log_path(paths).read_text())
    assert log["applied"] == {"memalpha": ["oracle", "teacher"]} and list(log["skipped"]) == ["mab"]

    tables = paper_tables(records, cfg)
    long, wide = tables["memalpha"]
    assert list(dict.fromkeys(long["method"])) == ["rag_bm25", "oracle", "teacher"]  # ceilings after the methods
    assert set(long.loc[long["method"] != "rag_bm25", "kind"]) == {"ceiling"}
    assert list(wide.iloc[:, 0]) == ["method", "ceiling", "ceiling"]
    assert list(rows_of_kind(wide, "ceiling").index) == ["oracle", "teacher"]
    assert list(rows_of_kind(wide, "method").index) == ["rag_bm25"]
    assert "ceiling" not in set(tables["mab"][0]["kind"])
    cells = long.set_index(["method", "column"])["mean"]
    assert cells[("oracle", "squad")] == cells[("oracle", "lme")] == 1.0  # facts kept, updates made, same reader
    figure = plot_score_vs_memory(instance_scores(records))  # panels memalpha, mab; one legend for both
    legend = [text.get_text() for text in figure.axes[-1].get_legend().get_texts()]
    assert legend == ["rag_bm25", "oracle (ceiling)", "teacher (ceiling)"]


def test_ceilings_where_no_benchmark_carries_roles_leave_the_tables_without_them(smoke, caplog):
    from finemem_lib.evaluation.runner import run_evaluation

    cfg, paths = smoke
    with caplog.at_level("INFO", logger="finemem_lib.evaluation.runner"):
        records = run_evaluation(cfg, paths, methods=["closed_book", "oracle"], benchmarks=["mab"], progress=False)
    assert set(records["method"]) == {"closed_book"}
    assert any(r.levelname == "WARNING" and "no ceiling" in r.getMessage() for r in caplog.records)


def test_asking_for_ceilings_leaves_the_other_methods_records_valid(smoke):
    from finemem_lib.evaluation.methods import Method
    from finemem_lib.evaluation.runner import _header, preflight

    cfg, paths = smoke
    bench = preflight(cfg, paths, methods=["rag_bm25"], benchmarks=["memalpha"]).benchmarks[0]
    without = {**cfg, "evaluation": {**cfg["evaluation"], "ceilings": []}}
    rag = Method("rag_bm25", "baseline")
    assert _header(cfg, bench, rag)["config_hash"] == _header(without, bench, rag)["config_hash"]
    teacher = Method("teacher", "baseline", role="ceiling")
    other = {**cfg, "sft": {**cfg["sft"], "teacher": {"p_store_fact": 0.5}}}
    assert _header(cfg, bench, teacher)["config_hash"] != _header(other, bench, teacher)["config_hash"]
