"""Answer scoring: Mem-alpha's per-source rules, MemoryAgentBench's rules, and one router.

Two scoring protocols (``scoring.protocol`` in the profiles; rule by rule in ``docs/fidelity.md`` and the fidelity
table of ``docs/design.md``):

- ``memalpha`` (both profiles): the rules of Mem-alpha's evaluation scorer
  (``evaluate_agent_results.py``, ``AgentResultsEvaluator._compute_score``), and for the
  MemoryAgentBench sources it does not handle itself, the rules it delegates to
  (``memalpha/llm_agent/metrics.py``, ``evaluate_wrt_source``).
- ``memoryagentbench``: MemoryAgentBench's own protocol (``utils/eval_other_utils.py``,
  ``post_process``, with the metric its README names per dataset) for MemoryAgentBench sources;
  Memalpha sources keep the Mem-alpha rules.

A :class:`Scorer` holds the protocol, the LLM judge for judged sources (LongMemEval, ``lme_train``)
and the recsys entity map. ``score(source, prediction, golds)`` is the one-call form with the
``memalpha`` protocol. A judged source without a judge uses the lexical fallback (substring exact
match) unless the scorer requires a judge (the paper profile), in which case :meth:`Scorer.check`
raises before any work starts. :func:`rule_for` names the scorer that produced a column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from finemem_lib.core.scoring_rules import (  # noqa: F401  (re-exported: the rules' public names)
    MAB_METRICS,
    EntityMap,
    Golds,
    as_gold_list,
    boxed_label_match,
    clean_prediction,
    containment,
    eventqa_recall,
    exact_match,
    extract_boxed,
    keyword_hit_fraction,
    keyword_list,
    mab_best,
    mab_metrics,
    mab_parsed,
    normalize_answer,
    parse_answer,
    partial_containment,
    recall_at_k,
    recsys_recall_at_5,
    rouge_l_f1,
    substring_exact_match,
    token_f1,
)

Judge = Callable[[str, str, Sequence[str]], float]
"""A judge gets (question, prediction, golds) and returns a score in [0, 1]."""

PROTOCOLS = ("memalpha", "memoryagentbench")


class UnsupportedScoring(ValueError):
    """A source whose official scorer cannot run with this configuration (say so, never a wrong number)."""


_as_list = as_gold_list


# ---------------------------------------------------------------------------- routing
@dataclass(frozen=True)
class ScoreRule:
    """A scoring rule: its name, the sources it covers (regex, full match), and the function.

    ``judged``: the official scorer is an LLM judge (``fn`` is the lexical fallback).
    ``needs``: an extra resource the rule needs (``"entity_map"`` for recsys).
    ``unsupported``: why the rule cannot run (raised by :meth:`Scorer.check`).
    """

    name: str
    pattern: str
    fn: Callable[[str, Golds], float]
    judged: bool = False
    needs: str | None = None
    unsupported: str | None = None


def _mab_substring(prediction: str, golds: Golds) -> float:
    return mab_best(substring_exact_match, prediction, golds)


def _mab_exact(prediction: str, golds: Golds) -> float:
    return mab_best(exact_match, prediction, golds)


def _mab_rouge_l(prediction: str, golds: Golds) -> float:
    return mab_best(rouge_l_f1, prediction, golds)


def _parsed_exact(prediction: str, golds: Golds) -> float:
    return mab_parsed(exact_match, prediction, golds)


def _parsed_substring(prediction: str, golds: Golds) -> float:
    return mab_parsed(substring_exact_match, prediction, golds)


def _needs_entities(prediction: str, golds: Golds) -> float:
    raise UnsupportedScoring("recsys needs scoring.recsys_entity_map (MemoryAgentBench's entity2id.json)")


_MEMALPHA_SOURCES: tuple[ScoreRule, ...] = (
    ScoreRule("keyword_hit_fraction", r"booksum|infbench_sum.*|infbench-sum.*", keyword_hit_fraction),
    ScoreRule("boxed_label_match", r"pubmed[-_]rct|ttl.*|icl.*|synth_icl", boxed_label_match),
    ScoreRule("containment", r"squad|hotpotqa|synth_factoid|synth_update|chunk_qa", containment),
    ScoreRule("partial_containment", r"perltqa", partial_containment),
    ScoreRule("llm_judge_yes_no", r"lme.*|longmemeval.*", _mab_substring, judged=True),
)

RULE_TABLES: dict[str, tuple[ScoreRule, ...]] = {
    # evaluate_agent_results._compute_score, then evaluate_wrt_source for the rest
    "memalpha": (
        *_MEMALPHA_SOURCES,
        ScoreRule("eventqa_recall", r"eventqa.*", eventqa_recall),
        ScoreRule("rouge_l_f1", r"infbench.*", _mab_rouge_l),
        ScoreRule("recsys_recall_at_5", r"recsys.*", _needs_entities, needs="entity_map"),
        ScoreRule("substring_exact_match", r"ruler.*|factconsolidation.*|detective_qa.*|detectiveqa.*", _mab_substring),
    ),
    # MemoryAgentBench's post_process with its README's metric per dataset
    "memoryagentbench": (
        ScoreRule("exact_match_parsed", r"icl.*", _parsed_exact),
        ScoreRule("substring_exact_match_parsed", r"eventqa.*", _parsed_substring),
        ScoreRule("substring_exact_match", r"ruler.*|factconsolidation.*", _mab_substring),
        ScoreRule("exact_match", r"detective_?qa.*", _mab_exact),
        ScoreRule("recsys_recall_at_5", r"recsys.*", _needs_entities, needs="entity_map"),
        ScoreRule("llm_judge_yes_no", r"longmemeval.*", _mab_substring, judged=True),
        ScoreRule(
            "infbench_sum_llm_f1",
            r"infbench_sum.*",
            keyword_hit_fraction,
            unsupported="MemoryAgentBench scores InfBench-Sum with a GPT-4o judge (HELMET's F1), not implemented "
            "here; use scoring.protocol: memalpha (keyword-hit fraction, Mem-alpha's table)",
        ),
        *_MEMALPHA_SOURCES,
    ),
}

KNOWN_SOURCES = (
    "squad, hotpotqa, perltqa, lme_train, booksum, pubmed-rct, ttl_train, icl_*, ruler_qa*, "
    "longmemeval*, eventqa*, recsys*, infbench_sum*, detective_qa*, factconsolidation*, "
    "synth_factoid, synth_update, synth_icl, chunk_qa (the chunk-level QAs of CSR)"
)
LEXICAL_FALLBACK = "substring_exact_match (lexical fallback, no judge)"


@dataclass(frozen=True)
class ScoringSettings:
    """A profile's ``scoring:`` section, read once: protocol, the judge's section, require_judge, the entity map."""

    protocol: str = "memalpha"
    judge: Mapping[str, Any] = field(default_factory=dict)  # backend (lexical: none), model, base_url, client
    require_judge: bool = False
    recsys_entity_map: str | None = None

    def __post_init__(self) -> None:
        _protocol_of(self.protocol)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | ScoringSettings | None) -> ScoringSettings:
        """The settings of a profile (settings given are returned as they are)."""
        if isinstance(cfg, ScoringSettings):
            return cfg
        section = (cfg or {}).get("scoring") or {}
        if not isinstance(section, Mapping) or not isinstance(section.get("judge") or {}, Mapping):
            raise ValueError("scoring and scoring.judge must be mappings (see configs/default.yaml)")
        entity_map = section.get("recsys_entity_map")
        return cls(
            protocol=str(section.get("protocol", "memalpha")),
            judge=dict(section.get("judge") or {}),
            require_judge=bool(section.get("require_judge", False)),
            recsys_entity_map=str(entity_map) if entity_map else None,
        )


def _protocol_of(cfg: Mapping[str, Any] | ScoringSettings | str | None) -> str:
    if cfg is None:
        return "memalpha"
    if isinstance(cfg, str):
        protocol = cfg
    elif isinstance(cfg, ScoringSettings):
        protocol = cfg.protocol
    else:
        protocol = str((cfg.get("scoring") or {}).get("protocol", "memalpha"))
    if protocol not in PROTOCOLS:
        raise ValueError(f"scoring.protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return protocol


def rule_for(source: str, cfg: Mapping[str, Any] | str | None = None) -> ScoreRule:
    """The scoring rule for a data source name (case-insensitive, full match) under a protocol.

    ``cfg`` is a profile (its ``scoring.protocol`` is used), a protocol name, or None (``memalpha``).
    """
    key = source.strip().lower()
    for rule in RULE_TABLES[_protocol_of(cfg)]:
        if re.fullmatch(rule.pattern, key):
            return rule
    raise ValueError(f"unknown data source {source!r}; known sources: {KNOWN_SOURCES}")


def scorer_name(source: str, cfg: Mapping[str, Any] | ScoringSettings | None = None) -> str:
    """The name of the scorer that produces ``source``'s column under a profile (for table captions)."""
    return build_scorer(cfg).rule_name(source)


# ---------------------------------------------------------------------------- scorer
@dataclass
class Scorer:
    """Scores predictions with a protocol's rules, an optional LLM judge and the recsys entity map.

    Args:
        protocol: ``memalpha`` or ``memoryagentbench``.
        judge: the judge of LLM-judged sources (``judge(question, prediction, golds)``), or a
            zero-argument factory that builds it on first use (so a profile without a server can
            still score sources that need none).
        require_judge: a judged source without a judge is an error (paper profile) instead of the
            lexical fallback (offline profile).
        entities: the recsys entity map.
    """

    protocol: str = "memalpha"
    judge: Judge | Callable[[], Judge] | None = None
    require_judge: bool = False
    entities: EntityMap | None = None
    _built_judge: Judge | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _protocol_of(self.protocol)

    def rule(self, source: str) -> ScoreRule:
        return rule_for(source, self.protocol)

    def _judge(self) -> Judge | None:
        if self._built_judge is None and self.judge is not None:
            built = self.judge() if getattr(self.judge, "is_factory", False) else self.judge
            self._built_judge = built  # type: ignore[assignment]
        return self._built_judge

    def rule_name(self, source: str) -> str:
        """What scores ``source``: the rule's name, or the judge / the lexical fallback for judged sources."""
        rule = self.rule(source)
        if not rule.judged:
            return rule.name
        if self.judge is not None:
            return f"{rule.name} ({getattr(self.judge, 'name', 'judge')})"
        return LEXICAL_FALLBACK

    def check(self, sources: Sequence[str] | str) -> None:
        """Raise before any work when a source cannot be scored as configured."""
        for source in [sources] if isinstance(sources, str) else sources:
            rule = self.rule(source)
            if rule.unsupported:
                raise UnsupportedScoring(f"{source}: {rule.unsupported}")
            if rule.needs == "entity_map" and self.entities is None:
                raise UnsupportedScoring(
                    f"{source}: recsys Recall@5 needs scoring.recsys_entity_map (MemoryAgentBench's "
                    "entity2id.json); without it there is no official number"
                )
            if rule.judged and self.judge is None and self.require_judge:
                raise ValueError(
                    f"{source} is scored by an LLM judge and this profile requires one (scoring.require_judge): "
                    "configure scoring.judge (backend: openai, base_url, model) or set JUDGE_BASE_URL / JUDGE_MODEL"
                )
            if rule.judged and self.judge is not None:
                self._judge()  # a judge that cannot be built fails here, before work starts

    def score(self, source: str, prediction: str, golds: Golds, question: str = "") -> float:
        """Score one prediction with its source's rule (the judge for judged sources when configured)."""
        return self.score_many([(source, question, prediction, golds)])[0]

    def score_many(self, items: Sequence[tuple[str, str, str, Golds]]) -> list[float]:
        """Scores of ``(source, question, prediction, golds)`` items; judged items go to the judge in one batch."""
        out: list[float | None] = [None] * len(items)
        judged: list[int] = []
        for i, (source, _question, prediction, golds) in enumerate(items):
            if not isinstance(prediction, str):
                raise ValueError(f"prediction must be a string, got {type(prediction).__name__}")
            self.check(source)
            golds_list = _as_list(golds)
            rule = self.rule(source)
            if rule.judged and self.judge is not None:
                judged.append(i)
            elif rule.needs == "entity_map":
                assert self.entities is not None
                out[i] = recsys_recall_at_5(prediction, golds_list, self.entities)
            else:
                out[i] = float(rule.fn(prediction, golds if isinstance(golds, str) else golds_list))
        if judged:
            judge = self._judge()
            assert judge is not None
            batch = getattr(judge, "judge_many", None)
            requests = [(items[i][1], items[i][2], _as_list(items[i][3])) for i in judged]
            values = batch(requests) if batch else [judge(*r) for r in requests]
            for i, value in zip(judged, values, strict=True):
                out[i] = float(value)
        return [float(v) for v in out]  # type: ignore[arg-type]


JudgeBackend = Callable[[Mapping[str, Any]], Callable[[], Judge]]
"""Builds, from a ``scoring.judge`` section, a zero-argument factory of the judge (called on first use)."""

JUDGE_BACKENDS: dict[str, JudgeBackend] = {}
"""Judge backends by ``scoring.judge.backend`` name. The judges live above this layer (they call a model
server); the package registers its OpenAI-compatible judge here (``finemem_lib/__init__.py``)."""


def register_judge_backend(name: str, backend: JudgeBackend) -> None:
    """Make ``scoring.judge.backend: <name>`` build its judge with ``backend(section)``."""
    JUDGE_BACKENDS[name.lower()] = backend


def build_scorer(cfg: Mapping[str, Any] | ScoringSettings | None = None) -> Scorer:
    """A :class:`Scorer` from a profile's ``scoring:`` section or its :class:`ScoringSettings`.

    The judge of ``scoring.judge`` is built by its registered backend (:data:`JUDGE_BACKENDS`); ``lexical``
    (the default) means no judge.
    """
    settings = ScoringSettings.from_config(cfg)
    judge: Any = None
    backend = str(settings.judge.get("backend", "lexical")).lower()
    if backend != "lexical":
        if backend not in JUDGE_BACKENDS:
            raise ValueError(f"unknown judge backend {backend!r}; choose lexical or {' or '.join(JUDGE_BACKENDS)}")
        judge = JUDGE_BACKENDS[backend](dict(settings.judge))
    return Scorer(
        protocol=settings.protocol,
        judge=judge,
        require_judge=settings.require_judge,
        entities=EntityMap.load(settings.recsys_entity_map) if settings.recsys_entity_map else None,
    )


def score(
    source: str,
    prediction: str,
    golds: Golds,
    judge: Judge | None = None,
    question: str = "",
    protocol: str = "memalpha",
) -> float:
    """Score one prediction with the rule of its data source (see :class:`Scorer`).

    For LLM-judged sources ``judge(question, prediction, golds)`` is used when given; otherwise the
    lexical fallback (substring exact match) applies.
    """
    return Scorer(protocol=protocol, judge=judge).score(source, prediction, golds, question)
