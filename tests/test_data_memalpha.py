"""The Memalpha loader: schema checks that name row and column, local layouts, the offline message."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finemem_lib.data.instance import QA, Instance
from finemem_lib.data.memalpha import (
    DataNotAvailableError,
    DataSchemaError,
    instance_from_row,
    load_memalpha,
    read_memalpha_parquet,
    write_memalpha_parquet,
)

ROOT = Path(__file__).resolve().parents[1]


def memalpha_row(**overrides):
    """A row exactly as in the published Memalpha parquet (no chunk_qas column)."""
    row = {
        "instance_id": 7,
        "prompt": "Remember the dialogue.",
        "chunks": json.dumps(["First chunk. It has two sentences.", "Second chunk."]),
        "questions_and_answers": json.dumps(
            [{"question": "What is first?", "answer": "chunk"}, {"question": "Which label?", "answer": 3}]
        ),
        "data_source": "squad",
        "metadata": json.dumps({"origin": "unit"}),
        "num_chunks": 2,
        "num_questions": 2,
    }
    row.update(overrides)
    return row


def write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_a_published_row_becomes_an_instance():
    inst = instance_from_row(memalpha_row())
    assert inst.id == "squad/7" and inst.source == "squad"
    assert inst.chunks == ("First chunk. It has two sentences.", "Second chunk.")
    assert inst.questions == (QA("What is first?", ("chunk",)), QA("Which label?", ("3",)))
    assert inst.chunk_qas == ((), ())
    assert inst.metadata == {"prompt": "Remember the dialogue.", "origin": "unit"}


def test_list_answers_are_acceptable_answers():
    qas = json.dumps([{"question": "Who?", "answer": ["Ada", "Ada Lovelace"]}])
    inst = instance_from_row(memalpha_row(questions_and_answers=qas, num_questions=1))
    assert inst.questions[0].answers == ("Ada", "Ada Lovelace")


@pytest.mark.parametrize(
    ("overrides", "column", "detail"),
    [
        ({"chunks": "[not json"}, "chunks", "not valid JSON"),
        ({"chunks": json.dumps([])}, "chunks", "non-empty JSON list"),
        ({"chunks": json.dumps(["ok", 3])}, "chunks", "list of strings"),
        ({"questions_and_answers": json.dumps([{"question": "Q?"}])}, "questions_and_answers", "item 0"),
        ({"questions_and_answers": json.dumps([{"question": "Q?", "answer": " "}])}, "questions_and_answers", "empty"),
        ({"questions_and_answers": json.dumps({"question": "Q?"})}, "questions_and_answers", "expected a list"),
        ({"num_chunks": 3}, "num_chunks", "says 3 but the row has 2"),
        ({"num_questions": 5}, "num_questions", "says 5"),
        ({"metadata": json.dumps([1, 2])}, "metadata", "JSON object"),
        ({"data_source": ""}, "data_source", "non-empty string"),
        ({"chunk_qas": json.dumps([[]])}, "chunk_qas", "one entry per chunk"),
        ({"chunk_qas": json.dumps([[], [{"question": "", "answer": "x"}]])}, "chunk_qas", "chunk 1 item 0"),
    ],
)
def test_schema_errors_name_the_row_and_column(tmp_path, overrides, column, detail):
    good = memalpha_row(instance_id=0)
    if "chunk_qas" in overrides:  # same columns in both rows
        good["chunk_qas"] = json.dumps([[], []])
    path = write_rows(tmp_path / "train.parquet", [good, memalpha_row(**overrides)])
    with pytest.raises(DataSchemaError) as error:
        read_memalpha_parquet(path)
    message = str(error.value)
    assert "row 1" in message and f"'{column}'" in message and detail in message and str(path) in message


def test_a_missing_column_is_named():
    row = memalpha_row()
    del row["data_source"]
    with pytest.raises(DataSchemaError, match=r"missing column\(s\) \['data_source'\]"):
        instance_from_row(row, "file.parquet row 4")


def test_bad_rows_can_be_skipped_instead(tmp_path, caplog):
    path = write_rows(tmp_path / "train.parquet", [memalpha_row(instance_id=1), memalpha_row(chunks="{")])
    instances = read_memalpha_parquet(path, on_error="skip")
    assert [i.id for i in instances] == ["squad/1"]
    assert "skipped 1 bad row" in caplog.text


def test_sources_filter_keeps_only_those_data_sources(tmp_path):
    rows = [memalpha_row(instance_id=i, data_source=s) for i, s in enumerate(["squad", "booksum", "squad"])]
    path = write_rows(tmp_path / "train.parquet", rows)
    assert [i.id for i in read_memalpha_parquet(path, sources=["squad"])] == ["squad/0", "squad/2"]


@pytest.mark.parametrize("layout", ["train.parquet", "train-00000-of-00001.parquet", "data/train-00000.parquet"])
def test_load_memalpha_reads_local_layouts(tmp_path, layout):
    write_rows(tmp_path / layout, [memalpha_row()])
    write_rows(tmp_path / layout.replace("train", "test"), [memalpha_row(instance_id=8)])
    assert [i.id for i in load_memalpha("train", data_dir=tmp_path)] == ["squad/7"]
    assert [i.id for i in load_memalpha("test", data_dir=tmp_path)] == ["squad/8"]
    assert [i.id for i in load_memalpha("train", data_dir=tmp_path / layout)] == ["squad/7"]  # a file works too


def test_missing_local_split_says_what_to_run(tmp_path):
    with pytest.raises(DataNotAvailableError, match="hf download YuWangX/Memalpha"):
        load_memalpha("test", data_dir=tmp_path)


def test_not_a_parquet_file_is_a_clear_error(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataSchemaError, match="not a readable parquet"):
        read_memalpha_parquet(path)


def test_written_parquet_has_the_memalpha_columns_and_reads_back_equal(tmp_path):
    instances = [
        Instance(
            "squad/3",
            "squad",
            ("A chunk.", "Another chunk."),
            (QA("Q one?", ("a",)), QA("Q two?", ("b", "bee"))),
            ((QA("Chunk Q?", ("x",)),), ()),
            {"prompt": "P", "nested": {"k": [1, 2]}, "text": "naïve ünïcode"},
        )
    ]
    path = write_memalpha_parquet(instances, tmp_path / "out.parquet")
    table = pq.read_table(path)
    assert table.column_names == [
        "instance_id",
        "prompt",
        "chunks",
        "questions_and_answers",
        "data_source",
        "metadata",
        "num_chunks",
        "num_questions",
        "chunk_qas",
    ]
    row = table.to_pylist()[0]
    assert row["instance_id"] == 3 and row["prompt"] == "P" and json.loads(row["chunks"]) == list(instances[0].chunks)
    assert json.loads(row["questions_and_answers"])[1] == {"question": "Q two?", "answer": ["b", "bee"]}
    assert read_memalpha_parquet(path) == instances


def test_ids_that_cannot_be_written_are_refused(tmp_path):
    bad = Instance("whatever", "squad", ("c",), (QA("q?", ("a",)),))
    with pytest.raises(ValueError, match="'<source>/<integer>'"):
        write_memalpha_parquet([bad], tmp_path / "x.parquet")


def test_offline_hub_without_cache_says_what_to_run_or_pass(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = (
        "from finemem_lib.data.memalpha import load_memalpha, DataNotAvailableError\n"
        "try:\n    load_memalpha('train')\nexcept DataNotAvailableError as e:\n    print('ERROR:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "ERROR:" in out.stdout, out.stderr[-2000:]
    assert "offline" in out.stdout and "hf download YuWangX/Memalpha --repo-type dataset" in out.stdout
    assert "data_dir=" in out.stdout and "data.memalpha.local_dir" in out.stdout
