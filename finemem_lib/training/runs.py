"""Run logs: every number in results/ comes with its config, seed, package versions and git revision."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from finemem_lib.config import repo_root

PACKAGES = ("finemem", "torch", "transformers", "trl", "accelerate", "datasets", "tokenizers", "numpy", "bm25s")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that shape a run (None when one is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(root: str | Path | None = None) -> dict[str, Any]:
    """The git revision of the project and whether the working tree has uncommitted changes."""
    root = Path(root or repo_root())
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}
    return {"revision": revision, "dirty": bool(status.strip())}


def host_info() -> dict[str, Any]:
    """Machine facts that explain wall times."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able object (used to tell whether a finished run matches a config)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def provenance(cfg: Mapping[str, Any], seed: int, **extra: Any) -> dict[str, Any]:
    """Everything needed to tell how a run was made."""
    return {
        "profile": cfg.get("name"),
        "seed": seed,
        "config": dict(cfg),
        "config_hash": config_hash(cfg),
        "versions": package_versions(),
        "git": git_state(),
        "host": host_info(),
        "command": " ".join(sys.argv),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (folders created; written to a temporary file first, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by :func:`write_json`; a missing file names itself."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no run log at {path}")
    return json.loads(path.read_text())
