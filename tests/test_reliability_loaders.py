"""Loaders name every broken row (file, row index, instance id, column), and on_error="skip" returns why."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finemem_lib.data.memalpha import DataSchemaError, SkippedRow, load_memalpha, read_memalpha_parquet
from finemem_lib.data.memoryagentbench import load_memoryagentbench, mab_row


def row(**overrides):
    base = {
        "instance_id": 7,
        "prompt": "p",
        "chunks": json.dumps(["First chunk.", "Second chunk."]),
        "questions_and_answers": json.dumps([{"question": "Q?", "answer": "a"}]),
        "data_source": "squad",
        "metadata": "{}",
        "num_chunks": 2.0,
        "num_questions": 1.0,
    }
    return base | overrides


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


BROKEN = [
    ({"num_chunks": float("nan")}, "num_chunks", "not a count"),  # was: ValueError from int(nan)
    (
        {"questions_and_answers": '[{"question": "Q?", "answer": ' + "9" * 5000 + "}]"},
        "questions_and_answers",
        "number longer",
    ),
    ({"metadata": "[" * 100_000 + "]" * 100_000}, "metadata", "nesting deeper"),  # was: RecursionError
    ({"questions_and_answers": "[]", "num_questions": 0.0}, "questions_and_answers", "no questions"),  # was accepted
    ({"chunks": json.dumps(["First chunk.", "  "])}, "chunks", "blank"),  # was accepted
    ({"questions_and_answers": '[{"question": "Q?", "answer": NaN}]'}, "questions_and_answers", "nan"),  # gold "nan"
]


@pytest.mark.parametrize(("overrides", "column", "detail"), BROKEN)
def test_a_broken_row_is_named_and_can_be_skipped_with_its_reason(tmp_path, overrides, column, detail):
    path = write(tmp_path / "train.parquet", [row(instance_id=1), row(instance_id=2, **overrides)])
    with pytest.raises(DataSchemaError) as error:
        read_memalpha_parquet(path)
    message = str(error.value)
    assert str(path) in message and "row 1" in message and "squad/2" in message and f"'{column}'" in message
    assert detail in message and error.value.column == column
    kept = read_memalpha_parquet(path, on_error="skip")
    assert [i.id for i in kept] == ["squad/1"]
    (skipped,) = kept.skipped
    assert skipped == SkippedRow(str(path), 1, "squad/2", column, message)


def invalid_utf8_table():
    good = row()
    table = pa.Table.from_pylist([good, good | {"instance_id": 8}])
    chunks = pa.array([good["chunks"].encode(), b'["caf\xe9 chunk."]'], pa.binary()).view(pa.string())
    return table.set_column(table.schema.get_field_index("chunks"), "chunks", chunks)


def test_invalid_utf8_names_the_row_and_column(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(invalid_utf8_table(), path)
    with pytest.raises(DataSchemaError, match=r"row 1 \(instance squad/8\) column 'chunks': not valid UTF-8"):
        read_memalpha_parquet(path)  # was: UnicodeDecodeError for the whole file, no row named
    kept = read_memalpha_parquet(path, on_error="skip")
    assert [i.id for i in kept] == ["squad/7"] and kept.skipped[0].column == "chunks"


def test_duplicate_instance_ids_are_refused_within_and_across_files(tmp_path):
    path = write(tmp_path / "train.parquet", [row(), row()])
    with pytest.raises(DataSchemaError, match=r"row 1 .*duplicate instance id 'squad/7' \(first at .*row 0\)"):
        read_memalpha_parquet(path)  # was: two instances with one id
    write(tmp_path / "split" / "train-00000.parquet", [row()])
    write(tmp_path / "split" / "train-00001.parquet", [row(instance_id=9), row()])
    loaded = load_memalpha("train", data_dir=tmp_path / "split", on_error="skip")
    assert [i.id for i in loaded] == ["squad/7", "squad/9"]
    assert [(s.file.endswith("00001.parquet"), s.row, s.column) for s in loaded.skipped] == [(True, 1, "instance_id")]


def test_a_truncated_parquet_is_a_clear_error_for_both_loaders(tmp_path):
    good = write(tmp_path / "good.parquet", [row()]).read_bytes()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "train.parquet").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataSchemaError, match=r"train\.parquet: not a readable parquet file"):
        load_memalpha("train", data_dir=tmp_path / "m")
    (tmp_path / "mab").mkdir()
    (tmp_path / "mab" / "Accurate_Retrieval.parquet").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataSchemaError, match=r"Accurate_Retrieval\.parquet: not a readable parquet file"):
        load_memoryagentbench("Accurate_Retrieval", data_dir=tmp_path / "mab")  # was: a raw ArrowInvalid


@pytest.mark.parametrize(
    ("questions", "answers", "column", "detail"),
    [
        ([], [], "questions", "no questions"),  # was: an instance scoring 0.0
        (["Q?"], [[float("nan")]], "answers", "NaN"),  # was: the gold answer "nan"
        (["Q?"], [["  "]], "answers", "item 0 entry 0: an empty or blank answer"),
        (["Q?"], [["Ann", ""]], "answers", "item 0 entry 1: an empty or blank answer"),  # was: silently dropped
        (["Q?"], [["Ann", None]], "answers", "item 0 entry 1: null"),  # was: silently dropped
        (["Q?"], [[]], "answers", "item 0: no acceptable answer"),
    ],
)
def test_memoryagentbench_rows_are_named_and_skipped_with_reasons(tmp_path, questions, answers, column, detail):
    first_answer = [[3.0]] if isinstance(answers[0][0] if answers and answers[0] else "", float) else [["a"]]
    rows = [
        mab_row("Fact one. Fact two.", ["Q?"], first_answer, source="s"),
        mab_row("Fact three.", questions, answers, source="s"),
    ]
    path = tmp_path / "Long_Range_Understanding.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataSchemaError) as error:
        load_memoryagentbench("Long_Range_Understanding", data_dir=tmp_path)
    message = str(error.value)
    assert str(path) in message and "row 1" in message and "instance s/1" in message and detail in message
    kept = load_memoryagentbench("Long_Range_Understanding", data_dir=tmp_path, on_error="skip")
    assert [i.id for i in kept] == ["s/0"]
    assert [(s.file, s.row, s.instance_id, s.column) for s in kept.skipped] == [(str(path), 1, "s/1", column)]


def test_memoryagentbench_invalid_utf8_is_named(tmp_path):
    rows = [mab_row("Fact one.", ["Q?"], [["a"]], source="s"), mab_row("Fact two.", ["Q?"], [["b"]], source="s")]
    table = pa.Table.from_pylist(rows)
    context = pa.array([b"Fact one.", b"Caf\xe9 fact."], pa.binary()).view(pa.string())
    table = table.set_column(table.schema.get_field_index("context"), "context", context)
    pq.write_table(table, tmp_path / "Accurate_Retrieval.parquet")
    with pytest.raises(DataSchemaError, match=r"row 1 .*column 'context': not valid UTF-8"):
        load_memoryagentbench("Accurate_Retrieval", data_dir=tmp_path)
    kept = load_memoryagentbench("Accurate_Retrieval", data_dir=tmp_path, on_error="skip")
    assert [i.id for i in kept] == ["s/0"] and kept.skipped[0].column == "context"


def test_the_hub_profile_records_skipped_rows_in_the_manifest(tmp_path, monkeypatch):
    from finemem_lib.data.prepared import prepare_profile_data

    for name in ("CHUNKQA_GENERATOR_BASE_URL", "CHUNKQA_GENERATOR_MODEL", "CHUNKQA_VERIFIER_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    source = tmp_path / "memalpha"
    write(source / "train.parquet", [row(instance_id=1), row(instance_id=2, questions_and_answers="[]")])
    write(source / "test.parquet", [row(instance_id=3)])
    cfg = {"name": "t", "data": {"kind": "hub", "on_error": "skip", "memalpha": {"local_dir": str(source)}}}
    splits, manifest = prepare_profile_data(cfg, tmp_path / "prepared")
    assert [i.id for i in splits["train"]] == ["squad/1"]
    (skipped,) = manifest["skipped_rows"]["train"]
    assert manifest["skipped_counts"] == {"train": {"skipped_rows": 1, "by_column": {"questions_and_answers": 1}}}
    assert skipped["row"] == 1 and skipped["instance_id"] == "squad/2" and skipped["column"] == "questions_and_answers"
