"""Provenance of every result: config, seed, package versions, git revision, machine, command.

Every number in results/ comes with its config, seed, package versions, git revision and the thread
and determinism settings it ran under (run logs, study logs, evaluation headers). Whether a finished
run can be reused is decided by its identity (:mod:`finemem_lib.infra.identity`). Paths in logs are
relative to the project root (:func:`finemem_lib.infra.paths.repo_relative`).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from finemem_lib.infra.config import repo_root
from finemem_lib.infra.identity import config_hash
from finemem_lib.infra.machine import machine_info
from finemem_lib.infra.paths import repo_relative

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


@functools.cache
def _git_state_at_first_use(root: str) -> tuple[tuple[str, Any], ...]:
    return tuple(git_state(root).items())


def loaded_git_state() -> dict[str, Any]:
    """:func:`git_state` as it was when this process first asked: the revision of the code it runs.

    A long-running process (a study training one run after another) keeps the code it loaded; asking
    git again later would name commits made since, which it never ran.
    """
    return dict(_git_state_at_first_use(str(repo_root())))


def host_info() -> dict[str, Any]:
    """Machine facts that explain wall times."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cuda": torch.cuda.is_available(),
        **machine_info(),  # the CPU model: floats may differ in their last bits on another CPU
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def launch_command(argv: list[str] | None = None) -> str:
    """The command line of this process, paths relative to the project; a notebook kernel says so."""
    argv = list(sys.argv if argv is None else argv)
    if argv and "ipykernel" in Path(argv[0]).name:
        return "a notebook kernel (papermill/jupyter; the study log names the notebook)"
    return " ".join(repo_relative(arg) or arg for arg in argv)


def provenance(cfg: Mapping[str, Any], seed: int, **extra: Any) -> dict[str, Any]:
    """Everything needed to tell how a run was made."""
    return {
        "profile": cfg.get("name"),
        "seed": seed,
        "config": dict(cfg),
        "config_hash": config_hash(cfg),
        "versions": package_versions(),
        "git": loaded_git_state(),
        "host": host_info(),
        "command": launch_command(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
