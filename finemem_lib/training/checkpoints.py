"""A run's checkpoints: found, verified before resuming, cleared when they belong to another run.

A run whose output folder holds checkpoints of the same identity resumes from the newest one that
loads (:func:`checkpoint_problem`), falling back to an older one. The identity is stored next to the
checkpoints (:data:`RUN_IDENTITY`); checkpoints of another identity are removed, and those whose
identity cannot be read are moved aside, never deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finemem_lib.infra.atomic import CorruptFileError, read_json, write_json
from finemem_lib.infra.identity import identity_changes

logger = logging.getLogger(__name__)

RUN_IDENTITY = "finemem_run.json"  # in the checkpoint folder: which configuration its checkpoints belong to
REQUIRED_CHECKPOINT_FILES = ("trainer_state.json",)  # + model weights and optimizer state (below)
_TORCH_FILES = (".pt", ".pth", ".bin")


def _checkpoint_step(path: Path) -> int | None:
    step = path.name.removeprefix("checkpoint-")
    return int(step) if path.name.startswith("checkpoint-") and step.isdigit() and path.is_dir() else None


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The ``checkpoint-N`` folders of a run, newest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if _checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: _checkpoint_step(p) or 0, reverse=True)


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is unusable: a header that does not parse, or a size other than it declares."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len <= 0 or 8 + header_len > size:
                return f"truncated ({size} bytes, header of {header_len})"
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError) as exc:
        return f"unreadable header ({exc})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    expected = 8 + header_len + max(ends, default=0)
    return None if size == expected else f"truncated ({size} of {expected} bytes)"


def _torch_file_problem(path: Path) -> str | None:
    """Why a ``torch.save`` file is unusable (it is a zip archive: a torn one has no directory or a bad CRC)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        return f"not a complete torch archive ({exc})"
    return f"corrupt member {bad}" if bad else None


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """Why a checkpoint cannot be resumed from; None when its state, weights, optimizer and RNG files all load.

    A DeepSpeed checkpoint keeps weights and optimizer in ``global_step*/`` (its own format, not checked here).
    """
    checkpoint = Path(checkpoint)
    for name in REQUIRED_CHECKPOINT_FILES:
        if not (checkpoint / name).is_file():
            return f"{name} missing"
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError) as exc:
        return f"trainer_state.json unreadable ({exc})"
    files = sorted(p for p in checkpoint.iterdir() if p.is_file())
    deepspeed = any(p.is_dir() for p in checkpoint.glob("global_step*"))
    if not deepspeed:
        if not any(p.suffix == ".safetensors" or p.name.startswith("pytorch_model") for p in files):
            return "no model weights"
        if not (checkpoint / "optimizer.pt").is_file():
            return "optimizer.pt missing"
    for path in files:
        if path.suffix == ".safetensors":
            problem = _safetensors_problem(path)
        elif path.suffix in _TORCH_FILES:
            problem = _torch_file_problem(path)
        else:
            continue
        if problem:
            return f"{path.name}: {problem}"
    return None


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest ``checkpoint-N`` whose files all load; damaged newer ones are named in the log and skipped."""
    damaged = []
    for checkpoint in checkpoints(output_dir):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            if damaged:
                logger.warning(
                    "%s cannot be resumed from (%s); falling back to %s",
                    ", ".join(d for d, _ in damaged),
                    "; ".join(f"{d}: {why}" for d, why in damaged),
                    checkpoint.name,
                )
            return checkpoint
        damaged.append((checkpoint.name, problem))
    if damaged:
        logger.warning("no checkpoint can be resumed from (%s)", "; ".join(f"{d}: {why}" for d, why in damaged))
    return None


def _read_identity(output_dir: Path) -> dict[str, Any] | None:
    """The identity stored next to a run's checkpoints; None when there is none; CorruptFileError when torn."""
    try:
        stored = read_json(output_dir / RUN_IDENTITY)
    except FileNotFoundError:
        return None
    if not isinstance(stored, dict):
        raise CorruptFileError(f"{output_dir / RUN_IDENTITY} does not hold a JSON object")
    return stored


def _set_aside(output_dir: Path, found: Sequence[Path], why: str) -> Path:
    """Move checkpoints whose run cannot be confirmed next to the output folder (never deleted); returns where."""
    aside = output_dir.with_name(f"{output_dir.name}.unverified-{time.strftime('%Y%m%dT%H%M%S')}")
    aside.mkdir(parents=True, exist_ok=True)
    for checkpoint in found:
        shutil.move(str(checkpoint), str(aside / checkpoint.name))
    logger.warning("%s; its checkpoints were moved to %s (not deleted); starting afresh", why, aside)
    return aside


def prepare_output_dir(output_dir: Path, identity: Mapping[str, Any], resume: bool, name: str) -> Path | None:
    """The checkpoint to resume from (None: start afresh), after clearing what cannot be used; writes the identity.

    A readable identity of another run: its checkpoints are removed. An unreadable (torn) or missing identity:
    the checkpoints are moved aside, not deleted. Damaged checkpoints newer than the last good one are removed.
    """
    found = checkpoints(output_dir)
    checkpoint = None
    if found:
        try:
            stored = _read_identity(output_dir)
        except CorruptFileError as exc:
            _set_aside(output_dir, found, f"run {name}: {exc}")
        else:
            if stored is None:
                _set_aside(output_dir, found, f"run {name}: {output_dir / RUN_IDENTITY} is missing")
            elif stored.get("hash") != identity["hash"]:
                reasons = "; ".join(identity_changes(stored, identity))
                logger.warning(
                    "run %s: checkpoints in %s are from another configuration, seed, start or data (%s); removing them",
                    name,
                    output_dir,
                    reasons,
                )
                remove_checkpoints(found)
            elif not resume:
                logger.info("run %s: not resuming (resume=False); removing its checkpoints", name)
                remove_checkpoints(found)
            else:
                checkpoint = last_complete_checkpoint(output_dir)
                keep = _checkpoint_step(checkpoint) if checkpoint else -1
                remove_checkpoints([c for c in found if (_checkpoint_step(c) or 0) > keep])
    write_json(output_dir / RUN_IDENTITY, identity)
    return checkpoint


def remove_checkpoints(found: Sequence[Path]) -> None:
    """Delete the given checkpoint folders."""
    for checkpoint in found:
        logger.debug("removing %s", checkpoint)
        shutil.rmtree(checkpoint, ignore_errors=True)
