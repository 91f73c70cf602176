"""Memalpha data (``YuWangX/Memalpha``) in its published parquet schema, read into :class:`Instance`.

Columns: ``instance_id`` (int), ``prompt`` (str), ``chunks`` (JSON string: list of str),
``questions_and_answers`` (JSON string: list of ``{"question", "answer"}``), ``data_source`` (str),
``metadata`` (JSON string), ``num_chunks``, ``num_questions``; this project adds an optional
``chunk_qas`` column (JSON string: one list of ``{"question", "answer"}`` per chunk).

Mapping to :class:`Instance`: ``id = "<data_source>/<instance_id>"``, ``source = data_source``,
``metadata`` is the parsed JSON with the ``prompt`` column under ``"prompt"`` (when non-empty). An
``answer`` may be a string, a number or a list of strings (acceptable answers). Every row is checked;
an error names the file, row and column.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from finemem_lib.data.instance import QA, Instance

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


class DataSchemaError(ValueError):
    """A dataset row that does not fit the expected schema (the message names row and column)."""


class DataNotAvailableError(FileNotFoundError):
    """A dataset that is neither on disk nor reachable; the message says what to run or pass."""


# ---------------------------------------------------------------------------- row -> Instance
def _json_column(row: Mapping[str, Any], column: str, where: str) -> Any:
    value = row.get(column)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataSchemaError(f"{where} column {column!r}: not valid JSON ({exc.msg} at char {exc.pos})") from None
    if hasattr(value, "tolist"):  # numpy arrays from pandas / datasets
        return value.tolist()
    return value


def _answers(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    answers = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise DataSchemaError(f"{where}: answer must be a string, a number or a list of strings, got {item!r}")
        text = str(item).strip() if isinstance(item, str) else str(item)
        if not text:
            raise DataSchemaError(f"{where}: empty answer")
        answers.append(text if not isinstance(item, str) else item)
    if not answers:
        raise DataSchemaError(f"{where}: no answer")
    return tuple(answers)


def parse_qa_list(value: Any, where: str) -> tuple[QA, ...]:
    """A list of ``{"question", "answer"}`` dicts as :class:`QA` tuples (errors name ``where`` and the index)."""
    if not isinstance(value, list):
        raise DataSchemaError(f"{where}: expected a list of {{question, answer}}, got {type(value).__name__}")
    qas = []
    for i, item in enumerate(value):
        here = f"{where} item {i}"
        if not isinstance(item, Mapping) or "question" not in item or "answer" not in item:
            raise DataSchemaError(f"{here}: expected an object with 'question' and 'answer', got {item!r:.120}")
        question = item["question"]
        if not isinstance(question, str) or not question.strip():
            raise DataSchemaError(f"{here}: 'question' must be a non-empty string")
        qas.append(QA(question, _answers(item["answer"], here)))
    return tuple(qas)


def _count(row: Mapping[str, Any], column: str, expected: int, where: str) -> None:
    value = row.get(column)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != expected:
        raise DataSchemaError(f"{where} column {column!r}: says {value!r} but the row has {expected}")


def instance_from_row(row: Mapping[str, Any], where: str = "row") -> Instance:
    """One Memalpha-schema row as an :class:`Instance`; raises :class:`DataSchemaError` naming the column."""
    missing = [c for c in REQUIRED_COLUMNS if c not in row]
    if missing:
        raise DataSchemaError(f"{where}: missing column(s) {missing}; have {sorted(row)}")
    source = row["data_source"]
    if not isinstance(source, str) or not source.strip():
        raise DataSchemaError(f"{where} column 'data_source': must be a non-empty string, got {source!r}")
    instance_id = row["instance_id"]
    if (
        isinstance(instance_id, bool)
        or not isinstance(instance_id, numbers.Integral | str)
        or not str(instance_id).strip()
    ):
        raise DataSchemaError(f"{where} column 'instance_id': must be an integer or string, got {instance_id!r}")

    chunks = _json_column(row, "chunks", where)
    if not isinstance(chunks, list) or not chunks or not all(isinstance(c, str) for c in chunks):
        raise DataSchemaError(f"{where} column 'chunks': must be a non-empty JSON list of strings")
    questions = parse_qa_list(
        _json_column(row, "questions_and_answers", where), f"{where} column 'questions_and_answers'"
    )
    _count(row, "num_chunks", len(chunks), where)
    _count(row, "num_questions", len(questions), where)

    chunk_qas: tuple[tuple[QA, ...], ...] = ()
    if row.get("chunk_qas") is not None:
        raw = _json_column(row, "chunk_qas", where)
        if not isinstance(raw, list) or len(raw) != len(chunks):
            raise DataSchemaError(f"{where} column 'chunk_qas': must be a JSON list with one entry per chunk")
        chunk_qas = tuple(parse_qa_list(qas, f"{where} column 'chunk_qas' chunk {t}") for t, qas in enumerate(raw))

    metadata = _json_column(row, "metadata", where) if row.get("metadata") not in (None, "") else {}
    if not isinstance(metadata, dict):
        raise DataSchemaError(f"{where} column 'metadata': must be a JSON object, got {type(metadata).__name__}")
    prompt = row.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise DataSchemaError(f"{where} column 'prompt': must be a string, got {type(prompt).__name__}")
    if prompt:
        metadata = {"prompt": prompt, **metadata}
    return Instance(f"{source}/{instance_id}", source, tuple(chunks), questions, chunk_qas, metadata)


def instances_from_rows(
    rows: Iterable[Mapping[str, Any]], where: str, on_error: str = "raise", sources: Sequence[str] | None = None
) -> list[Instance]:
    """Rows as instances. ``on_error="skip"`` logs and drops a bad row instead of raising.

    ``sources`` keeps only rows whose ``data_source`` is listed.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    instances, skipped = [], 0
    for i, row in enumerate(rows):
        if sources is not None and row.get("data_source") not in sources:
            continue
        try:
            instances.append(instance_from_row(row, f"{where} row {i}"))
        except DataSchemaError as exc:
            if on_error == "raise":
                raise
            skipped += 1
            log.warning("skipping bad row: %s", exc)
    if skipped:
        log.warning("%s: skipped %d bad row(s)", where, skipped)
    return instances


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
    path: str | Path, on_error: str = "raise", sources: Sequence[str] | None = None
) -> list[Instance]:
    """Instances from one Memalpha-schema parquet file."""
    path = Path(path)
    if not path.is_file():
        raise DataNotAvailableError(f"no parquet file at {path}")
    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataSchemaError(f"{path}: not a readable parquet file ({exc})") from None
    return instances_from_rows(rows, str(path), on_error=on_error, sources=sources)


def find_split_files(data_dir: str | Path, split: str) -> list[Path]:
    """Parquet files of ``split`` under ``data_dir``: ``split.parquet``, ``split-*.parquet`` or ``data/split-*``.

    ``data_dir`` may also be a single parquet file, which is returned as is.
    """
    root = Path(data_dir)
    if root.is_file():
        return [root]
    patterns = (f"{split}.parquet", f"{split}-*.parquet", f"data/{split}.parquet", f"data/{split}-*.parquet")
    for pattern in patterns:
        found = sorted(root.glob(pattern))
        if found:
            return found
    return sorted(p for p in root.rglob("*.parquet") if p.name.split("-")[0].split(".")[0] == split)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ).lower() in ("1", "true", "yes")


def hub_rows(
    repo_id: str, split: str, config: str | None = None, profile_key: str = "data.memalpha.local_dir"
) -> list[dict[str, Any]]:
    """Rows of a Hub dataset split through ``datasets`` (and its cache); clear error when unavailable."""
    import datasets

    try:
        dataset = datasets.load_dataset(repo_id, config, split=split)
    except Exception as exc:
        local = f"data/hub/{repo_id.split('/')[-1]}"
        hint = (
            f"on a machine with network run `hf download {repo_id} --repo-type dataset --local-dir {local}` "
            f"and pass data_dir='{local}' (in a profile: {profile_key}: {local})"
        )
        state = "offline (HF_HUB_OFFLINE=1) and not in the datasets cache" if _offline() else "not reachable"
        raise DataNotAvailableError(
            f"dataset {repo_id} split {split!r} is {state}: {type(exc).__name__}: {str(exc)[:200]}. To fix: {hint}, "
            "or unset HF_HUB_OFFLINE with network access to fill the cache."
        ) from None
    return list(dataset)


def load_memalpha(
    split: str = "train",
    data_dir: str | Path | None = None,
    repo_id: str = MEMALPHA_REPO,
    sources: Sequence[str] | None = None,
    on_error: str = "raise",
) -> list[Instance]:
    """Memalpha ``split`` (train/test) from local parquet (``data_dir``: a folder or a file) or the Hub.

    Without ``data_dir`` the Hub dataset is read through ``datasets`` (cached after the first
    download). ``sources`` keeps only those ``data_source`` values.
    """
    if data_dir is not None:
        files = find_split_files(data_dir, split)
        if not files:
            raise DataNotAvailableError(
                f"no parquet for split {split!r} under {data_dir} (looked for {split}.parquet, {split}-*.parquet, "
                f"data/{split}-*.parquet); download with `hf download {repo_id} --repo-type dataset "
                f"--local-dir {data_dir}`"
            )
        return [inst for f in files for inst in read_memalpha_parquet(f, on_error=on_error, sources=sources)]
    return instances_from_rows(hub_rows(repo_id, split), f"{repo_id}[{split}]", on_error=on_error, sources=sources)


def load_memalpha_mab(
    split: str, data_dir: str | Path | None = None, sources: Sequence[str] | None = None, on_error: str = "raise"
) -> list[Instance]:
    """The processed MemoryAgentBench copy ``YuWangX/Memalpha-Memoryagentbench`` (Memalpha schema, pre-chunked)."""
    return load_memalpha(split, data_dir=data_dir, repo_id=MEMALPHA_MAB_REPO, sources=sources, on_error=on_error)
