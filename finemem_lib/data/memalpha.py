"""Memalpha data (``YuWangX/Memalpha``) in its published parquet schema, read into :class:`Instance`.

Columns: ``instance_id`` (int), ``prompt`` (str), ``chunks`` (JSON string: list of str),
``questions_and_answers`` (JSON string: list of ``{"question", "answer"}``), ``data_source`` (str),
``metadata`` (JSON string), ``num_chunks``, ``num_questions``; this project adds an optional
``chunk_qas`` column (JSON string: one list of ``{"question", "answer"}`` per chunk).

Mapping to :class:`Instance`: ``id = "<data_source>/<instance_id>"``, ``source = data_source``,
``metadata`` is the parsed JSON with the ``prompt`` column under ``"prompt"`` (when non-empty). An
``answer`` may be a string, a finite number or a list of strings (acceptable answers).

Every row is checked, and an error names the file, the row index, the instance id and the column:
text that is not valid UTF-8, JSON that is invalid, nested deeper than 64 levels or holds a number
longer than 100 characters (read by :mod:`finemem_lib.core.safe_json`), a count (``num_chunks``,
``num_questions``) that is NaN or disagrees with the row, a blank chunk, a row with no question
(it would score 0.0 and still be averaged in), a NaN or infinite answer (it would become the gold
``"nan"``), a null, empty or blank answer or answer-list entry (it would be found in any prediction),
a booksum / InfBench-Sum keyword list of one keyword holding ``", "`` (see :func:`check_keyword_golds`),
an instance id seen before in the same load. With ``on_error="skip"`` such rows are left out and
listed, with their reasons, in the returned list's ``skipped`` (counted by its ``skip_counts()``).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from finemem_lib.core import safe_json
from finemem_lib.data.instance import QA, Instance
from finemem_lib.data.rows import (  # noqa: F401  (re-exported: the loaders' shared names)
    DataNotAvailableError,
    DataSchemaError,
    InvalidText,
    LoadedInstances,
    SkippedRow,
    find_split_files,
    hub_rows,
    invalid_text_error,
    read_parquet_rows,
    row_instance_id,
    table_rows,
)

log = logging.getLogger(__name__)

MEMALPHA_REPO = "YuWangX/Memalpha"
MEMALPHA_MAB_REPO = "YuWangX/Memalpha-Memoryagentbench"
REQUIRED_COLUMNS = ("instance_id", "chunks", "questions_and_answers", "data_source")
SCHEMA = pa.schema(
    [
        ("instance_id", pa.int64()),
        ("prompt", pa.string()),
        ("chunks", pa.string()),
        ("questions_and_answers", pa.string()),
        ("data_source", pa.string()),
        ("metadata", pa.string()),
        ("num_chunks", pa.int64()),
        ("num_questions", pa.int64()),
        ("chunk_qas", pa.string()),
    ]
)
_ID = re.compile(r"^(?P<source>.+)/(?P<number>\d+)$")
CELL_MAX_DEPTH = 64
CELL_MAX_NUMBER_CHARS = 100


# ---------------------------------------------------------------------------- row -> Instance
def _json_column(row: Mapping[str, Any], column: str, where: str) -> Any:
    value = row.get(column)
    if isinstance(value, bytes):  # a binary column holding JSON text
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataSchemaError(f"{where} column {column!r}: not valid UTF-8 text ({exc})", column) from None
    if isinstance(value, str):
        try:
            return safe_json.loads(value, max_depth=CELL_MAX_DEPTH, max_number_chars=CELL_MAX_NUMBER_CHARS)
        except safe_json.JSONScanError as exc:
            raise DataSchemaError(f"{where} column {column!r}: not valid JSON ({exc})", column) from None
    if hasattr(value, "tolist"):  # numpy arrays from pandas / datasets
        return value.tolist()
    return value


def _answers(value: Any, where: str, column: str | None = None) -> tuple[str, ...]:
    listed = isinstance(value, list | tuple)
    items = value if listed else [value]
    answers = []
    for k, item in enumerate(items):
        here = f"{where} answer entry {k}" if listed else where
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            what = "null" if item is None else f"{item!r:.120}"
            raise DataSchemaError(f"{here}: answer must be a string, a number or a list of strings, got {what}", column)
        if isinstance(item, float) and not math.isfinite(item):
            raise DataSchemaError(f"{here}: answer is {item!r}, not a usable gold answer", column)
        text = str(item).strip() if isinstance(item, str) else str(item)
        if not text:
            raise DataSchemaError(f"{here}: empty or blank answer (it would be found in any prediction)", column)
        answers.append(text if not isinstance(item, str) else item)
    if not answers:
        raise DataSchemaError(f"{where}: no answer", column)
    return tuple(answers)


def _keyword_scored(source: str) -> bool:
    from finemem_lib.core.metrics import keyword_hit_fraction, rule_for

    try:
        return rule_for(source).fn is keyword_hit_fraction
    except ValueError:  # a source without a rule (yet): nothing to check here
        return False


def check_keyword_golds(value: Any, source: str, where: str, column: str) -> None:
    """Refuse a one-keyword list whose keyword holds ``", "`` for a keyword-scored source (booksum, InfBench-Sum).

    The scorer reads a one-element gold as Mem-alpha's string form and splits it on ``", "``, where
    Mem-alpha would keep a list's one keyword whole; Mem-alpha's keyword extraction splits on ``","``, so
    no real keyword list has this shape.
    """
    if not isinstance(value, list) or not _keyword_scored(source):
        return
    for i, item in enumerate(value):
        answer = item.get("answer") if isinstance(item, Mapping) else None
        if isinstance(answer, list) and len(answer) == 1 and ", " in str(answer[0]):
            raise DataSchemaError(
                f"{where} column {column!r} item {i}: a {source} keyword list with one keyword holding ', ' "
                "is ambiguous (a one-element gold is read as Mem-alpha's ', '-joined string); write the "
                "keywords as a list of several, or as one ', '-joined string",
                column,
            )


def parse_qa_list(value: Any, where: str, column: str | None = None) -> tuple[QA, ...]:
    """A list of ``{"question", "answer"}`` dicts as :class:`QA` tuples (errors name ``where`` and the index;
    ``column`` is recorded on the error)."""
    if not isinstance(value, list):
        raise DataSchemaError(f"{where}: expected a list of {{question, answer}}, got {type(value).__name__}", column)
    qas = []
    for i, item in enumerate(value):
        here = f"{where} item {i}"
        if not isinstance(item, Mapping) or "question" not in item or "answer" not in item:
            raise DataSchemaError(f"{here}: expected an object with 'question' and 'answer', got {item!r:.120}", column)
        question = item["question"]
        if not isinstance(question, str) or not question.strip():
            raise DataSchemaError(f"{here}: 'question' must be a non-empty string", column)
        qas.append(QA(question, _answers(item["answer"], here, column)))
    return tuple(qas)


def _count(row: Mapping[str, Any], column: str, expected: int, where: str) -> None:
    value = row.get(column)
    if value is None:
        return
    finite = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not finite:
        raise DataSchemaError(f"{where} column {column!r}: is {value!r}, not a count (the row has {expected})", column)
    if not finite or value != expected:
        raise DataSchemaError(f"{where} column {column!r}: says {value!r:.60} but the row has {expected}", column)


def instance_from_row(row: Mapping[str, Any], where: str = "row") -> Instance:
    """One Memalpha-schema row as an :class:`Instance`; raises :class:`DataSchemaError` naming the column."""
    missing = [c for c in REQUIRED_COLUMNS if c not in row]
    if missing:
        raise DataSchemaError(f"{where}: missing column(s) {missing}; have {sorted(row)}", missing[0])
    invalid = invalid_text_error(row, where)
    if invalid is not None:
        raise invalid
    source = row["data_source"]
    if not isinstance(source, str) or not source.strip():
        raise DataSchemaError(
            f"{where} column 'data_source': must be a non-empty string, got {source!r:.60}", "data_source"
        )
    instance_id = row["instance_id"]
    if (
        isinstance(instance_id, bool)
        or not isinstance(instance_id, numbers.Integral | str)
        or not str(instance_id).strip()
    ):
        raise DataSchemaError(
            f"{where} column 'instance_id': must be an integer or string, got {instance_id!r:.60}", "instance_id"
        )

    chunks = _json_column(row, "chunks", where)
    if not isinstance(chunks, list) or not chunks or not all(isinstance(c, str) for c in chunks):
        raise DataSchemaError(f"{where} column 'chunks': must be a non-empty JSON list of strings", "chunks")
    blank = [t for t, c in enumerate(chunks) if not c.strip()]
    if blank:
        raise DataSchemaError(f"{where} column 'chunks': chunk(s) {blank[:10]} are blank", "chunks")
    column = "questions_and_answers"
    raw_qas = _json_column(row, column, where)
    questions = parse_qa_list(raw_qas, f"{where} column {column!r}", column)
    check_keyword_golds(raw_qas, source, where, column)
    if not questions:
        raise DataSchemaError(
            f"{where} column {column!r}: no questions (the instance would score 0.0 and be averaged in)", column
        )
    _count(row, "num_chunks", len(chunks), where)
    _count(row, "num_questions", len(questions), where)

    chunk_qas: tuple[tuple[QA, ...], ...] = ()
    if row.get("chunk_qas") is not None:
        raw = _json_column(row, "chunk_qas", where)
        if not isinstance(raw, list) or len(raw) != len(chunks):
            raise DataSchemaError(
                f"{where} column 'chunk_qas': must be a JSON list with one entry per chunk", "chunk_qas"
            )
        chunk_qas = tuple(
            parse_qa_list(qas, f"{where} column 'chunk_qas' chunk {t}", "chunk_qas") for t, qas in enumerate(raw)
        )

    metadata = _json_column(row, "metadata", where) if row.get("metadata") not in (None, "") else {}
    if not isinstance(metadata, dict):
        raise DataSchemaError(
            f"{where} column 'metadata': must be a JSON object, got {type(metadata).__name__}", "metadata"
        )
    prompt = row.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise DataSchemaError(f"{where} column 'prompt': must be a string, got {type(prompt).__name__}", "prompt")
    if prompt:
        metadata = {"prompt": prompt, **metadata}
    return Instance(f"{source}/{instance_id}", source, tuple(chunks), questions, chunk_qas, metadata)


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def instances_from_rows(
    rows: Iterable[Mapping[str, Any]],
    where: str,
    on_error: str = "raise",
    sources: Sequence[str] | None = None,
    seen: dict[str, str] | None = None,
) -> LoadedInstances:
    """Rows as instances. ``on_error="skip"`` drops a bad row instead of raising, logs it and lists it in
    the result's ``skipped`` (file, row, instance id, column, reason).

    ``sources`` keeps only rows whose ``data_source`` is listed. ``seen`` maps instance ids already
    loaded (e.g. from another file of the split) to where they were, so a duplicate id is refused.
    """
    _check_on_error(on_error)
    seen = {} if seen is None else seen
    result = LoadedInstances()
    for i, row in enumerate(rows):
        if sources is not None and row.get("data_source") not in sources:
            continue
        ident = row_instance_id(row)
        here = f"{where} row {i}" + (f" (instance {ident})" if ident else "")
        try:
            instance = instance_from_row(row, here)
            if instance.id in seen:
                first = seen[instance.id]
                raise DataSchemaError(
                    f"{here} column 'instance_id': duplicate instance id {instance.id!r} (first at {first})",
                    "instance_id",
                )
        except DataSchemaError as exc:
            if on_error == "raise":
                raise
            result.skipped.append(SkippedRow(where, i, ident, exc.column, str(exc)))
            log.warning("skipping bad row: %s", exc)
            continue
        seen[instance.id] = f"{where} row {i}"
        result.append(instance)
    if result.skipped:
        log.warning("%s: skipped %d bad row(s)", where, len(result.skipped))
    return result


# ---------------------------------------------------------------------------- Instance -> parquet
def _qa_json(qas: Sequence[QA]) -> list[dict[str, Any]]:
    return [
        {"question": qa.question, "answer": qa.answers[0] if len(qa.answers) == 1 else list(qa.answers)} for qa in qas
    ]


def instance_to_row(instance: Instance) -> dict[str, Any]:
    """An :class:`Instance` as a Memalpha-schema row (ids must look like ``"<source>/<int>"``)."""
    match = _ID.match(instance.id)
    if not match or match["source"] != instance.source:
        raise ValueError(f"instance id {instance.id!r} must be '<source>/<integer>' (source {instance.source!r})")
    metadata = dict(instance.metadata)
    prompt = metadata.pop("prompt", "")
    return {
        "instance_id": int(match["number"]),
        "prompt": prompt,
        "chunks": json.dumps(list(instance.chunks), ensure_ascii=False),
        "questions_and_answers": json.dumps(_qa_json(instance.questions), ensure_ascii=False),
        "data_source": instance.source,
        "metadata": json.dumps(metadata, ensure_ascii=False),
        "num_chunks": len(instance.chunks),
        "num_questions": len(instance.questions),
        "chunk_qas": json.dumps([_qa_json(qas) for qas in instance.chunk_qas], ensure_ascii=False),
    }


def write_memalpha_parquet(instances: Sequence[Instance], path: str | Path) -> Path:
    """Write instances as Memalpha-schema parquet (plus ``chunk_qas``); same input gives identical bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [instance_to_row(instance) for instance in instances]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    pq.write_table(table, path, compression="zstd", store_schema=False)
    return path


# ---------------------------------------------------------------------------- loading
def read_memalpha_parquet(
    path: str | Path,
    on_error: str = "raise",
    sources: Sequence[str] | None = None,
    seen: dict[str, str] | None = None,
) -> LoadedInstances:
    """Instances from one Memalpha-schema parquet file (see :func:`instances_from_rows`).

    A file that is not readable parquet (missing footer, truncated) raises :class:`DataSchemaError`
    naming the file, with either ``on_error``: no row of it can be read.
    """
    _check_on_error(on_error)
    path = Path(path)
    if not path.is_file():
        raise DataNotAvailableError(f"no parquet file at {path}")
    rows = read_parquet_rows(path)
    return instances_from_rows(rows, str(path), on_error=on_error, sources=sources, seen=seen)


def load_memalpha(
    split: str = "train",
    data_dir: str | Path | None = None,
    repo_id: str = MEMALPHA_REPO,
    sources: Sequence[str] | None = None,
    on_error: str = "raise",
) -> LoadedInstances:
    """Memalpha ``split`` (train/test) from local parquet (``data_dir``: a folder or a file) or the Hub.

    Without ``data_dir`` the Hub dataset is read through ``datasets`` (cached after the first
    download). ``sources`` keeps only those ``data_source`` values.
    """
    _check_on_error(on_error)
    if data_dir is not None:
        files = find_split_files(data_dir, split)
        if not files:
            raise DataNotAvailableError(
                f"no parquet for split {split!r} under {data_dir} (looked for {split}.parquet, {split}-*.parquet, "
                f"data/{split}-*.parquet); download with `hf download {repo_id} --repo-type dataset "
                f"--local-dir {data_dir}`"
            )
        result, seen = LoadedInstances(), {}
        for f in files:
            result.extend_load(read_memalpha_parquet(f, on_error=on_error, sources=sources, seen=seen))
        return result
    return instances_from_rows(hub_rows(repo_id, split), f"{repo_id}[{split}]", on_error=on_error, sources=sources)


def load_memalpha_mab(
    split: str, data_dir: str | Path | None = None, sources: Sequence[str] | None = None, on_error: str = "raise"
) -> LoadedInstances:
    """The processed MemoryAgentBench copy ``YuWangX/Memalpha-Memoryagentbench`` (Memalpha schema, pre-chunked)."""
    return load_memalpha(split, data_dir=data_dir, repo_id=MEMALPHA_MAB_REPO, sources=sources, on_error=on_error)
