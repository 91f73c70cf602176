"""The scoring rules themselves: Mem-alpha's per-source rules and MemoryAgentBench's metrics, as pure functions.

Each function cites the official code it follows. Routing a data source to its rule, the protocols and
the LLM judge are in :mod:`finemem_lib.core.metrics`, which re-exports every name here.

Gold answers (``Golds``) arrive as one string or a sequence of acceptable answers. The loaders turn a
string answer into a one-element tuple, so a one-element sequence is read as the string it was where
the official rule treats strings and lists differently (Mem-alpha's keyword split, see
:func:`keyword_list`).
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

Golds = str | Sequence[str]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def as_gold_list(golds: Golds) -> list[str]:
    """Golds as a flat list of strings (nested lists flattened); an empty one is a ValueError."""
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
    return max(fn(c, g) for c in candidates for g in as_gold_list(golds))


def mab_parsed(fn: Callable[[str, str], float], prediction: str, golds: Golds) -> float:
    """One MemoryAgentBench metric on the parsed output only (its ICL and EventQA processing)."""
    parsed = parse_answer(prediction)
    return max(fn(parsed, g) for g in as_gold_list(golds))


def mab_metrics(prediction: str, golds: Golds) -> dict[str, float]:
    """All MemoryAgentBench metrics, each taken with :func:`mab_best`."""
    return {name: mab_best(fn, prediction, golds) for name, fn in MAB_METRICS.items()}


def eventqa_recall(prediction: str, golds: Golds) -> float:
    """EventQA's binary recall (``_process_eventqa_dataset``): 1 if every gold element is in the raw
    output (case-insensitive), else 0."""
    answers = as_gold_list(golds)
    pred = prediction.lower()
    return float(all(a.lower() in pred for a in answers))


def recall_at_k(prediction: str, golds: Golds, k: int = 5) -> float:
    """Lexical recall@k over a list-like prediction (not the official recsys rule; see :func:`recsys_recall_at_5`)."""
    items = [normalize_answer(x) for x in re.split(r"[\n,;]|\d+\.\s", prediction) if normalize_answer(x)]
    top = items[:k]
    answers = [normalize_answer(g) for g in as_gold_list(golds)]
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
    gold_ids = [int(str(g).strip()) for g in as_gold_list(golds)]
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
    return float(as_gold_list(golds)[0].lower() in prediction.lower())


def partial_containment(prediction: str, golds: Golds) -> float:
    """Mem-alpha perltqa rule: with ``;`` in the gold, the fraction of its parts (every part, an empty
    one after a trailing ``;`` included) that, lower-cased and stripped, occur in the prediction as
    written (its case is not folded); without ``;``, case-insensitive containment. Best over golds."""
    pred = prediction
    best = 0.0
    for gold in as_gold_list(golds):
        if ";" in gold:
            parts = gold.split(";")
            value = sum(part.lower().strip() in pred for part in parts) / len(parts)
        else:
            value = float(gold.lower() in pred.lower())
        best = max(best, value)
    return best


def keyword_list(golds: Golds) -> list[str]:
    """The keywords of a booksum / InfBench-Sum gold, as Mem-alpha's scorer reads them.

    Mem-alpha (``evaluate_agent_results.py``, ``_compute_score``: ``if not isinstance(gold_answer, list):
    gold_answer = gold_answer.split(", ")``) splits a string gold on ``", "`` and takes a list as the
    keywords. Its booksum answers are strings (``data_preprocess/extract_booksum_keywords.py`` writes
    ``", ".join(keywords)``), which the loaders wrap in a one-element tuple, so a one-element sequence is
    split like the string it was; a sequence of two or more is the keyword list. (Mem-alpha's keyword
    extraction splits on ``","``, so no keyword of a real list holds ``", "`` and a one-element list
    reads the same either way.)
    """
    if isinstance(golds, str):
        return golds.split(", ")
    items = [str(g) for g in golds]
    return items[0].split(", ") if len(items) == 1 else items


def keyword_hit_fraction(prediction: str, golds: Golds) -> float:
    """Mem-alpha booksum / InfBench-Sum rule: the fraction of gold keywords (see :func:`keyword_list`)
    found in the prediction, case-insensitive (an empty keyword, as ``"a, , b"`` gives, is found)."""
    keywords = keyword_list(golds)
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
    return float(candidate == as_gold_list(golds)[0].strip("\"'").strip())
