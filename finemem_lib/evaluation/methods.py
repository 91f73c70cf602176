"""The methods under evaluation: memory-free baselines and managers given as model folders.

Each method turns instances into :class:`InstanceResult` objects (the answered questions with their
evidence, and the memory the method kept). ``memory_tokens`` is the text the reader is given
(:mod:`~finemem_lib.evaluation.memory_length`, one definition for every table): the final memory (managers,
ceilings, store-everything), the window it reads (long-context), the text it retrieves per question
(RAG-BM25, averaged over the questions) or nothing (closed-book).

Managers found for a profile (:func:`discover_methods`): the GRPO start (the SFT manager, or
``manager.model`` where SFT is off) and the final model of every trained (variant, seed) of notebook 03
(``<data>/grpo/<profile>_<variant>_s<seed>/final``), plus any ``evaluation.extra_managers``
(``{name: local folder or Hub id}``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finemem_lib.agents.reasoner import Reasoner
from finemem_lib.core.tokens import TokenCounter, regex_token_count
from finemem_lib.data.instance import Instance
from finemem_lib.episodes import baselines, ceilings
from finemem_lib.episodes.qa import QAResult
from finemem_lib.evaluation.memory_length import baseline_memory
from finemem_lib.evaluation.settings import evaluation_settings
from finemem_lib.infra.config import repo_root
from finemem_lib.infra.identity import model_hash
from finemem_lib.infra.paths import FINAL_MODEL, ProfilePaths, run_dirs, run_name, sft_manager_dir
from finemem_lib.training.config import training_settings

BASELINE_NAMES = ("long_context", "rag_bm25", "store_everything", "closed_book")


@dataclass(frozen=True)
class Method:
    """A method: a baseline (``model`` None) or a manager (``model`` = a folder or Hub id)."""

    name: str
    kind: str  # "baseline" | "manager"
    model: str | None = None
    role: str = ""  # managers: "start" (SFT / base) or "trained"; scripted reference policies: "ceiling"

    def identity(self) -> dict[str, Any]:
        """What decides whether earlier records of this method can be reused."""
        return {"name": self.name, "kind": self.kind, "model": self.model, "fingerprint": model_fingerprint(self.model)}


@dataclass
class InstanceResult:
    """One method on one instance: answered questions, evidence texts, memory kept."""

    instance: Instance
    results: list[QAResult]
    evidence_texts: list[list[str]]
    memory_tokens: int
    memory_items: int
    extra: dict[str, Any] = field(default_factory=dict)


def model_fingerprint(model: str | None) -> str | None:
    """The content hash of a local model folder (:func:`finemem_lib.infra.identity.model_hash`); None for Hub ids."""
    if not model or not Path(model).is_dir():
        return None
    return model_hash(model)


# ---------------------------------------------------------------------------- discovery
def discover_methods(cfg: Mapping[str, Any], paths: ProfilePaths) -> list[Method]:
    """The profile's methods: ``evaluation.baselines``, the GRPO start, every trained variant, extra managers."""
    section = cfg.get("evaluation") or {}
    methods = [Method(name, "baseline") for name in section.get("baselines", BASELINE_NAMES)]
    unknown = [m.name for m in methods if m.name not in BASELINE_NAMES]
    if unknown:
        raise ValueError(f"evaluation.baselines: unknown {unknown}; choose from {BASELINE_NAMES}")
    ceiling_names = ceilings.checked(evaluation_settings(cfg).ceilings)  # run where the instances carry roles
    methods += [Method(name, "baseline", role="ceiling") for name in ceiling_names]
    if not section.get("trained_managers", True):  # no trained or SFT manager needed: baselines (+ extra managers)
        extra = (section.get("extra_managers") or {}).items()
        return methods + [Method(str(name), "manager", str(model), "trained") for name, model in extra]
    training = cfg.get("training") or {}
    if training.get("sft_model"):
        start = Path(training["sft_model"])
        methods.append(
            Method("sft_manager", "manager", str(start if start.is_absolute() else repo_root() / start), "start")
        )
    elif (cfg.get("sft") or {}).get("enabled", True):
        methods.append(Method("sft_manager", "manager", str(sft_manager_dir(paths)), "start"))
    else:
        methods.append(Method("base_manager", "manager", str((cfg.get("manager") or {}).get("model")), "start"))
    if section.get("trained_managers", True):
        settings = training_settings(cfg)
        for variant in settings.variants:
            for seed in settings.seeds:
                folder = run_dirs(paths, run_name(cfg, variant, seed))[1] / FINAL_MODEL
                methods.append(Method(f"{variant}_s{seed}", "manager", str(folder), "trained"))
    for name, model in (section.get("extra_managers") or {}).items():
        methods.append(Method(str(name), "manager", str(model), "trained"))
    return methods


def select_methods(methods: Sequence[Method], names: Sequence[str] | None) -> list[Method]:
    """The methods named (all when ``names`` is empty); an unknown name lists the available ones."""
    if not names:
        return list(methods)
    by_name = {m.name: m for m in methods}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; this profile has: {', '.join(by_name)}")
    return [by_name[n] for n in names]


# ---------------------------------------------------------------------------- baselines
def baseline_result(
    name: str,
    instance: Instance,
    reasoner: Reasoner,
    cfg: Mapping[str, Any],
    token_counter: TokenCounter = regex_token_count,
) -> InstanceResult:
    """One baseline on one instance, with the evidence texts and the memory it kept.

    Settings as :func:`finemem_lib.episodes.baselines.run_baseline`."""
    if name in ceilings.CEILINGS:  # a scripted reference policy: answered over the memory it wrote
        results, memory = ceilings.run_ceiling(name, instance, reasoner, cfg, token_counter)
        lookup = {item.id: item.content for item in memory.items}
        texts = [[lookup.get(i, "") for i in r.evidence_ids] for r in results]
        return InstanceResult(instance, results, texts, memory.num_tokens(), len(memory))
    (results,) = baselines.run_baseline(name, [instance], reasoner, cfg, token_counter)
    memory = baseline_memory(name, instance, results, cfg, token_counter)  # the one definition of memory length
    texts = [[memory.texts.get(i, "") for i in r.evidence_ids] for r in results]
    return InstanceResult(instance, results, texts, memory.tokens, memory.items)


# ---------------------------------------------------------------------------- managers
def load_policy(method: Method, cfg: Mapping[str, Any]):
    """The manager of a method, with the profile's prompt settings."""
    from finemem_lib.agents.policy import load_manager
    from finemem_lib.agents.sft import policy_settings

    return load_manager(method.model, **policy_settings(cfg))


def run_manager(
    policy: Any,
    instances: Sequence[Instance],
    reasoner: Reasoner,
    cfg: Mapping[str, Any],
    seed: int = 0,
    token_counter: TokenCounter = regex_token_count,
    progress_desc: str | None = None,
) -> Iterator[InstanceResult]:
    """One greedy evaluation episode per instance (``rollout.eval_sampling``), all questions, no chunk QAs."""
    from dataclasses import replace

    from finemem_lib.episodes.rollout import rollout, settings_from_config

    settings = replace(settings_from_config(dict(cfg), training=False), chunk_qas=False)
    groups = rollout(
        instances, policy, reasoner, settings, seed=seed, token_counter=token_counter, progress_desc=progress_desc
    )
    for instance, group in zip(instances, groups, strict=True):
        episode = group[0]
        lookup = {item.id: item.content for item in episode.memory.items} if episode.memory is not None else {}
        texts = [[lookup.get(i, "") for i in r.evidence_ids] for r in episode.global_results]
        format_rate = sum(episode.r_fmt) / len(episode.r_fmt) if episode.steps else 0.0
        yield InstanceResult(
            instance,
            list(episode.global_results),
            texts,
            episode.memory_tokens,
            episode.steps[-1].memory_items if episode.steps else 0,
            {"format_rate": float(format_rate)},
        )
