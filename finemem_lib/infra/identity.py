"""Run identity: content hashes that decide whether a finished run (or SFT manager) can be reused.

A run is what it was made from: its configuration, its seed, the start model's weights and its data.
Each is hashed by content (:func:`config_hash`, :func:`model_hash`, :func:`data_hash`); a stored
identity that differs in any part is another run, and :func:`identity_changes` says which part.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finemem_lib.infra.paths import repo_relative

# How a saved artifact (a finished run, the SFT manager) is reused: only when its identity is this one, any
# saved one, or never (retrain).
REUSE_MODES = ("auto", "always", "never")


def check_reuse(reuse: str) -> str:
    """``reuse`` itself; a ValueError naming the modes when it is none of :data:`REUSE_MODES`."""
    if reuse not in REUSE_MODES:
        raise ValueError(f"reuse must be one of {REUSE_MODES}, got {reuse!r}")
    return reuse


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able object (used to tell whether a finished run matches a config)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_MODEL_FILE_SKIP = ("finemem_manager.json", "finemem_run.json", "README.md")


def files_hash(folder: str | Path, skip: tuple[str, ...] = _MODEL_FILE_SKIP) -> str:
    """Content hash of every file in ``folder`` (names and bytes, sorted; training logs in ``skip`` ignored)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if path.name in skip or relative.startswith(("checkpoint-", ".")):
            continue
        digest.update(relative.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def model_hash(model: str | Path) -> str:
    """Content hash of a model folder's weights, config and tokenizer; a Hub id that is not a folder hashes its name."""
    path = Path(model)
    if path.is_dir():
        return files_hash(path)
    return "hub:" + config_hash(str(model))


def data_hash(splits: Mapping[str, Any]) -> str:
    """Content hash of the data a run sees (every split's instances: chunks, questions, chunk QAs, metadata)."""
    from dataclasses import asdict, is_dataclass

    def plain(item: Any) -> Any:
        return asdict(item) if is_dataclass(item) else item

    return config_hash({split: [plain(item) for item in items] for split, items in sorted(splits.items())})


IDENTITY_PARTS = ("config", "seed", "start_model", "data")


def run_identity(
    config: Any,
    seed: int,
    start_model: str | Path,
    data: Mapping[str, Any],
    start_model_hash: str | None = None,
    data_digest: str | None = None,
) -> dict[str, Any]:
    """What a run is: hashes of its configuration, seed, start-model weights and data, plus their combination.

    ``start_model_hash``/``data_digest`` pass hashes already computed (a study hashes its start model once).
    """
    parts = {
        "config": config_hash(config),
        "seed": int(seed),
        "start_model": start_model_hash or model_hash(start_model),
        "data": data_digest or data_hash(data),
    }
    return {**parts, "hash": config_hash(parts), "start_model_path": repo_relative(start_model)}


def identity_changes(stored: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """Human-readable reasons why ``stored`` is not ``current`` (empty when they are the same run)."""
    if not stored:
        return ["the finished run records no identity (made by an older version)"]
    names = {
        "config": "the configuration",
        "seed": "the seed",
        "start_model": "the start model's weights",
        "data": "the data",
    }
    return [
        f"{names[part]} changed ({stored.get(part)} -> {current.get(part)})"
        for part in IDENTITY_PARTS
        if stored.get(part) != current.get(part)
    ]
