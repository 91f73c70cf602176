"""The benchmarks of a profile, as instances with a table layout.

- ``memalpha``: the held-out test split prepared by notebook 01 (the synthetic benchmark offline,
  ``YuWangX/Memalpha`` test in the paper profile); Memalpha layout.
- ``mab``: MemoryAgentBench, by ``evaluation.mab.source``: ``synthetic`` (the offline
  out-of-distribution analogue, :mod:`finemem_lib.data.mab_synthetic`, written as parquet under
  ``<data>/mab_synthetic`` and read back through the real loader), ``memalpha`` (Mem-alpha's processed
  copy ``YuWangX/Memalpha-Memoryagentbench``, pre-chunked, as Mem-alpha evaluated) or ``raw``
  (``ai-hyz/MemoryAgentBench``, chunked here with ``data.memoryagentbench``'s settings); MAB layout.
- every entry of ``evaluation.custom_benchmarks`` (``{name: {path, split, chunk_size, on_error}}``): a user's own
  MemoryAgentBench-schema parquet; MAB layout, new sources get their own columns.

Both are registries: a new benchmark is one entry of :data:`BENCHMARKS`, a new MemoryAgentBench
source one entry of :data:`MAB_SOURCES`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finemem_lib.data.chunking import make_token_counter
from finemem_lib.data.instance import Instance
from finemem_lib.data.mab_synthetic import load_mab_synthetic
from finemem_lib.data.memalpha import MEMALPHA_MAB_REPO, DataNotAvailableError, load_memalpha_mab
from finemem_lib.data.memoryagentbench import MAB_REPO, load_memoryagentbench
from finemem_lib.data.prepared import load_prepared
from finemem_lib.evaluation.settings import EvaluationSettings, MabSettings, evaluation_settings
from finemem_lib.infra.config import repo_root
from finemem_lib.infra.paths import ProfilePaths, repo_relative


@dataclass(frozen=True)
class Benchmark:
    """Instances to evaluate, and the table layout they fill (``memalpha`` or ``mab``)."""

    name: str
    layout: str
    instances: tuple[Instance, ...]
    description: str = ""
    skipped: tuple[Any, ...] = ()  # rows the loader left out (on_error: skip), as SkippedRow

    def fingerprint(self) -> str:
        """A short hash of the instances (ids, chunks, questions): records are reused only on the same data."""
        digest = hashlib.sha256()
        for inst in self.instances:
            digest.update(
                json.dumps(
                    [inst.id, inst.source, inst.chunks, [[q.question, q.answers] for q in inst.questions]]
                ).encode()
            )
        return digest.hexdigest()[:16]


def benchmark_names(cfg: Mapping[str, Any] | EvaluationSettings) -> list[str]:
    """The benchmarks a profile (or its evaluation settings) evaluates by default: ``evaluation.benchmarks``
    (every built-in one when unset) plus its custom ones."""
    settings = evaluation_settings(cfg)
    builtin = tuple(BENCHMARKS) if settings.benchmarks is None else settings.benchmarks
    return [*builtin, *settings.custom_benchmarks]


def _limit(instances: Sequence[Instance], settings: EvaluationSettings) -> tuple[Instance, ...]:
    limit = settings.max_instances
    return tuple(instances if limit is None else instances[:limit])


def _path(value: str | Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else repo_root() / path


# ---------------------------------------------------------------------------- MemoryAgentBench sources
# (profile, folders, evaluation settings) -> (instances, where they came from)
MabLoader = Callable[[Mapping[str, Any], ProfilePaths, EvaluationSettings], tuple[list[Instance], str]]


def _mab_synthetic(
    cfg: Mapping[str, Any], paths: ProfilePaths, settings: EvaluationSettings
) -> tuple[list[Instance], str]:
    seed = int(cfg.get("seed", 0))
    folder = paths.data / "mab_synthetic"
    instances = load_mab_synthetic(settings.mab_synthetic, seed, folder)
    return instances, f"offline MemoryAgentBench analogue (seed {seed}), parquet in {repo_relative(folder)}"


def _local(mab: MabSettings) -> Path | None:
    return _path(mab.local_dir) if mab.local_dir else None


def _mab_memalpha(
    cfg: Mapping[str, Any], paths: ProfilePaths, settings: EvaluationSettings
) -> tuple[list[Instance], str]:
    mab = settings.mab
    split = mab.split
    try:
        return load_memalpha_mab(split, data_dir=_local(mab)), f"{MEMALPHA_MAB_REPO} [{split}] (pre-chunked)"
    except DataNotAvailableError as exc:  # name the setting of this stage, not notebook 01's
        raise DataNotAvailableError(str(exc).replace("data.memalpha.local_dir", "evaluation.mab.local_dir")) from None


def _mab_raw(cfg: Mapping[str, Any], paths: ProfilePaths, settings: EvaluationSettings) -> tuple[list[Instance], str]:
    count_tokens = make_token_counter((cfg.get("data") or {}).get("tokenizer"))
    raw = dict((cfg.get("data") or {}).get("memoryagentbench") or {})
    local = _local(settings.mab)
    instances: list[Instance] = []
    for split in raw.get("splits", ["Accurate_Retrieval", "Test_Time_Learning", "Long_Range_Understanding"]):
        instances += load_memoryagentbench(
            split,
            sources=(raw.get("sources") or {}).get(split),
            data_dir=local or (_path(raw["local_dir"]) if raw.get("local_dir") else None),
            chunk_size=(raw.get("chunk_size") or {}).get(split),
            count_tokens=count_tokens,
            max_instances=raw.get("max_instances"),
            exclude=raw.get("exclude_sources"),
        )
    return instances, f"{MAB_REPO} (chunked here)"


# ``evaluation.mab.source`` -> loader
MAB_SOURCES: dict[str, MabLoader] = {"synthetic": _mab_synthetic, "memalpha": _mab_memalpha, "raw": _mab_raw}


def load_mab(
    cfg: Mapping[str, Any], paths: ProfilePaths, settings: EvaluationSettings | None = None
) -> tuple[list[Instance], str]:
    """MemoryAgentBench instances per ``evaluation.mab.source``, and a line saying where they came from."""
    settings = evaluation_settings(settings or cfg)
    source = settings.mab.source
    if source not in MAB_SOURCES:
        raise ValueError(f"evaluation.mab.source must be one of {tuple(MAB_SOURCES)}, got {source!r}")
    return MAB_SOURCES[source](cfg, paths, settings)


def load_custom(name: str, spec: Mapping[str, Any]) -> list[Instance]:
    """A user's MemoryAgentBench-schema parquet (``path``, optional ``split`` and ``chunk_size``)."""
    if not isinstance(spec, Mapping) or not spec.get("path"):
        raise ValueError(f"evaluation.custom_benchmarks.{name} needs a 'path' to a MemoryAgentBench-schema parquet")
    path = _path(spec["path"])
    if not path.exists():
        raise FileNotFoundError(f"evaluation.custom_benchmarks.{name}: no file or folder at {path}")
    return load_memoryagentbench(
        spec.get("split", "Accurate_Retrieval"),
        data_dir=path,
        chunk_size=spec.get("chunk_size"),
        on_error=spec.get("on_error", "raise"),
    )


# ---------------------------------------------------------------------------- benchmarks
def _memalpha(name: str, cfg: Mapping[str, Any], paths: ProfilePaths, settings: EvaluationSettings) -> Benchmark:
    instances = load_prepared(paths.data, "test")
    where = f"Memalpha-layout test split from {repo_relative(paths.data)}"
    return Benchmark(name, "memalpha", _limit(instances, settings), where)


def _mab(name: str, cfg: Mapping[str, Any], paths: ProfilePaths, settings: EvaluationSettings) -> Benchmark:
    instances, where = load_mab(cfg, paths, settings)
    return Benchmark(name, "mab", _limit(instances, settings), where)


# (name, profile, folders, evaluation settings) -> the benchmark
BenchmarkLoader = Callable[[str, Mapping[str, Any], ProfilePaths, EvaluationSettings], Benchmark]

# built-in benchmark name -> loader; ``evaluation.custom_benchmarks`` adds MAB-layout ones per profile
BENCHMARKS: dict[str, BenchmarkLoader] = {
    "memalpha": _memalpha,
    "mab": _mab,
}
BUILTIN = tuple(BENCHMARKS)


def load_benchmark(
    name: str, cfg: Mapping[str, Any], paths: ProfilePaths, settings: EvaluationSettings | None = None
) -> Benchmark:
    """One benchmark by name (a built-in one of :data:`BENCHMARKS`, or a custom one of the profile).

    ``settings``: the profile's evaluation settings when already read (else read from ``cfg``).
    """
    settings = evaluation_settings(settings or cfg)
    if name in BENCHMARKS:
        return BENCHMARKS[name](name, cfg, paths, settings)
    custom = settings.custom_benchmarks
    if name in custom:
        loaded = load_custom(name, custom[name])
        where = f"custom: {custom[name]['path']}"
        return Benchmark(name, "mab", _limit(loaded, settings), where, tuple(getattr(loaded, "skipped", ())))
    raise ValueError(f"unknown benchmark {name!r}; this profile has: {', '.join(benchmark_names(settings))}")
