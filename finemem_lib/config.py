"""Profiles as YAML files in ``configs/`` (smoke, default, full, paper, ...), with ``extends`` for overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PROFILE = "default"


def repo_root() -> Path:
    """The project root (the folder holding ``configs/`` and ``results/``)."""
    return Path(__file__).resolve().parents[1]


def profile_names() -> list[str]:
    """Every profile in ``configs/`` (one ``<name>.yaml`` each), sorted."""
    return sorted(p.stem for p in (repo_root() / "configs").glob("*.yaml"))


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_profile(name_or_path: str | Path) -> dict[str, Any]:
    """Load a profile by name (``configs/<name>.yaml``) or path, resolving ``extends`` chains."""
    path = Path(name_or_path)
    if not path.suffix:
        path = repo_root() / "configs" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no profile {name_or_path!r} (looked for {path}); profiles: {', '.join(profile_names())}"
        )
    with path.open() as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"profile {path} must be a YAML mapping")
    parent = raw.pop("extends", None)
    profile = _deep_merge(load_profile(path.parent / f"{parent}.yaml"), raw) if parent else raw
    profile.setdefault("name", path.stem)
    if not parent:
        profile["name"] = path.stem
    return profile
