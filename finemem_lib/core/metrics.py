"""Answer scoring: Mem-alpha's per-source rules, MemoryAgentBench's rules, and one router.

Two scoring protocols (``scoring.protocol`` in the profiles; see ``docs/`` and the README's fidelity table):

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

import json
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

Golds = str | Sequence[str]
Judge = Callable[[str, str, Sequence[str]], float]
"""A judge gets (question, prediction, golds) and returns a score in [0, 1]."""

PROTOCOLS = ("memalpha", "memoryagentbench")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


class UnsupportedScoring(ValueError):
    """A source whose official scorer cannot run with this configuration (say so, never a wrong number)."""


def _as_list(golds: Golds) -> list[str]:
    if isinstance(golds, str):
        return [golds]
    out: list[str] = []
    for g in golds:
        if isinstance(g, list | tuple):
            out.extend(str(x) for x in g)
        else:
            out.append(str(g))
    if not out:
        raise ValueError("golds must hold at least one acceptable answer")
    return out


# ---------------------------------------------------------------------------- MemoryAgentBench
def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower-case, drop punctuation, drop a/an/the, fold spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    """1 if the normalised strings are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def substring_exact_match(prediction: str, gold: str) -> float:
    """1 if the normalised gold is a substring of the normalised prediction."""
    return float(normalize_answer(gold) in normalize_answer(prediction))


def token_f1(prediction: str, gold: str) -> float:
    """Token F1; a yes/no/noanswer on either side scores 0 unless both normalise equal."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    special = ("yes", "no", "noanswer")
    if (pred in special or ref in special) and pred != ref:
        return 0.0
    pred_tokens, ref_tokens = pred.split(), ref.split()
    same = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge_l_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_f1(prediction: str, gold: str) -> float:
    """ROUGE-L F1 by the official scorer (``rouge_score``, Porter stemming), as MemoryAgentBench computes it."""
    return float(_rouge_l_scorer().score(target=gold, prediction=prediction)["rougeL"].fmeasure)


_ANSWER_PREFIX = re.compile(r"(?:Answer:)(.*)(?:\n|$)", re.IGNORECASE)
_FIRST_LINE = re.compile(r"(?:^)(.*)(?:\n|$)")
_REPEATED_PREFIX = re.compile(r"^Answer:", re.IGNORECASE)


def parse_answer(output: str) -> str:
    """MemoryAgentBench's ``parse_output``: the rest of the line after the first ``Answer:`` (any case),
    else the output's first line (empty when the output starts with a newline); one repeated
    ``Answer:`` prefix is then dropped. ``Answer : x`` (space before the colon) is not a prefix."""
    match = _ANSWER_PREFIX.search(output) or _FIRST_LINE.search(output)
    text = match.group(1).strip() if match else ""
    return _REPEATED_PREFIX.sub("", text).strip()


MAB_METRICS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match,
    "substring_exact_match": substring_exact_match,
    "f1": token_f1,
    "rouge_l_f1": rouge_l_f1,
}


def mab_best(fn: Callable[[str, str], float], prediction: str, golds: Golds) -> float:
    """One MemoryAgentBench metric (``default_post_process``): max over acceptable answers and over the
    raw and the ``Answer:``-parsed output."""
    candidates = (prediction, parse_answer(prediction))
    return max(fn(c, g) for c in candidates for g in _as_list(golds))


def mab_parsed(fn: Callable[[str, str], float], prediction: str, golds: Golds) -> float:
    """One MemoryAgentBench metric on the parsed output only (its ICL and EventQA processing)."""
    parsed = parse_answer(prediction)
    return max(fn(parsed, g) for g in _as_list(golds))


def mab_metrics(prediction: str, golds: Golds) -> dict[str, float]:
    """All MemoryAgentBench metrics, each taken with :func:`mab_best`."""
    return {name: mab_best(fn, prediction, golds) for name, fn in MAB_METRICS.items()}


def eventqa_recall(prediction: str, golds: Golds) -> float:
    """EventQA's binary recall (``_process_eventqa_dataset``): 1 if every gold element is in the raw
    output (case-insensitive), else 0."""
    answers = _as_list(golds)
    pred = prediction.lower()
    return float(all(a.lower() in pred for a in answers))


def recall_at_k(prediction: str, golds: Golds, k: int = 5) -> float:
    """Lexical recall@k over a list-like prediction (not the official recsys rule; see :func:`recsys_recall_at_5`)."""
    items = [normalize_answer(x) for x in re.split(r"[\n,;]|\d+\.\s", prediction) if normalize_answer(x)]
    top = items[:k]
    answers = [normalize_answer(g) for g in _as_list(golds)]
    return sum(any(a and a in item for item in top) for a in answers) / len(answers)


# ---------------------------------------------------------------------------- recsys (entity ids)
def _movie_name(raw: str) -> str:
    name = raw.split("/")[-1].replace("_", " ").replace("-", " ").replace(">", " ")
    return re.sub(r"\s+", " ", re.sub(r"\([^()]*\)", "", name)).strip()


def _clean_item(text: str) -> str:
    text = re.sub(r"\([^()]*\)", "", text)
    text = re.sub(r"^(?:\d+[\.\)、]?\s*[\-\—\–]?\s*)?", "", text)
    return re.sub(r"\s+", " ", text).strip()


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class EntityMap:
    """Recsys entity ids to cleaned movie names (MemoryAgentBench's ``entity2id.json``)."""

    id_to_name: Mapping[int, str]

    @classmethod
    def load(cls, path: str | Path) -> EntityMap:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recsys entity map {str(path)!r} not found (MemoryAgentBench's entity2id.json)")
        raw = json.loads(path.read_text())
        return cls({int(entity_id): _movie_name(name) for name, entity_id in raw.items()})

    @property
    def candidates(self) -> list[str]:
        return sorted(set(self.id_to_name.values()))

    def nearest(self, name: str) -> str:
        """The candidate closest in edit distance (lower-cased); ties go to the first in sorted order."""
        target = name.lower()
        return min(self.candidates, key=lambda c: _edit_distance(target, c.lower()))


def recsys_recall_at_5(prediction: str, golds: Golds, entities: EntityMap) -> float:
    """MemoryAgentBench's recsys Recall@5 (``_process_recsys_dataset``): the output's list (after the first
    ``1.``; else comma/line separated) mapped to the nearest known movie names, against the gold entity ids."""
    if "1." in prediction:
        listing = prediction.split("1.", 1)[1]
    else:
        listing = prediction.replace(",", "\n")
    items = [_clean_item(item.strip()) for item in listing.split("\n")]
    top = [entities.nearest(item) for item in items[:5]]
    gold_ids = [int(str(g).strip()) for g in _as_list(golds)]
    unknown = [g for g in gold_ids if g not in entities.id_to_name]
    if unknown:
        raise ValueError(f"recsys gold ids {unknown[:5]} are not in the entity map")
    gold_names = [entities.id_to_name[g] for g in gold_ids]
    return sum(name in top for name in gold_names) / len(gold_names)


# ---------------------------------------------------------------------------- Mem-alpha
def clean_prediction(text: str) -> str:
    """Mem-alpha's reasoning-trace cleaning: the text between the first and a second ``</think>``
    (``split("</think>")[1]``), and ``"Empty"`` when a ``<think>`` is left (the answer never came)."""
    if "</think>" in text:
        text = text.split("</think>")[1].strip()
    if "<think>" in text:
        return "Empty"
    return text


def containment(prediction: str, golds: Golds) -> float:
    """Mem-alpha squad/hotpotqa rule: the first gold answer contained in the prediction (case-insensitive)."""
    return float(_as_list(golds)[0].lower() in prediction.lower())


def partial_containment(prediction: str, golds: Golds) -> float:
    """Mem-alpha perltqa rule: with ``;`` in the gold, the fraction of its parts (every part, an empty
    one after a trailing ``;`` included) that, lower-cased and stripped, occur in the prediction as
    written (its case is not folded); without ``;``, case-insensitive containment. Best over golds."""
    pred = prediction
    best = 0.0
    for gold in _as_list(golds):
        if ";" in gold:
            parts = gold.split(";")
            value = sum(part.lower().strip() in pred for part in parts) / len(parts)
        else:
            value = float(gold.lower() in pred.lower())
        best = max(best, value)
    return best


def _keywords(golds: Golds) -> list[str]:
    return golds.split(", ") if isinstance(golds, str) else [str(g) for g in golds]


def keyword_hit_fraction(prediction: str, golds: Golds) -> float:
    """Mem-alpha booksum / InfBench-Sum rule: the fraction of gold keywords (a list, or one string split
    on ``", "``) found in the prediction, case-insensitive."""
    keywords = _keywords(golds)
    if not keywords:
        raise ValueError("keyword scoring needs at least one keyword")
    pred = prediction.lower()
    return sum(k.lower() in pred for k in keywords) / len(keywords)


_BOXED = re.compile(r"\\boxed\{([^}]*)\}")
_DIGITS = re.compile(r"^\d+$")


def extract_boxed(prediction: str) -> str | None:
    """Content of the first ``\\boxed{...}`` in the prediction (stripped), or None."""
    match = _BOXED.search(prediction)
    return match.group(1).strip() if match else None


def boxed_label_match(prediction: str, golds: Golds) -> float:
    """Mem-alpha pubmed-rct / ttl / icl rule: the first ``\\boxed{}`` content (else the whole stripped
    prediction), without quotes, must be digits only and equal the first gold as a string (``"043"`` is
    not ``"43"``)."""
    boxed = extract_boxed(prediction)
    candidate = (boxed if boxed is not None else prediction.strip()).strip("\"'").strip()
    if not _DIGITS.match(candidate):
        return 0.0
    return float(candidate == _as_list(golds)[0].strip("\"'").strip())


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


def _protocol_of(cfg: Mapping[str, Any] | str | None) -> str:
    if cfg is None:
        return "memalpha"
    if isinstance(cfg, str):
        protocol = cfg
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


def scorer_name(source: str, cfg: Mapping[str, Any] | None = None) -> str:
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


def build_scorer(cfg: Mapping[str, Any] | None = None) -> Scorer:
    """A :class:`Scorer` from a profile's ``scoring:`` section (protocol, judge, require_judge, recsys_entity_map)."""
    section = dict((cfg or {}).get("scoring") or {})
    judge_cfg = dict(section.get("judge") or {})
    judge: Any = None
    if str(judge_cfg.get("backend", "lexical")).lower() != "lexical":
        from finemem_lib.agents.judge import judge_factory

        judge = judge_factory(judge_cfg)
    entity_map = section.get("recsys_entity_map")
    return Scorer(
        protocol=_protocol_of(cfg),
        judge=judge,
        require_judge=bool(section.get("require_judge", False)),
        entities=EntityMap.load(entity_map) if entity_map else None,
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
