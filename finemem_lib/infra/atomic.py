"""Atomic file writes: every result file is written to a temporary name in its folder, then renamed.

A reader (or a rerun after a kill) sees either the previous complete file or the new complete one,
never a half-written table, figure, manifest or run log. :func:`read_json` names the file and the
command that rebuilds it when a JSON file is unreadable.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class CorruptFileError(ValueError):
    """A result file exists but cannot be parsed (a torn write, or edited by hand)."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix); on success it replaces ``path``.

    The temporary file is removed when the body raises, so a failed write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:  # flush to disk before the rename makes it visible
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (non-JSON values as ``str``)."""
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_csv(frame: Any, path: str | Path, **kwargs: Any) -> Path:
    """``frame.to_csv(path, **kwargs)`` atomically (a pandas DataFrame or Series)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig(path, **kwargs)`` atomically; the format comes from ``path``'s suffix."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path


def read_json(path: str | Path, rebuild: str | None = None) -> Any:
    """Parse a JSON file; a missing file raises FileNotFoundError, an unparsable one :class:`CorruptFileError`.

    ``rebuild`` is the command that writes the file again; it is part of the error message.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}" + (f"; to build it: {rebuild}" if rebuild else ""))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        hint = f"; rebuild it with: {rebuild}" if rebuild else "; delete it and rerun the step that writes it"
        raise CorruptFileError(f"{path} is not valid JSON (half-written or edited: {exc}){hint}") from None
