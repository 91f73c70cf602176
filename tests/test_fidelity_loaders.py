"""Gold answers the loaders refuse by name instead of dropping, and the skip counts a load returns."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finemem_lib.data.memalpha import DataSchemaError, instance_from_row, load_memalpha
from finemem_lib.data.memoryagentbench import load_memoryagentbench, mab_row


def _row(answer, source="squad", instance_id=1):
    return {
        "instance_id": instance_id,
        "chunks": json.dumps(["A chunk."]),
        "questions_and_answers": json.dumps([{"question": "Q?", "answer": answer}]),
        "data_source": source,
    }


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (["Ann", None], "answer entry 1: answer must be a string, a number or a list of strings, got null"),
        (["Ann", ""], "answer entry 1: empty or blank answer"),
        (["Ann", "  "], "answer entry 1: empty or blank answer"),
        ("", "empty or blank answer"),
        (None, "got null"),
    ],
)
def test_memalpha_blank_and_null_gold_entries_are_named(answer, detail):
    with pytest.raises(DataSchemaError, match="questions_and_answers") as error:
        instance_from_row(_row(answer), "f.parquet row 0")
    assert detail in str(error.value) and "f.parquet row 0" in str(error.value)


def test_a_one_keyword_list_holding_the_separator_is_refused_for_keyword_sources():
    with pytest.raises(DataSchemaError, match="ambiguous"):
        instance_from_row(_row(["Marie Curie, a dog"], source="booksum"))
    # the string shape, a list of several, and other sources are fine
    assert instance_from_row(_row("Marie Curie, a dog", source="booksum")).questions[0].answers == (
        "Marie Curie, a dog",
    )
    assert len(instance_from_row(_row(["Marie Curie", "a dog"], source="booksum")).questions[0].answers) == 2
    assert instance_from_row(_row(["Paris, France"], source="squad")).questions[0].answers == ("Paris, France",)


def test_memalpha_skip_counts_are_returned(tmp_path):
    rows = [_row("Ann", instance_id=0), _row(["Ann", None], instance_id=1), _row("", instance_id=2)]
    folder = tmp_path / "m"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), folder / "test.parquet")
    loaded = load_memalpha("test", data_dir=folder, on_error="skip")
    assert [i.id for i in loaded] == ["squad/0"]
    assert loaded.skip_counts() == {"skipped_rows": 2, "by_column": {"questions_and_answers": 2}}
    assert [s.row for s in loaded.skipped] == [1, 2]


def test_memoryagentbench_skip_counts_are_returned(tmp_path):
    rows = [
        mab_row("Ann left.", ["Who left?"], [["Ann"]], source="eventqa_full"),
        mab_row("Bob came.", ["Who came?"], [["Bob", ""]], source="eventqa_full"),
        mab_row("  ", ["Who?"], [["Cy"]], source="eventqa_full"),
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "Accurate_Retrieval.parquet")
    loaded = load_memoryagentbench("Accurate_Retrieval", data_dir=tmp_path, chunk_size=64, on_error="skip")
    assert [i.id for i in loaded] == ["eventqa_full/0"]
    assert loaded.skip_counts() == {"skipped_rows": 2, "by_column": {"answers": 1, "context": 1}}
    assert "entry 1: an empty or blank answer" in loaded.skipped[0].reason
