"""Where a profile reads and writes: prepared data, figures, tables, run logs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finemem_lib.config import repo_root


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
    cfg: dict[str, Any], results_dir: str | Path | None = None, data_dir: str | Path | None = None
) -> ProfilePaths:
    """Folders for a loaded profile; relative paths are taken from the project root.

    ``results_dir``/``data_dir`` override the profile's ``paths.results_dir``/``paths.data_dir``
    (notebook parameters use this, so tests can write to a temporary folder).
    """
    paths = cfg.get("paths", {})
    root = repo_root()
    results = Path(results_dir or paths.get("results_dir", "results"))
    data = Path(data_dir or paths.get("data_dir", "data")) / cfg.get("name", "default")
    return ProfilePaths(
        data=data if data.is_absolute() else root / data,
        results=results if results.is_absolute() else root / results,
    ).ensure()
