"""The offline out-of-distribution benchmark in the MemoryAgentBench schema, read back through the real loader."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from finemem_lib.agents.instructions import expects_boxed_label, query_instruction
from finemem_lib.core import metrics
from finemem_lib.core.sentences import split_sentences
from finemem_lib.core.tokens import regex_token_count
from finemem_lib.data.mab_synthetic import (
    SOURCE_SPLITS,
    SOURCES,
    MABSyntheticConfig,
    load_mab_synthetic,
    write_mab_synthetic,
)
from finemem_lib.data.memoryagentbench import load_memoryagentbench
from finemem_lib.evaluation.columns import MAB_LAYOUT, column_for
from finemem_lib.infra.config import load_profile

SMALL = MABSyntheticConfig(instances=2, context_sentences=80, chunk_size=64, questions=4)


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    return load_mab_synthetic(SMALL, 0, tmp_path_factory.mktemp("mab"))


def test_rows_are_in_the_memoryagentbench_schema(tmp_path):
    files = write_mab_synthetic(SMALL, 0, tmp_path)
    assert set(files) == set(SOURCE_SPLITS.values())
    for path in files.values():
        table = pq.read_table(path)
        assert table.column_names == ["context", "questions", "answers", "metadata"]
        for row in table.to_pylist():
            assert isinstance(row["context"], str) and row["context"]
            assert len(row["questions"]) == len(row["answers"]) and all(row["answers"])
            assert row["metadata"]["source"] in SOURCES


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = write_mab_synthetic(SMALL, 0, tmp_path / "a")
    b = write_mab_synthetic(SMALL, 0, tmp_path / "b")
    c = write_mab_synthetic(SMALL, 1, tmp_path / "c")
    for split in a:
        assert a[split].read_bytes() == b[split].read_bytes()
    assert any(a[s].read_bytes() != c[s].read_bytes() for s in a)


def test_read_back_through_the_real_loader_with_chunks_within_budget(instances):
    assert sorted({i.source for i in instances}) == sorted(SOURCES)
    assert len(instances) == SMALL.instances * len(SOURCES)
    assert len({i.id for i in instances}) == len(instances)
    for inst in instances:
        assert inst.metadata["split"] == SOURCE_SPLITS[inst.source]
        assert all(regex_token_count(c) <= SMALL.chunk_size for c in inst.chunks)


def test_default_contexts_are_at_least_three_times_a_training_instance(tmp_path):
    cfg = load_profile("default")
    knobs = cfg["evaluation"]["mab_synthetic"]
    train_chunks = cfg["data"]["synthetic"]["chunks_per_instance"]
    files = write_mab_synthetic(knobs, cfg["seed"], tmp_path)
    for split, path in files.items():
        for inst in load_memoryagentbench(split, data_dir=path, chunk_size=knobs["chunk_size"]):
            assert inst.num_chunks >= 3 * train_chunks, (inst.id, inst.num_chunks)


def test_every_source_is_scored_asked_and_fills_its_paper_column(instances):
    expected = {
        "ruler_qa1_synth": "SH-Doc",
        "ruler_qa2_synth": "MH-Doc",
        "icl_trec_coarse_synth": "TREC-C",
        "icl_banking77_synth": "Banking",
        "infbench_sum_synth": "InfBench-Sum",
        "factconsolidation_sh_synth": "CR",
    }
    assert set(expected) == set(SOURCES)
    for source, column in expected.items():
        metrics.rule_for(source)
        query_instruction(source)
        assert column_for(source, MAB_LAYOUT).name == column
    assert expects_boxed_label("icl_trec_coarse_synth") and not expects_boxed_label("ruler_qa1_synth")


def _sentences(inst):
    return [s for c in inst.chunks for s in split_sentences(c)]


def test_single_hop_answers_sit_in_one_sentence_with_the_subject(instances):
    for inst in (i for i in instances if i.source == "ruler_qa1_synth"):
        for qa in inst.questions:
            subject = re.search(r"the ([A-Z]\w+ [A-Z]\w+)", qa.question).group(1)
            assert any(subject in s and qa.answers[0] in s for s in _sentences(inst)), qa


def test_multi_hop_answers_need_two_sentences(instances):
    for inst in (i for i in instances if i.source == "ruler_qa2_synth"):
        sentences = _sentences(inst)
        for qa in inst.questions:
            subject = re.search(r"where the (\w+ \w+) is located", qa.question).group(1)
            hop_one = [s for s in sentences if subject in s]
            assert hop_one and not any(qa.answers[0] in s for s in hop_one)
            town = re.search(r"town of (\w+)", hop_one[0]).group(1)
            assert any(town in s and qa.answers[0] in s for s in sentences)


def test_conflicts_are_resolved_by_the_latest_statement(instances):
    for inst in (i for i in instances if i.source == "factconsolidation_sh_synth"):
        sentences = _sentences(inst)
        for qa in inst.questions:
            phrase = re.match(r"(?:What|Who) is the (.+)\?$", qa.question).group(1)
            statements = [s for s in sentences if f"the {phrase} is" in s]
            assert len(statements) == 2, statements
            assert qa.answers[0] in statements[-1] and qa.answers[0] not in statements[0]


def test_classification_labels_are_numbers_seen_in_the_context(instances):
    for inst in (i for i in instances if i.source.startswith("icl_")):
        labels = set(re.findall(r"Label: (\d+)\.", " ".join(inst.chunks)))
        assert {qa.answers[0] for qa in inst.questions} <= labels
        assert len(labels) == {"icl_trec_coarse_synth": 6, "icl_banking77_synth": 10}[inst.source]


def test_summary_keywords_are_spread_over_the_context(instances):
    for inst in (i for i in instances if i.source == "infbench_sum_synth"):
        (qa,) = inst.questions
        hits = [t for t, chunk in enumerate(inst.chunks) if any(k in chunk for k in qa.answers)]
        assert len(qa.answers) >= 4 and len(set(hits)) >= 2


def test_bad_knobs_are_rejected():
    with pytest.raises(ValueError, match="unknown mab_synthetic knob"):
        MABSyntheticConfig.from_mapping({"instancez": 2})
    with pytest.raises(ValueError, match="sources"):
        MABSyntheticConfig(sources=("nope",))
    with pytest.raises(ValueError, match="chunk_size"):
        MABSyntheticConfig(chunk_size=0)
