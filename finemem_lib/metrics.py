"""Answer scoring: MemoryAgentBench rules, Mem-alpha's per-source rules, and one router.

``score(source, prediction, golds)`` picks the rule for a data source by name (Memalpha,
MemoryAgentBench and the synthetic sources). An unknown source raises a ``ValueError`` that lists
the known ones. Sources whose official scorer is an LLM judge (LongMemEval, InfBench-Sum) use the
``judge`` callable when one is given, and a documented lexical fallback otherwise.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Golds = str | Sequence[str]
Judge = Callable[[str, str, Sequence[str]], float]
"""A judge gets (question-or-source, prediction, golds) and returns a score in [0, 1]."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def _as_list(golds: Golds) -> list[str]:
    if isinstance(golds, str):
        return [golds]
    out = [str(g) for g in golds]
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


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokenisation: lower-case alphanumeric runs (no stemming)."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def rouge_l_f1(prediction: str, gold: str) -> float:
    """ROUGE-L F1: longest common subsequence of lower-case alphanumeric tokens."""
    pred, ref = _rouge_tokens(prediction), _rouge_tokens(gold)
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


_ANSWER_LINE = re.compile(r"answer\s*:(.*?)(?:\n|$)", re.IGNORECASE)


def parse_answer(output: str) -> str:
    """The text after ``Answer:`` up to the end of its line, else the output's first line."""
    match = _ANSWER_LINE.search(output)
    if match:
        return match.group(1).strip()
    lines = output.strip().splitlines()
    return lines[0].strip() if lines else ""


MAB_METRICS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match,
    "substring_exact_match": substring_exact_match,
    "f1": token_f1,
    "rouge_l_f1": rouge_l_f1,
}


def mab_best(fn: Callable[[str, str], float], prediction: str, golds: Golds) -> float:
    """One MemoryAgentBench metric: max over acceptable answers and over the raw and ``Answer:``-parsed output."""
    candidates = (prediction, parse_answer(prediction))
    return max(fn(c, g) for c in candidates for g in _as_list(golds))


def mab_metrics(prediction: str, golds: Golds) -> dict[str, float]:
    """All MemoryAgentBench metrics, each taken with :func:`mab_best`."""
    return {name: mab_best(fn, prediction, golds) for name, fn in MAB_METRICS.items()}


def recall_at_k(prediction: str, golds: Golds, k: int = 5) -> float:
    """Fraction of gold items found among the first ``k`` items of a list-like prediction."""
    items = [normalize_answer(x) for x in re.split(r"[\n,;]|\d+\.\s", prediction) if normalize_answer(x)]
    top = items[:k]
    answers = [normalize_answer(g) for g in _as_list(golds)]
    return sum(any(a and a in item for item in top) for a in answers) / len(answers)


# ---------------------------------------------------------------------------- Mem-alpha
def containment(prediction: str, golds: Golds) -> float:
    """Mem-alpha squad/hotpotqa rule: a gold answer contained in the prediction (case-insensitive)."""
    pred = prediction.lower()
    return float(any(g.strip().lower() in pred for g in _as_list(golds) if g.strip()))


def partial_containment(prediction: str, golds: Golds) -> float:
    """Mem-alpha perltqa rule: ';'-separated gold parts, credit = fraction contained (best gold)."""
    pred = prediction.lower()
    best = 0.0
    for gold in _as_list(golds):
        parts = [p.strip().lower() for p in gold.split(";") if p.strip()]
        if parts:
            best = max(best, sum(p in pred for p in parts) / len(parts))
    return best


def _keywords(golds: Golds) -> list[str]:
    answers = _as_list(golds)
    if len(answers) == 1:
        answers = re.split(r"[,;\n]", answers[0])
    return [k.strip().lower() for k in answers if k.strip()]


def keyword_hit_fraction(prediction: str, golds: Golds) -> float:
    """Mem-alpha booksum / InfBench-Sum rule: fraction of gold keywords found in the prediction.

    Keywords are the list of golds, or a single gold string split on commas, semicolons or newlines.
    """
    keywords = _keywords(golds)
    if not keywords:
        raise ValueError("keyword scoring needs at least one non-empty keyword")
    pred = prediction.lower()
    return sum(k in pred for k in keywords) / len(keywords)


_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def extract_boxed(prediction: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in the prediction, or None."""
    found = _BOXED.findall(prediction)
    return found[-1].strip() if found else None


def _same_label(a: str, b: str) -> bool:
    a, b = a.strip(), b.strip()
    if a.lstrip("-").isdigit() and b.lstrip("-").isdigit():
        return int(a) == int(b)
    return normalize_answer(a) == normalize_answer(b)


def boxed_label_match(prediction: str, golds: Golds) -> float:
    """Mem-alpha pubmed-rct / ttl / icl rule: the ``\\boxed{}`` content equals the gold label.

    Without a ``\\boxed{}`` the whole prediction must equal the label (MemoryAgentBench's label
    exact match), so ``"label: 43"`` does not match ``"43"``.
    """
    boxed = extract_boxed(prediction)
    candidate = boxed if boxed is not None else prediction
    return float(any(_same_label(candidate, g) for g in _as_list(golds)))


# ---------------------------------------------------------------------------- routing
@dataclass(frozen=True)
class ScoreRule:
    """A scoring rule: its name, the sources it covers (regex), and the function."""

    name: str
    pattern: str
    fn: Callable[[str, Golds], float]
    judged: bool = False


def _mab_substring(prediction: str, golds: Golds) -> float:
    return mab_best(substring_exact_match, prediction, golds)


RULES: tuple[ScoreRule, ...] = (
    ScoreRule("containment", r"squad|hotpotqa|synth_factoid|synth_update", containment),
    ScoreRule("partial_containment", r"perltqa", partial_containment),
    ScoreRule("keyword_hit_fraction", r"booksum", keyword_hit_fraction),
    ScoreRule("keyword_hit_fraction", r"infbench_sum.*|infbench-sum.*", keyword_hit_fraction, judged=True),
    ScoreRule("boxed_label_match", r"pubmed[-_]rct|ttl.*|icl.*|synth_icl", boxed_label_match),
    ScoreRule("substring_exact_match", r"lme.*|longmemeval.*", _mab_substring, judged=True),
    ScoreRule(
        "substring_exact_match",
        r"ruler_qa.*|eventqa.*|factconsolidation.*|detective_qa.*",
        _mab_substring,
    ),
    ScoreRule("recall_at_5", r"recsys.*", recall_at_k),
)

KNOWN_SOURCES = (
    "squad, hotpotqa, perltqa, lme_train, booksum, pubmed-rct, ttl_train, icl_*, ruler_qa*, "
    "longmemeval*, eventqa*, recsys*, infbench_sum*, detective_qa*, factconsolidation*, "
    "synth_factoid, synth_update, synth_icl"
)


def rule_for(source: str) -> ScoreRule:
    """The scoring rule for a data source name (case-insensitive, full match)."""
    key = source.strip().lower()
    for rule in RULES:
        if re.fullmatch(rule.pattern, key):
            return rule
    raise ValueError(f"unknown data source {source!r}; known sources: {KNOWN_SOURCES}")


def score(source: str, prediction: str, golds: Golds, judge: Judge | None = None) -> float:
    """Score one prediction with the rule of its data source.

    For LLM-judged sources (LongMemEval, lme, InfBench-Sum) ``judge(source, prediction, golds)`` is
    used when given; otherwise the lexical fallback named by :func:`rule_for` applies.
    """
    rule = rule_for(source)
    if not isinstance(prediction, str):
        raise ValueError(f"prediction must be a string, got {type(prediction).__name__}")
    if rule.judged and judge is not None:
        return float(judge(source, prediction, _as_list(golds)))
    return float(rule.fn(prediction, golds))
