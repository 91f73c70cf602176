"""Profiles as YAML files in ``configs/`` (smoke, default, full, paper, ...), with ``extends`` for overrides.

A string value may name environment variables as ``${NAME}`` or ``${NAME:-fallback}`` (e.g. a local
data folder, ``${FINEMEM_HUB_DIR:-data/hub}/Memalpha``); they are filled in when the profile is loaded.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PROFILE = "default"
_ENV_REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<fallback>[^}]*))?\}")


def repo_root() -> Path:
    """The project root (the folder holding ``configs/`` and ``results/``)."""
    return Path(__file__).resolve().parents[2]


def profile_names() -> list[str]:
    """Every profile in ``configs/`` (one ``<name>.yaml`` each, study plans ``study_*.yaml`` excluded), sorted."""
    return sorted(p.stem for p in (repo_root() / "configs").glob("*.yaml") if not p.stem.startswith("study_"))


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``override`` merged in (nested mappings merged key by key)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def expand_env(value: Any, where: str = "profile") -> Any:
    """``${NAME}`` / ``${NAME:-fallback}`` in every string of ``value`` (nested dicts and lists) from the environment.

    An unset variable without a fallback is a ValueError naming the key.
    """
    if isinstance(value, dict):
        return {k: expand_env(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def fill(match: re.Match[str]) -> str:
        name, fallback = match["name"], match["fallback"]
        if name in os.environ:
            return os.environ[name]
        if fallback is None:
            raise ValueError(f"{where} uses ${{{name}}}, which is not set; set it or write ${{{name}:-fallback}}")
        return fallback

    return _ENV_REF.sub(fill, value)


def load_profile(name_or_path: str | Path) -> dict[str, Any]:
    """Load a profile by name (``configs/<name>.yaml``) or path, resolving ``extends`` chains and ``${ENV}``."""
    profile = _load_raw(name_or_path)
    return expand_env(profile, str(profile.get("name", name_or_path)))


def _load_raw(name_or_path: str | Path) -> dict[str, Any]:
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
    if "groups" in raw and "extends" not in raw:
        raise ValueError(f"{path.name} is a study plan (finemem_lib.training.study --plan), not a profile")
    parent = raw.pop("extends", None)
    profile = deep_merge(_load_raw(path.parent / f"{parent}.yaml"), raw) if parent else raw
    profile.setdefault("name", path.stem)
    if not parent:
        profile["name"] = path.stem
    return profile
