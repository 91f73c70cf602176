"""The ``evaluation:`` section of a profile, read once into typed settings (see ``configs/default.yaml``).

:func:`evaluation_settings` checks every key's type and says which key is wrong in one line; the stage's
modules then read attributes, not the raw dict. Which benchmarks, MemoryAgentBench sources and
baselines exist is decided where they are registered (``None`` here means "the registered default").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class EvaluationSettingsError(ValueError):
    """A key of the ``evaluation:`` section has a value of the wrong kind."""


@dataclass(frozen=True)
class BootstrapSettings:
    """``evaluation.bootstrap``: percentile intervals over instances."""

    samples: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class MabSettings:
    """``evaluation.mab``: where the MemoryAgentBench benchmark comes from."""

    source: str = "synthetic"  # a key of finemem_lib.evaluation.benchmarks.MAB_SOURCES
    local_dir: str | None = None
    split: str = "test"


@dataclass(frozen=True)
class EvaluationSettings:
    """Every key of ``evaluation:``; the defaults are those of a profile that leaves a key out."""

    benchmarks: tuple[str, ...] | None = None  # None: every built-in benchmark
    custom_benchmarks: Mapping[str, Any] = field(default_factory=dict)
    baselines: tuple[str, ...] | None = None  # None: every baseline
    ceilings: tuple[str, ...] = ()  # scripted reference policies, on the benchmarks whose instances carry roles
    trained_managers: bool = True
    extra_managers: Mapping[str, Any] = field(default_factory=dict)
    manager_batch: int = 8
    max_instances: int | None = None  # per benchmark
    num_threads: int | None = None
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    mab: MabSettings = field(default_factory=MabSettings)
    mab_synthetic: Any = None  # knobs of finemem_lib.data.mab_synthetic.MABSyntheticConfig (checked when built)
    source_rules: Mapping[str, Any] = field(default_factory=dict)


def _section(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EvaluationSettingsError(f"{key} must be a mapping, got {type(value).__name__} {value!r}")
    return dict(value)


def _optional_int(value: Any, key: str) -> int | None:
    """A whole number (a numeric string too, as ``int()`` reads it), or None for None."""
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or (isinstance(value, float) and number != value):
        raise EvaluationSettingsError(f"{key} must be a whole number, got {value!r}")
    return number


def _int(value: Any, key: str, default: int) -> int:
    number = _optional_int(value, key)
    return default if number is None else number


def _names(value: Any, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise EvaluationSettingsError(f"{key} must be a list of names, got {value!r}")
    return tuple(value)


def evaluation_settings(cfg: Mapping[str, Any] | EvaluationSettings | None) -> EvaluationSettings:
    """The typed ``evaluation:`` section of a profile (settings given are returned as they are)."""
    if isinstance(cfg, EvaluationSettings):
        return cfg
    section = _section((cfg or {}).get("evaluation"), "evaluation")
    boot = _section(section.get("bootstrap"), "evaluation.bootstrap")
    mab = _section(section.get("mab"), "evaluation.mab")
    return EvaluationSettings(
        benchmarks=_names(section.get("benchmarks"), "evaluation.benchmarks"),
        custom_benchmarks=_section(section.get("custom_benchmarks"), "evaluation.custom_benchmarks"),
        baselines=_names(section.get("baselines"), "evaluation.baselines"),
        ceilings=_names(section.get("ceilings"), "evaluation.ceilings") or (),
        trained_managers=bool(section.get("trained_managers", True)),
        extra_managers=_section(section.get("extra_managers"), "evaluation.extra_managers"),
        manager_batch=_int(section.get("manager_batch"), "evaluation.manager_batch", 8),
        max_instances=_optional_int(section.get("max_instances"), "evaluation.max_instances"),
        num_threads=_optional_int(section.get("num_threads"), "evaluation.num_threads"),
        bootstrap=BootstrapSettings(
            samples=_int(boot.get("samples"), "evaluation.bootstrap.samples", 1000),
            seed=_int(boot.get("seed"), "evaluation.bootstrap.seed", 0),
        ),
        mab=MabSettings(
            source=str(mab.get("source") or "synthetic"),
            local_dir=str(mab["local_dir"]) if mab.get("local_dir") else None,
            split=str(mab.get("split") or "test"),
        ),
        mab_synthetic=section.get("mab_synthetic"),
        source_rules=_section(section.get("source_rules"), "evaluation.source_rules"),
    )
