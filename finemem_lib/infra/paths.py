"""Where a profile reads and writes: prepared data, figures, tables, run logs.

Only the default profile owns the top level of ``results/``; every other profile writes under
``results/<profile>/`` (``results/smoke/``, ``results/paper/``, ...), so a run of one profile never
replaces another's committed files. Prepared data and models live in ``data/<profile>/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finemem_lib.infra.config import DEFAULT_PROFILE, repo_root


@dataclass(frozen=True)
class ProfilePaths:
    """Output folders of one profile; :meth:`ensure` creates them."""

    data: Path
    results: Path

    @property
    def figures(self) -> Path:
        return self.results / "figures"

    @property
    def tables(self) -> Path:
        return self.results / "tables"

    @property
    def runs(self) -> Path:
        return self.results / "runs"

    def ensure(self) -> ProfilePaths:
        for folder in (self.data, self.figures, self.tables, self.runs):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def profile_paths(
    cfg: dict[str, Any],
    results_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    create: bool = True,
) -> ProfilePaths:
    """Folders for a loaded profile; relative paths are taken from the project root.

    Results go to ``paths.results_dir`` (default ``results``) for the default profile and to
    ``<paths.results_dir>/<profile>`` for every other one. ``results_dir``/``data_dir`` override the
    profile's folders as they are (notebook parameters use this, so tests and ``./reproduce.sh check``
    write to a temporary folder). ``create=False`` only names the folders.
    """
    paths = cfg.get("paths", {})
    root = repo_root()
    if results_dir:
        results = Path(results_dir)
    else:
        results = Path(paths.get("results_dir", "results"))
        name = cfg.get("name", DEFAULT_PROFILE)
        if name != DEFAULT_PROFILE:
            results = results / name
    data = Path(data_dir or paths.get("data_dir", "data")) / cfg.get("name", "default")
    found = ProfilePaths(
        data=data if data.is_absolute() else root / data,
        results=results if results.is_absolute() else root / results,
    )
    return found.ensure() if create else found


def repo_relative(path: str | Path | None) -> str | None:
    """``path`` relative to the project root when it lies inside it (run logs store these), else as given."""
    if path is None:
        return None
    text = str(path)
    candidate = Path(text)
    if not candidate.is_absolute():
        return text
    try:
        return candidate.resolve().relative_to(repo_root().resolve()).as_posix()
    except ValueError:
        return text


def from_repo(path: str | Path) -> Path:
    """A path stored by :func:`repo_relative`, made absolute again (relative paths are from the project root)."""
    path = Path(path)
    return path if path.is_absolute() else repo_root() / path


# ---------------------------------------------------------------------------- where a run's files go
FINAL_MODEL = "final"  # a run's final manager: <run dirs checkpoint folder>/final


def run_name(cfg: Mapping[str, Any], variant: str, seed: int) -> str:
    """``<profile>_<variant>_s<seed>``: the name of a GRPO run (its log folder and checkpoint folder)."""
    return f"{cfg.get('name', 'profile')}_{variant}_s{seed}"


def run_dirs(paths: ProfilePaths, name: str, log_prefix: str = "03") -> tuple[Path, Path]:
    """``(run log folder, checkpoint folder)`` of a run (``log_prefix``: the notebook that owns the log)."""
    return paths.runs / f"{log_prefix}_{name}", paths.data / "grpo" / name


def sft_manager_dir(paths: ProfilePaths) -> Path:
    """Where a profile's SFT manager lives."""
    return paths.data / "models" / "sft"
