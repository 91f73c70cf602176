"""The evaluation stage: every method on every benchmark, one record per question, resumable.

:func:`preflight` loads the benchmarks and checks sources, model folders and the reasoner endpoint before
any work starts, each failure naming the command or setting that fixes it. :func:`run_evaluation` then
evaluates (benchmark, method) pairs, appending each instance's records as soon as it is answered
(managers roll out ``evaluation.manager_batch`` instances together, then write them one by one), and
skips instances already recorded under the same configuration.

Records go to ``<results>/eval/04_<benchmark>_<method>.jsonl`` (see :mod:`~finemem_lib.evaluation.records`).
The ceilings (``evaluation.ceilings``, scripted reference policies) run on every benchmark whose instances
carry the synthetic generator's sentence roles and skip the others with one log line;
``<results>/eval/04_ceilings.json`` says which benchmarks got them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from finemem_lib.agents.reasoner import Reasoner
from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.core import metrics
from finemem_lib.episodes.ceilings import missing_roles
from finemem_lib.evaluation.benchmarks import BUILTIN, Benchmark, benchmark_names, load_benchmark
from finemem_lib.evaluation.columns import column_for, layout
from finemem_lib.evaluation.memory_length import DEFINITION as MEMORY_LENGTH_DEFINITION
from finemem_lib.evaluation.methods import (
    InstanceResult,
    Method,
    baseline_result,
    discover_methods,
    load_policy,
    run_manager,
    select_methods,
)
from finemem_lib.evaluation.records import RecordStore
from finemem_lib.evaluation.settings import EvaluationSettings, evaluation_settings
from finemem_lib.evaluation.sources import check_sources, register_sources
from finemem_lib.infra.config import profile_argument
from finemem_lib.infra.paths import ProfilePaths, repo_relative

logger = logging.getLogger(__name__)

CONFIG_KEYS = ("reasoner", "retrieval", "baselines", "memory", "manager", "rollout", "seed")


class EvaluationSetupError(RuntimeError):
    """Something the evaluation needs is missing; the message says how to get it."""


@dataclass
class Plan:
    """What will be evaluated: benchmarks and methods, checked.

    ``ceilings_skipped``: benchmark -> why the ceilings (methods of role ``ceiling``) do not run on it
    (its instances carry no sentence roles); every other (benchmark, method) pair is evaluated.
    """

    benchmarks: list[Benchmark]
    methods: list[Method]
    ceilings_skipped: dict[str, str] = field(default_factory=dict)

    def methods_for(self, benchmark: str) -> list[Method]:
        """The methods evaluated on ``benchmark``: all, less the ceilings where they cannot run."""
        skip = benchmark in self.ceilings_skipped
        return [m for m in self.methods if not (skip and m.role == "ceiling")]

    def ceilings(self) -> dict[str, Any]:
        """Which benchmarks got which ceilings, and why the others got none (kept with the records)."""
        names = [m.name for m in self.methods if m.role == "ceiling"]
        applied = {b.name: names for b in self.benchmarks if names and b.name not in self.ceilings_skipped}
        return {"requested": names, "applied": applied, "skipped": dict(self.ceilings_skipped)}


def records_path(paths: ProfilePaths, benchmark: str, method: str) -> Path:
    return paths.results / "eval" / f"04_{benchmark}_{method}.jsonl"


def _profile_flag(cfg: Mapping[str, Any]) -> str:
    return f"--profile {profile_argument(cfg)}"


def _check_models(methods: Sequence[Method], cfg: Mapping[str, Any]) -> None:
    missing = []
    for m in methods:
        if m.kind != "manager" or not m.model:
            continue
        folder = Path(m.model)
        looks_local = folder.is_absolute() or m.model.startswith(".") or folder.exists()
        if looks_local and not (folder / "config.json").is_file():
            missing.append(f"{m.name}: {folder}")
        elif not looks_local and _offline() and not _in_hub_cache(m.model):
            missing.append(f"{m.name}: Hub model {m.model} is not in the cache (offline; `hf download {m.model}`)")
    if missing:
        name = profile_argument(cfg)
        raise EvaluationSetupError(
            f"manager model folder(s) missing: {'; '.join(missing)}. Train them first: "
            f"`./reproduce.sh --profile {name} --only 03` (SFT start and every variant), or "
            f"`python -m finemem_lib.training.cli --profile {name}`; "
            "or leave them out with --methods, or set evaluation.trained_managers: false"
        )


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def _check_reasoner(cfg: Mapping[str, Any]) -> None:
    section = dict(cfg.get("reasoner") or {})
    if str(section.get("backend", "offline")).lower() != "openai":
        return
    import os

    base_url = section.get("base_url") or os.environ.get("REASONER_BASE_URL")
    model = section.get("model") or os.environ.get("REASONER_MODEL")
    fix = (
        "start the reasoner, e.g. `vllm serve Qwen/Qwen3-32B --port 8000`, then `export "
        "REASONER_BASE_URL=http://localhost:8000/v1` (or set reasoner.base_url in the profile)"
    )
    if not base_url or not model:
        raise EvaluationSetupError(
            f"the reasoner endpoint is not configured (reasoner.base_url or REASONER_BASE_URL); {fix}"
        )
    try:
        import openai

        openai.OpenAI(
            base_url=base_url, api_key=os.environ.get("REASONER_API_KEY", "EMPTY"), timeout=10, max_retries=0
        ).models.list()
    except Exception as exc:
        raise EvaluationSetupError(
            f"the reasoner endpoint {base_url} is not reachable ({type(exc).__name__}); {fix}"
        ) from None


def preflight(
    cfg: Mapping[str, Any],
    paths: ProfilePaths,
    methods: Sequence[str] | None = None,
    benchmarks: Sequence[str] | None = None,
    check_endpoint: bool = True,
    settings: EvaluationSettings | None = None,
) -> Plan:
    """Load and check everything before any work: data, scoring rules, model folders, reasoner endpoint.

    ``settings``: the profile's evaluation settings when already read (else read from ``cfg`` here).
    """
    from finemem_lib.data.memalpha import DataNotAvailableError

    try:
        settings = evaluation_settings(settings or cfg)
    except ValueError as exc:
        raise EvaluationSetupError(str(exc)) from None
    register_sources(settings.source_rules)
    try:  # names first: a mistyped method fails before any data is read
        chosen = select_methods(discover_methods(cfg, paths), methods)
    except ValueError as exc:
        raise EvaluationSetupError(str(exc)) from None
    profile_names = benchmark_names(settings)
    names = list(benchmarks or profile_names)
    unknown = [n for n in names if n not in profile_names and n not in BUILTIN]
    if unknown:
        known = ", ".join(dict.fromkeys([*profile_names, *BUILTIN]))
        raise EvaluationSetupError(f"unknown benchmark(s) {unknown}; this profile has: {known}")
    loaded = []
    for name in names:
        try:
            loaded.append(load_benchmark(name, cfg, paths, settings))
        except DataNotAvailableError as exc:
            if name == "memalpha":
                raise EvaluationSetupError(
                    f"{exc}\nTo fix: `./reproduce.sh {_profile_flag(cfg)} --only 01` prepares the test split"
                ) from None
            raise EvaluationSetupError(str(exc)) from None
        except ValueError as exc:  # a broken row (DataSchemaError names file, row, column), a bad setting
            raise EvaluationSetupError(f"benchmark {name}: {exc}") from None
    sources = sorted({inst.source for bench in loaded for inst in bench.instances})
    check_sources(sources)
    try:
        metrics.build_scorer(cfg).check(sources)  # judged sources without a required judge, unsupported rules
    except ValueError as exc:
        raise EvaluationSetupError(str(exc)) from None
    _check_models(chosen, cfg)
    if check_endpoint:
        _check_reasoner(cfg)
    return Plan(loaded, chosen, _ceilings_skipped(loaded, chosen))


def _ceilings_skipped(benchmarks: Sequence[Benchmark], methods: Sequence[Method]) -> dict[str, str]:
    """Benchmark -> why the ceilings skip it; one log line each, a warning when no benchmark gets them."""
    names = [m.name for m in methods if m.role == "ceiling"]
    if not names:
        return {}
    skipped = {}
    for bench in benchmarks:
        reason = missing_roles(bench.instances)
        if reason is not None:
            skipped[bench.name] = reason
            logger.info("ceilings %s skipped on %s: %s", ", ".join(names), bench.name, reason)
    if benchmarks and len(skipped) == len(benchmarks):
        logger.warning(
            "evaluation.ceilings %s: no benchmark evaluated here carries the synthetic generator's sentence "
            "roles, so the tables hold no ceiling (they run on the synthetic held-out split only)",
            names,
        )
    return skipped


def _header(cfg: Mapping[str, Any], benchmark: Benchmark, method: Method) -> dict[str, Any]:
    from finemem_lib.infra.machine import machine_info
    from finemem_lib.infra.provenance import config_hash, loaded_git_state, package_versions

    relevant = {k: cfg.get(k) for k in CONFIG_KEYS}
    # the section as written (not its typed settings): records are reused only under the same configuration
    relevant["evaluation"] = {k: v for k, v in (cfg.get("evaluation") or {}).items() if k != "bootstrap"}
    relevant["evaluation"].pop("ceilings", None)  # which ceilings run leaves every other method's records valid
    if method.kind == "baseline":  # records counted under another memory-length definition are redone
        relevant["memory_length"] = MEMORY_LENGTH_DEFINITION
    if method.role == "ceiling":  # the teacher ceiling replays the SFT teacher
        relevant["teacher"] = (cfg.get("sft") or {}).get("teacher")
    identity = method.identity()
    return {
        "benchmark": benchmark.name,
        "method": method.name,
        "model": repo_relative(method.model),
        "role": method.role or "baseline",
        "model_fingerprint": identity["fingerprint"],
        "reasoner": cfg.get("reasoner"),
        "profile": cfg.get("name"),
        "data_fingerprint": benchmark.fingerprint(),
        **skipped_summary(benchmark.skipped),
        "config_hash": config_hash([relevant, identity, benchmark.fingerprint()]),
        "git": loaded_git_state(),
        "versions": package_versions(),
        "machine": machine_info(),
    }


def skipped_summary(skipped: Sequence[Any]) -> dict[str, Any]:
    """What a record header says of the rows a load left out: how many, per column, and each reason."""
    if not skipped:
        return {}
    from dataclasses import asdict

    by_column: dict[str, int] = {}
    for row in skipped:
        by_column[row.column or "?"] = by_column.get(row.column or "?", 0) + 1
    return {"skipped_rows": len(skipped), "skipped_by_column": by_column, "skipped": [asdict(r) for r in skipped]}


def _records(
    result: InstanceResult, benchmark: Benchmark, method: Method, custom: Mapping[str, Any], scored_by: str
) -> list[dict]:
    """One record per question; the scores come from the profile's scorer (judged sources through its judge)."""
    inst = result.instance
    column = column_for(inst.source, layout(benchmark.layout), custom)
    scores = [float(r.score) for r in result.results]
    return [
        {
            "benchmark": benchmark.name,
            "method": method.name,
            "role": method.role or "baseline",
            "instance_id": inst.id,
            "source": inst.source,
            "column": column.name,
            "question": r.question,
            "golds": list(r.golds),
            "prediction": r.prediction,
            "score": score,
            "scored_by": scored_by,
            "evidence_ids": list(r.evidence_ids),
            "evidence_steps": list(r.evidence_steps),
            "evidence_texts": texts,
            "memory_tokens": int(result.memory_tokens),
            "memory_items": int(result.memory_items),
            "num_chunks": inst.num_chunks,
            **result.extra,
        }
        for r, texts, score in zip(result.results, result.evidence_texts, scores, strict=True)
    ]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """CPU threads for the manager's forward passes: ``threads`` (``evaluation.num_threads``, else
    ``runtime.threads``), or (None for both) the cores not busy right now.

    More torch threads than free cores makes generation slower, not faster (measured on 2 shared cores
    at load 20: 2 threads took 340 s where 1 thread took 16 s for the same rollout).
    """
    import torch

    from finemem_lib.agents.sft import free_cpu_threads

    previous = torch.get_num_threads()
    wanted = int(threads) if threads else (free_cpu_threads() if not torch.cuda.is_available() else previous)
    torch.set_num_threads(max(1, wanted))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + max(1, size)]


def evaluate_pair(
    cfg: Mapping[str, Any],
    paths: ProfilePaths,
    benchmark: Benchmark,
    method: Method,
    reasoner: Reasoner,
    progress: bool = True,
    settings: EvaluationSettings | None = None,
) -> RecordStore:
    """One method on one benchmark: the unfinished instances are evaluated and appended; returns the store."""
    settings = evaluation_settings(settings or cfg)
    custom = settings.source_rules
    store = RecordStore(records_path(paths, benchmark.name, method.name), _header(cfg, benchmark, method))
    done = store.finished()
    todo = [inst for inst in benchmark.instances if inst.id not in done]
    if not todo:
        return store
    scorer = metrics.build_scorer(cfg)
    scored_by = {inst.source: scorer.rule_name(inst.source) for inst in todo}
    bar = tqdm(
        total=len(benchmark.instances), initial=len(done), desc=f"{benchmark.name}/{method.name}", disable=not progress
    )
    try:
        if method.kind == "baseline":
            for inst in todo:
                store.append_instance(
                    _records(
                        baseline_result(method.name, inst, reasoner, cfg),
                        benchmark,
                        method,
                        custom,
                        scored_by[inst.source],
                    )
                )
                bar.update(1)
        else:
            policy = load_policy(method, cfg)
            with torch_threads(settings.num_threads or (cfg.get("runtime") or {}).get("threads")):
                for batch in _batches(todo, settings.manager_batch):
                    for result in run_manager(policy, batch, reasoner, cfg, seed=int(cfg.get("seed", 0))):
                        store.append_instance(
                            _records(result, benchmark, method, custom, scored_by[result.instance.source])
                        )
                        bar.update(1)
    finally:
        bar.close()
    return store


def run_evaluation(
    cfg: Mapping[str, Any],
    paths: ProfilePaths,
    methods: Sequence[str] | None = None,
    benchmarks: Sequence[str] | None = None,
    reasoner: Reasoner | None = None,
    progress: bool = True,
    plan: Plan | None = None,
    settings: EvaluationSettings | None = None,
) -> pd.DataFrame:
    """Evaluate (after :func:`preflight`) and return every per-question record as a frame.

    ``settings``: the profile's evaluation settings when already read (else read once here for every step).
    """
    try:
        settings = evaluation_settings(settings or cfg)
    except ValueError as exc:
        raise EvaluationSetupError(str(exc)) from None
    plan = plan or preflight(cfg, paths, methods, benchmarks, check_endpoint=reasoner is None, settings=settings)
    reasoner = reasoner or build_reasoner(cfg.get("reasoner"))
    if any(m.role == "ceiling" for m in plan.methods):
        write_ceilings_log(cfg, paths, plan)
    frames = []
    for benchmark in plan.benchmarks:
        for method in plan.methods_for(benchmark.name):
            store = evaluate_pair(cfg, paths, benchmark, method, reasoner, progress, settings)
            frames.append(pd.DataFrame(store.records))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not frame.empty:  # records written before roles were recorded get theirs from the plan
        roles = frame["method"].map({m.name: (m.role or "baseline") for m in plan.methods})
        frame["role"] = frame["role"].fillna(roles) if "role" in frame else roles
    return frame


def ceilings_log_path(paths: ProfilePaths) -> Path:
    return paths.results / "eval" / "04_ceilings.json"


def write_ceilings_log(cfg: Mapping[str, Any], paths: ProfilePaths, plan: Plan) -> Path:
    """``<results>/eval/04_ceilings.json``: the ceilings asked for, the benchmarks that got them, why others did not."""
    import json

    from finemem_lib.infra.provenance import loaded_git_state

    path = ceilings_log_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = {"profile": cfg.get("name"), **plan.ceilings(), "git": loaded_git_state()}
    path.write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    return path
