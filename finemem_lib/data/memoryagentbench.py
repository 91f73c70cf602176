"""MemoryAgentBench (``ai-hyz/MemoryAgentBench``) rows as chunked :class:`Instance` objects.

A row has ``context`` (str), ``questions`` (list of str), ``answers`` (list of lists of acceptable
answers) and ``metadata`` (a struct whose ``source`` names the sub-dataset, e.g. ``ruler_qa1_197K``).
The context is chunked by sentence packing (2048 tokens; 1024 for Test_Time_Learning, as Mem-alpha
does). Conflict_Resolution, which Mem-alpha and Fine-Mem skip, is supported too.

Instance: ``id = "<source>/<row>"``, ``source = metadata.source``, ``metadata`` = the row's metadata
plus ``split`` and ``chunk_size``.

Every row is checked and an error names the file, the row index, the instance id and the column: text
that is not valid UTF-8, a blank context, no question (the instance would score 0.0 and still be
averaged in), a question with no answer, an answer entry that is null, empty or blank (MemoryAgentBench's
substring match would find it in any output) or not a string or number, a NaN or infinite answer (it
would become the gold ``"nan"``); a file that is not readable parquet (e.g. truncated) is an error naming the file. With
``on_error="skip"`` bad rows are left out and listed, with their reasons, in the result's ``skipped``
(counted by its ``skip_counts()``).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from finemem_lib.core.tokens import TokenCounter
from finemem_lib.data import rows as row_io
from finemem_lib.data.chunking import chunk_text, default_chunk_size
from finemem_lib.data.instance import QA, Instance
from finemem_lib.data.rows import DataNotAvailableError, DataSchemaError, LoadedInstances, SkippedRow

log = logging.getLogger(__name__)

MAB_REPO = "ai-hyz/MemoryAgentBench"
MAB_SPLITS = ("Accurate_Retrieval", "Test_Time_Learning", "Long_Range_Understanding", "Conflict_Resolution")


def _plain(value: Any) -> Any:
    """Numpy arrays and scalars (as pandas/datasets give them) to plain JSON-able Python values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _qas(questions: Any, answers: Any, where: str) -> tuple[QA, ...]:
    questions, answers = _plain(questions), _plain(answers)
    if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
        raise DataSchemaError(f"{where} column 'questions': must be a list of non-empty strings", "questions")
    if not questions:
        raise DataSchemaError(
            f"{where} column 'questions': no questions (the instance would score 0.0 and be averaged in)", "questions"
        )
    if not isinstance(answers, list) or len(answers) != len(questions):
        got = len(answers) if isinstance(answers, list) else type(answers).__name__
        raise DataSchemaError(f"{where} column 'answers': expected {len(questions)} answer lists, got {got}", "answers")
    qas = []
    for j, (question, gold) in enumerate(zip(questions, answers, strict=True)):
        golds = gold if isinstance(gold, list) else [gold]
        if not golds:
            raise DataSchemaError(f"{where} column 'answers' item {j}: no acceptable answer", "answers")
        for k, g in enumerate(golds):
            here = f"{where} column 'answers' item {j} entry {k}"
            if isinstance(g, bool) or not isinstance(g, str | int | float):
                what = "null" if g is None else f"a {type(g).__name__}"
                raise DataSchemaError(f"{here}: {what}, not an answer (a string or a number)", "answers")
            if isinstance(g, float) and not math.isfinite(g):
                raise DataSchemaError(f"{here}: a NaN or infinite answer", "answers")
            if not str(g).strip():
                raise DataSchemaError(
                    f"{here}: an empty or blank answer (MemoryAgentBench's substring match finds it in any output)",
                    "answers",
                )
        qas.append(QA(question, tuple(str(g) for g in golds)))
    return tuple(qas)


def mab_instance(
    row: Mapping[str, Any],
    split: str,
    index: int,
    chunk_size: int,
    count_tokens: TokenCounter | None = None,
    where: str | None = None,
) -> Instance:
    """One MemoryAgentBench row as a chunked :class:`Instance` (errors name ``where``, default the split and row)."""
    where = where or f"MemoryAgentBench[{split}] row {index}"
    missing = [c for c in ("context", "questions", "answers", "metadata") if c not in row]
    if missing:
        raise DataSchemaError(f"{where}: missing column(s) {missing}; have {sorted(row)}", missing[0])
    invalid = row_io.invalid_text_error(row, where)
    if invalid is not None:
        raise invalid
    metadata = _plain(row["metadata"])
    if not isinstance(metadata, dict) or not isinstance(metadata.get("source"), str) or not metadata["source"]:
        raise DataSchemaError(f"{where} column 'metadata': must be a struct with a non-empty 'source'", "metadata")
    context = row["context"]
    if not isinstance(context, str):
        raise DataSchemaError(f"{where} column 'context': must be a string, got {type(context).__name__}", "context")
    chunks = chunk_text(context, chunk_size, count_tokens)
    if not chunks or not all(c.strip() for c in chunks):
        raise DataSchemaError(f"{where} column 'context': empty or blank, so there is nothing to memorise", "context")
    source = metadata["source"]
    return Instance(
        id=f"{source}/{index}",
        source=source,
        chunks=tuple(chunks),
        questions=_qas(row["questions"], row["answers"], where),
        metadata={**metadata, "split": split, "chunk_size": chunk_size},
    )


def _matches(source: Any, patterns: Sequence[str] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(str(source), p) for p in patterns)


def _local_rows(data_dir: str | Path, split: str) -> Iterable[tuple[str, int, dict[str, Any]]]:
    """(file, row index in the file, row) of a local split; a file that is not readable parquet is a
    :class:`DataSchemaError`."""
    files = row_io.find_split_files(data_dir, split)
    if not files:
        raise DataNotAvailableError(
            f"no parquet for MemoryAgentBench split {split!r} under {data_dir} (looked for {split}.parquet, "
            f"{split}-*.parquet, data/{split}-*.parquet); download with `hf download {MAB_REPO} --repo-type dataset "
            f"--local-dir {data_dir}`"
        )
    for path in files:
        for i, row in enumerate(row_io.read_parquet_rows(path)):
            yield str(path), i, row


def load_memoryagentbench(
    split: str,
    sources: Sequence[str] | None = None,
    data_dir: str | Path | None = None,
    chunk_size: int | None = None,
    count_tokens: TokenCounter | None = None,
    max_instances: int | None = None,
    on_error: str = "raise",
    exclude: Sequence[str] | None = None,
) -> LoadedInstances:
    """Instances of one MemoryAgentBench split, chunked.

    Args:
        split: one of :data:`MAB_SPLITS`.
        sources: keep rows whose ``metadata.source`` matches one of these names or shell patterns
            (``"icl_*"``); None keeps all.
        data_dir: local parquet (a folder holding the split's files, or a file); None reads the Hub
            through ``datasets`` and its cache.
        chunk_size: tokens per chunk; None uses :func:`default_chunk_size` (2048, 1024 for TTL).
        count_tokens: token counter; None uses the regex fallback.
        max_instances: stop after this many kept rows.
        on_error: ``"raise"`` or ``"skip"`` (drop a bad row, log it and list it in the result's ``skipped``).
        exclude: drop rows whose source matches one of these names or patterns (applied after ``sources``).

    Returns:
        The instances, as a :class:`~finemem_lib.data.rows.LoadedInstances` list whose ``skipped``
        names each row left out (file, row index, instance id, column, reason).
    """
    if split not in MAB_SPLITS:
        raise ValueError(f"unknown MemoryAgentBench split {split!r}; splits: {', '.join(MAB_SPLITS)}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    size = chunk_size or default_chunk_size(split)
    rows: Iterable[tuple[str, int, Any]] = (
        _local_rows(data_dir, split)
        if data_dir is not None
        else (
            (f"{MAB_REPO} on the Hub", i, row)
            for i, row in enumerate(row_io.hub_rows(MAB_REPO, split, profile_key="data.memoryagentbench.local_dir"))
        )
    )
    result = LoadedInstances()
    for index, (file, file_row, row) in enumerate(rows):
        metadata = _plain(row.get("metadata")) if isinstance(row, Mapping) else None
        source = metadata.get("source") if isinstance(metadata, dict) else None
        if source is not None and (not _matches(source, sources) or (exclude and _matches(source, exclude))):
            continue  # rows without a source are not filtered out: mab_instance reports them
        ident = f"{source}/{index}" if isinstance(source, str) and source else None
        where = f"MemoryAgentBench[{split}] row {index} ({file} row {file_row})" + (
            f" (instance {ident})" if ident else ""
        )
        try:
            result.append(mab_instance(row, split, index, size, count_tokens, where=where))
        except DataSchemaError as exc:
            if on_error == "raise":
                raise
            result.skipped.append(SkippedRow(file, file_row, ident, exc.column, str(exc)))
            log.warning("skipping bad row: %s", exc)
        if max_instances is not None and len(result) >= max_instances:
            break
    if result.skipped:
        log.warning("MemoryAgentBench[%s]: skipped %d bad row(s)", split, len(result.skipped))
    return result


def mab_row(
    context: str, questions: Sequence[str], answers: Sequence[Sequence[str]], **metadata: Any
) -> dict[str, Any]:
    """A row in the MemoryAgentBench schema (for tests and small local files)."""
    return {
        "context": context,
        "questions": list(questions),
        "answers": [list(a) for a in answers],
        "metadata": json.loads(json.dumps(metadata)),
    }
