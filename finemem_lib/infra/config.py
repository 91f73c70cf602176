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
    """Load a profile by name (``configs/<name>.yaml``) or path, resolving ``extends`` chains and ``${ENV}``.

    A profile's ``extends: <parent>`` is looked up next to the profile's file first, then in ``configs/``
    (so a profile anywhere can extend ``default``). Its ``name`` is its own: what it says, else its file
    stem, never the parent's; outputs of a profile other than ``default`` go to ``results/<name>/``.
    """
    path = _profile_path(name_or_path)
    profile = _load_raw(path, ())
    if path.parent.resolve() != (repo_root() / "configs").resolve():
        _LOADED_FROM[str(profile["name"])] = path.resolve()
    return expand_env(profile, str(profile.get("name", name_or_path)))


_LOADED_FROM: dict[str, Path] = {}
"""Profiles loaded from outside ``configs/``, by name: where they came from (for hints naming the file)."""


def profile_argument(cfg: dict[str, Any] | Any) -> str:
    """What ``--profile`` takes to reach this profile again: its name, or its file when not in ``configs/``."""
    name = str(cfg.get("name", DEFAULT_PROFILE))
    return str(_LOADED_FROM.get(name, name))


def _profile_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = repo_root() / "configs" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no profile {str(name_or_path)!r} (looked for {path}); profiles: {', '.join(profile_names())}, "
            "or a YAML file's path"
        )
    return path


def _parent_path(parent: Any, child: Path) -> Path:
    """``extends``: a name or a relative path, looked up next to ``child``, then in ``configs/``."""
    if not isinstance(parent, str) or not parent.strip():
        raise ValueError(f"{child}: extends must name a profile, got {parent!r}")
    file = parent if parent.endswith((".yaml", ".yml")) else f"{parent}.yaml"
    candidates = [child.parent / file, repo_root() / "configs" / file]
    for candidate in candidates:
        if candidate.is_file() and candidate.resolve() != child.resolve():
            return candidate
    looked = " and ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"{child}: extends {parent!r}, but there is no such profile (looked for {looked}); "
        f"profiles: {', '.join(profile_names())}"
    )


def _load_raw(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    if path.resolve() in chain:
        raise ValueError(f"profile {path} extends itself (through {' -> '.join(str(p) for p in chain)})")
    with path.open() as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"profile {path} must be a YAML mapping")
    if "groups" in raw and "extends" not in raw:
        raise ValueError(f"{path.name} is a study plan (finemem_lib.training.study --plan), not a profile")
    parent = raw.pop("extends", None)
    own_name = raw.get("name") or path.stem
    if parent:
        profile = deep_merge(_load_raw(_parent_path(parent, path), (*chain, path.resolve())), raw)
    else:
        profile = raw
    profile["name"] = str(own_name)
    return profile
