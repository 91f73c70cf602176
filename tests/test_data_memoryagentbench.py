"""The MemoryAgentBench loader on local parquet in the published row schema."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finemem_lib.data.memalpha import DataNotAvailableError, DataSchemaError
from finemem_lib.data.memoryagentbench import MAB_SPLITS, load_memoryagentbench, mab_row


def context(n_sentences: int) -> str:
    return " ".join(f"Fact number {i} says the code is c{i}." for i in range(n_sentences))  # 10 regex tokens each


def write_split(folder, split, rows):
    path = folder / "data" / f"{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)  # metadata dicts become a parquet struct, as on the Hub
    return path


@pytest.fixture
def mab_dir(tmp_path):
    write_split(
        tmp_path,
        "Accurate_Retrieval",
        [
            mab_row(context(30), ["Code 1?", "Code 2?"], [["c1"], ["c2", "C2"]], source="ruler_qa1_197K"),
            mab_row(context(5), ["Code 3?"], [["c3"]], source="eventqa_full"),
            mab_row(context(8), ["Code 4?"], [["c4"]], source="longmemeval_s_-1_500"),
            mab_row(context(8), ["Code 5?"], [["c5"]], source="longmemeval_s_star"),
        ],
    )
    write_split(
        tmp_path, "Test_Time_Learning", [mab_row(context(300), ["Label?"], [["3"]], source="icl_nlu_8296shot_balance")]
    )
    write_split(
        tmp_path,
        "Conflict_Resolution",
        [mab_row(context(4), ["Latest code?"], [["c3"]], source="factconsolidation_sh_6k")],
    )
    return tmp_path


def test_rows_become_chunked_instances(mab_dir):
    instances = load_memoryagentbench("Accurate_Retrieval", data_dir=mab_dir, chunk_size=100)
    assert [i.id for i in instances] == [
        "ruler_qa1_197K/0",
        "eventqa_full/1",
        "longmemeval_s_-1_500/2",
        "longmemeval_s_star/3",
    ]
    first = instances[0]
    assert first.source == "ruler_qa1_197K" and first.num_chunks == 3  # 30 sentences of 10 tokens, 100 per chunk
    assert " ".join(first.chunks) == context(30)
    assert first.questions[1].answers == ("c2", "C2")
    assert first.metadata == {"source": "ruler_qa1_197K", "split": "Accurate_Retrieval", "chunk_size": 100}


def test_sources_filter_by_name_or_pattern_and_exclude(mab_dir):
    kept = load_memoryagentbench(
        "Accurate_Retrieval",
        sources=["ruler_qa1_197K", "longmemeval_s*"],
        exclude=["longmemeval_s_-1_500"],
        data_dir=mab_dir,
    )
    assert [i.source for i in kept] == ["ruler_qa1_197K", "longmemeval_s_star"]
    assert len(load_memoryagentbench("Accurate_Retrieval", data_dir=mab_dir, max_instances=2)) == 2


def test_test_time_learning_uses_1024_token_chunks_by_default(mab_dir):
    (inst,) = load_memoryagentbench("Test_Time_Learning", data_dir=mab_dir)
    assert inst.metadata["chunk_size"] == 1024 and inst.num_chunks == 3  # 3000 tokens -> 1020 + 1020 + 960


def test_conflict_resolution_is_supported(mab_dir):
    (inst,) = load_memoryagentbench("Conflict_Resolution", data_dir=mab_dir)
    assert inst.source == "factconsolidation_sh_6k" and inst.metadata["chunk_size"] == 2048 and inst.num_chunks == 1


@pytest.mark.parametrize(
    ("row", "detail"),
    [
        (mab_row(context(2), ["Q1?", "Q2?"], [["a"]], source="s"), "expected 2 answer lists, got 1"),
        (mab_row(context(2), ["Q1?"], [[]], source="s"), "item 0: no acceptable answer"),
        (mab_row(context(2), [""], [["a"]], source="s"), "'questions'"),
        (mab_row("", ["Q1?"], [["a"]], source="s"), "'context': empty"),
        (mab_row(context(2), ["Q1?"], [["a"]], origin="no source"), "non-empty 'source'"),
    ],
)
def test_bad_rows_name_split_row_and_column(tmp_path, row, detail):
    write_split(tmp_path, "Long_Range_Understanding", [row])
    with pytest.raises(DataSchemaError) as error:
        load_memoryagentbench("Long_Range_Understanding", data_dir=tmp_path)
    assert "MemoryAgentBench[Long_Range_Understanding] row 0" in str(error.value) and detail in str(error.value)


def test_bad_rows_can_be_skipped(tmp_path, caplog):
    rows = [mab_row(context(2), ["Q?"], [[]], source="s"), mab_row(context(2), ["Q?"], [["a"]], source="s")]
    write_split(tmp_path, "Long_Range_Understanding", rows)
    kept = load_memoryagentbench("Long_Range_Understanding", data_dir=tmp_path, on_error="skip")
    assert [i.id for i in kept] == ["s/1"] and "skipping bad row" in caplog.text


def test_unknown_split_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown MemoryAgentBench split"):
        load_memoryagentbench("Selective_Forgetting", data_dir=tmp_path)
    with pytest.raises(DataNotAvailableError, match="hf download ai-hyz/MemoryAgentBench"):
        load_memoryagentbench("Accurate_Retrieval", data_dir=tmp_path)
    assert len(MAB_SPLITS) == 4
