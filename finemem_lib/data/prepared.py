"""The prepared data of a profile: built or loaded once (notebook 01), read by the later notebooks.

Each split is a parquet file ``<paths.data>/<split>.parquet`` in the Memalpha schema plus the
``chunk_qas`` column, next to a ``manifest.json`` with the sizes and how the data was made.

Splits: ``train`` and ``test`` (synthetic, or Memalpha from the Hub), and for the paper profile one
``mab_<split>`` per MemoryAgentBench split (e.g. ``mab_accurate_retrieval``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from finemem_lib.agents.llm_client import LLMError
from finemem_lib.core.tokens import TokenCounter, regex_token_count
from finemem_lib.data.chunk_qa import ChunkQABuilder, ChunkQASettings
from finemem_lib.data.chunking import make_token_counter
from finemem_lib.data.instance import Instance
from finemem_lib.data.memalpha import (
    DataNotAvailableError,
    load_memalpha,
    read_memalpha_parquet,
    write_memalpha_parquet,
)
from finemem_lib.data.memoryagentbench import load_memoryagentbench
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.infra import atomic

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def mab_split_name(split: str) -> str:
    """Prepared-split name of a MemoryAgentBench split: ``Accurate_Retrieval`` -> ``mab_accurate_retrieval``."""
    return f"mab_{split.lower()}"


def save_prepared(
    splits: Mapping[str, Sequence[Instance]], data_dir: str | Path, info: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Write each split to ``<data_dir>/<split>.parquet`` and a ``manifest.json``; returns the files."""
    root = Path(data_dir)
    files = {split: write_memalpha_parquet(instances, root / f"{split}.parquet") for split, instances in splits.items()}
    manifest = {
        **(info or {}),
        "splits": {
            split: {
                "file": files[split].name,
                "instances": len(instances),
                "sources": dict(sorted(pd.Series([i.source for i in instances], dtype=str).value_counts().items())),
            }
            for split, instances in splits.items()
        },
    }
    atomic.write_json(root / MANIFEST, manifest)  # written last: the splits are complete once it exists
    return files


REBUILD = "run notebooks/01_data_prep with the same profile (./reproduce.sh --profile <profile> --only 1)"


def read_manifest(data_dir: str | Path) -> dict[str, Any]:
    """The manifest of a prepared data folder; a torn or hand-broken one names the file and how to rebuild it."""
    path = Path(data_dir) / MANIFEST
    manifest = atomic.read_json(path, rebuild=REBUILD)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise atomic.CorruptFileError(f"{path} has no 'splits' mapping; rebuild it with: {REBUILD}")
    return manifest


def prepared_splits(data_dir: str | Path) -> list[str]:
    """The splits written by :func:`save_prepared` in ``data_dir`` (empty if nothing was prepared)."""
    manifest = Path(data_dir) / MANIFEST
    return list(read_manifest(data_dir)["splits"]) if manifest.is_file() else []


def load_prepared(data_dir: str | Path, split: str = "train") -> list[Instance]:
    """Instances of one prepared split; says to run notebook 01 when the data is not there."""
    path = Path(data_dir) / f"{split}.parquet"
    if not path.is_file():
        have = prepared_splits(data_dir)
        raise DataNotAvailableError(
            f"no prepared split {split!r} in {data_dir} (prepared: {have or 'nothing'}); run notebooks/01_data_prep "
            "with the same profile and data_dir first"
        )
    return read_memalpha_parquet(path)


# ---------------------------------------------------------------------------- per profile
def _hub_data(data_cfg: Mapping[str, Any], count_tokens: TokenCounter) -> dict[str, list[Instance]]:
    """The hub profile's splits; ``data.on_error: skip`` leaves bad rows out (listed in each split's ``skipped``)."""
    on_error = data_cfg.get("on_error", "raise")
    memalpha = data_cfg.get("memalpha", {})
    splits = {
        split: load_memalpha(
            split,
            data_dir=memalpha.get("local_dir"),
            repo_id=memalpha.get("repo", "YuWangX/Memalpha"),
            on_error=on_error,
        )
        for split in ("train", "test")
    }
    mab = data_cfg.get("memoryagentbench", {})
    for split in mab.get("splits", []):
        splits[mab_split_name(split)] = load_memoryagentbench(
            split,
            sources=(mab.get("sources") or {}).get(split),
            data_dir=mab.get("local_dir"),
            chunk_size=(mab.get("chunk_size") or {}).get(split),
            count_tokens=count_tokens,
            max_instances=mab.get("max_instances"),
            exclude=mab.get("exclude_sources"),
            on_error=on_error,
        )
    return splits


def skipped_rows(splits: Mapping[str, Sequence[Instance]]) -> dict[str, list[dict[str, Any]]]:
    """The rows each split's loader left out (``on_error="skip"``), for the manifest; splits without any omitted."""
    return {
        split: [asdict(row) for row in getattr(instances, "skipped", [])]
        for split, instances in splits.items()
        if getattr(instances, "skipped", None)
    }


def add_chunk_qas(
    instances: Sequence[Instance], qa_cfg: Mapping[str, Any], cache_path: str | Path
) -> tuple[list[Instance], str]:
    """Fill ``chunk_qas`` with the LLM builder when its endpoints are configured; returns a status line.

    Without endpoints (``CHUNKQA_GENERATOR_*``/``CHUNKQA_VERIFIER_*`` unset) the instances are returned
    unchanged and the status says what to set.
    """
    settings = ChunkQASettings(**{k: v for k, v in qa_cfg.items() if k in ChunkQASettings.__dataclass_fields__})
    try:
        builder = ChunkQABuilder.from_env(
            cache_path,
            settings,
            generator_prefix=qa_cfg.get("generator_env", "CHUNKQA_GENERATOR"),
            verifier_prefix=qa_cfg.get("verifier_env", "CHUNKQA_VERIFIER"),
            timeout_s=qa_cfg.get("timeout_s", 60.0),
            max_retries=qa_cfg.get("max_retries", 3),
            deadline_s=qa_cfg.get("deadline_s"),
            max_wait_s=qa_cfg.get("max_wait_s", 120.0),
        )
    except LLMError as exc:
        return list(instances), f"chunk QAs not built: {exc}"
    built, report = builder.build(instances)
    status = f"chunk QAs: {report.cached} chunks cached, {report.built} built, {len(report.failed)} failed"
    if report.failed:
        status += f" ({report.no_qa} of them with no verified QA pair; run again to retry the failed chunks)"
    return built, status


def prepare_profile_data(cfg: Mapping[str, Any], data_dir: str | Path) -> tuple[dict[str, list[Instance]], dict]:
    """Build (synthetic) or load (hub) the profile's data, write it under ``data_dir``; returns splits and manifest."""
    data_cfg = cfg.get("data", {})
    kind = data_cfg.get("kind", "synthetic")
    start = time.perf_counter()
    info: dict[str, Any] = {"profile": cfg.get("name"), "kind": kind, "seed": cfg.get("seed", 0)}
    if kind == "synthetic":
        splits = build_synthetic(data_cfg, cfg.get("seed", 0))
        info["synthetic"] = dict(data_cfg.get("synthetic", {}))
    elif kind == "hub":
        count_tokens = make_token_counter(data_cfg.get("tokenizer"))
        splits = _hub_data(data_cfg, count_tokens)
        skipped = skipped_rows(splits)
        if skipped:  # how many rows each split left out, per column, and each row with its reason
            info["skipped_counts"] = {split: splits[split].skip_counts() for split in skipped}  # type: ignore[attr-defined]
            info["skipped_rows"] = skipped
            log.warning("skipped bad rows: %s", {split: len(rows) for split, rows in skipped.items()})
        splits["train"], info["chunk_qa_status"] = add_chunk_qas(
            splits["train"], data_cfg.get("chunk_qa", {}), Path(data_dir) / "chunk_qa_cache.jsonl"
        )
    else:
        raise ValueError(f"data.kind must be 'synthetic' or 'hub', got {kind!r}")
    info["build_seconds"] = round(time.perf_counter() - start, 3)
    save_prepared(splits, data_dir, info)
    return splits, read_manifest(data_dir)


# ---------------------------------------------------------------------------- tables for plots
def instance_table(splits: Mapping[str, Sequence[Instance]], count_tokens: TokenCounter = regex_token_count):
    """One row per instance: split, id, source, chunks, tokens, questions, chunk QAs, chunks with a QA."""
    rows = []
    for split, instances in splits.items():
        for inst in instances:
            rows.append(
                {
                    "split": split,
                    "id": inst.id,
                    "source": inst.source,
                    "chunks": inst.num_chunks,
                    "tokens": sum(count_tokens(c) for c in inst.chunks),
                    "questions": len(inst.questions),
                    "chunk_qas": sum(len(q) for q in inst.chunk_qas),
                    "chunks_with_qa": sum(bool(q) for q in inst.chunk_qas),
                }
            )
    return pd.DataFrame(rows)


def chunk_table(splits: Mapping[str, Sequence[Instance]], count_tokens: TokenCounter = regex_token_count):
    """One row per chunk: split, instance id, source, chunk index, tokens, chunk QAs."""
    rows = [
        {
            "split": split,
            "id": inst.id,
            "source": inst.source,
            "chunk": t,
            "tokens": count_tokens(c),
            "chunk_qas": len(q),
        }
        for split, instances in splits.items()
        for inst in instances
        for t, (c, q) in enumerate(zip(inst.chunks, inst.chunk_qas, strict=True))
    ]
    return pd.DataFrame(rows)
