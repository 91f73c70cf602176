"""A study plan: groups of runs (reward variants x seeds x profile overrides), in the order they are trained.

A plan (YAML) lists groups. Each group names its reward variants (paper variants or credit schemes,
:data:`~finemem_lib.core.reward_spec.TRAINABLE`), its seeds and profile overrides
(``set``, deep-merged into the profile; a list value under ``sweep`` makes one setting per value). Runs
go seed-major within a group (variant A s0, B s0, A s1, ...), so a study cut short still holds matched
seeds. Notebook 03's variants x seeds of one profile is a one-group plan (:func:`one_group_plan`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from finemem_lib.core.reward_spec import SCHEMES, TRAINABLE, VARIANTS
from finemem_lib.infra.config import deep_merge

SHORT = {"rewards.beta": "beta", "rewards.w1": "w1", "rewards.group_mode": "norm", "retrieval.top_k": "topk"}


@dataclass(frozen=True)
class PlannedRun:
    """One run of the study: a group, a tag naming its overrides, a variant, a seed and its merged profile."""

    group: str
    tag: str
    variant: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)
    ood: bool = False  # also score the final manager on the profile's out-of-distribution benchmark (notebook 04)

    def config(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        cfg = deep_merge(dict(profile), self.overrides)
        cfg["name"] = f"{profile.get('name', 'profile')}{'_' + self.tag if self.tag else ''}"
        return cfg

    @property
    def label(self) -> str:
        return f"{self.group}:{self.tag or 'base'}:{self.variant}:s{self.seed}"


def _unknown(name: object) -> str:
    return f"variant {name!r} is not one of the paper's variants {VARIANTS} or the credit schemes {SCHEMES}"


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


def run_tag(overrides: Mapping[str, Any]) -> str:
    """A short file-safe name of a set of overrides (``""`` for none): ``steps12_beta0.25``."""
    parts = []
    for name, value in sorted(_flatten(overrides).items()):
        short = SHORT.get(name) or name.split(".")[-1].replace("max_steps", "steps")
        parts.append(f"{short}{value}")
    return "_".join(parts).replace("/", "-").replace(" ", "")


def load_plan(path: str | Path, profile: Mapping[str, Any] | None = None) -> list[PlannedRun]:
    """The runs of a plan file, in training order (see the module docstring); bad entries name themselves."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no study plan at {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    groups = raw.get("groups") if isinstance(raw, Mapping) else None
    if not isinstance(groups, list) or not groups:
        raise ValueError(f"study plan {path}: needs a non-empty 'groups' list")
    return plan_runs(groups, profile)


def plan_runs(groups: Sequence[Mapping[str, Any]], profile: Mapping[str, Any] | None = None) -> list[PlannedRun]:
    """Expand plan groups into runs, in order.

    Overrides equal to the ``profile``'s own value are dropped, so a sweep point that is the base
    setting (e.g. beta 0.5) is the same run (same name) in every group that holds it: it is listed
    in each of them and trained once (:func:`run_plan` reuses a finished run).
    """
    base = _flatten(profile or {})
    runs: list[PlannedRun] = []
    seen: set[tuple[str, str, str, int]] = set()
    for i, group in enumerate(groups):
        name = str(group.get("name") or f"group{i}")
        unknown = sorted(set(group) - {"name", "variants", "seeds", "set", "sweep", "ood"})
        if unknown:
            raise ValueError(f"study plan group {name!r}: unknown key(s) {unknown}")
        variants = list(group.get("variants") or [])
        seeds = [int(s) for s in group.get("seeds") or []]
        if not variants or not seeds:
            raise ValueError(f"study plan group {name!r}: needs 'variants' and 'seeds'")
        for v in variants:
            if v not in TRAINABLE:
                raise ValueError(f"study plan group {name!r}: {_unknown(v)}")
        fixed = _flatten(group.get("set") or {})
        sweep = _flatten(group.get("sweep") or {})
        for key, values in sweep.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"study plan group {name!r}: sweep {key!r} needs a non-empty list")
        settings = [dict(zip(sweep, combo, strict=True)) for combo in itertools.product(*sweep.values())] or [{}]
        points = []
        for setting in settings:
            overrides = _nest({k: v for k, v in {**fixed, **setting}.items() if k not in base or base[k] != v})
            points.append((run_tag(overrides), overrides))
        # seed-major over every setting and variant: a study cut short holds whole seeds of a sweep
        for seed, (tag, overrides), variant in itertools.product(seeds, points, variants):
            if (name, tag, variant, seed) in seen:
                continue
            seen.add((name, tag, variant, seed))
            runs.append(PlannedRun(name, tag, variant, seed, overrides, bool(group.get("ood", False))))
    return runs


def one_group_plan(variants: Sequence[str], seeds: Sequence[int], name: str = "main") -> list[PlannedRun]:
    """The runs of one group without overrides, variant-major (every seed of a variant, then the next variant)."""
    for v in variants:
        if v not in TRAINABLE:
            raise ValueError(_unknown(v))
    return [PlannedRun(name, "", v, int(seed)) for v in variants for seed in seeds]
