"""Offline synthetic benchmark in the Memalpha schema (plus per-chunk QAs), seeded and deterministic.

Three sources mirror Memalpha's kinds of data:

- ``synth_factoid``: facts about made-up people among distractor sentences (squad-like retrieval).
- ``synth_update``: facts that change over time; the question asks the latest value, so UPDATE matters.
- ``synth_icl``: labelled examples ``Sample: a note about <k1>, <k2> and <k3>; Label: N.`` (keywords of
  one class); questions are new samples and the answer is the label digits (scored like Mem-alpha's
  boxed labels).

Every fact is ONE short sentence holding the subject, the relation phrase and the value; its question
holds the subject and relation words but never the value. Every fact or update sentence of a relation
contains each word of that relation's question (as a BM25 token, same count), so a word-matching reader
and BM25 find the fact and cannot tell an old version from a new one by the question's words: only the
sentence length decides which version BM25 ranks first, and the templates' lengths are chosen so that
an update is as likely to rank above the version it replaces as below it. Keeping stale versions thus
hurts (UPDATE matters) without systematically favouring either version. A chunk is its sentences joined
by single spaces and :func:`finemem_lib.core.sentences.split_sentences` gives them back exactly.

``Instance.metadata`` records, per chunk and sentence, ``{"role", "key", "value", "asked"}``: role is
``fact`` (first statement of a key), ``update`` (a later statement of the same key, which supersedes
it), ``distractor`` (filler, or a fact about a person nobody asks about) or ``example`` (a labelled
sample; key null, value the label, plus ``class`` and ``sample``). ``key`` is ``"<person>|<relation>"``
(null for filler and examples); ``asked`` says whether a global question asks that key. ``questions``
holds per global question its ``key``, the ``chunk``/``sentence`` of the evidence (the latest statement)
and the ``history`` of all statements; ``chunk_qa_sentences`` the sentence index behind each chunk QA.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finemem_lib.data.instance import QA, Instance
from finemem_lib.data.memalpha import write_memalpha_parquet
from finemem_lib.data.synthetic_spec import (
    DEFAULT_ICL_QUESTION,
    FILLER_EVENTS,
    FILLER_OPENERS,
    FILLER_SUBJECTS,
    FIRST_NAMES,
    GENERATOR_VERSION,
    ICL_CLASSES,
    ICL_FRAME,
    ICL_KEYWORDS_PER_SAMPLE,
    ICL_QUESTION_SUFFIX,
    LURE_PREFIX,
    RELATIONS,
    SOURCE_PROMPTS,
    SOURCES,
    SPLITS,
    SURNAME_HEADS,
    SURNAME_TAILS,
    UPDATE_QUESTION_PREFIX,
    Relation,
    SyntheticConfig,
)

__all__ = [
    "DEFAULT_ICL_QUESTION",
    "FILLER_EVENTS",
    "FILLER_OPENERS",
    "FILLER_SUBJECTS",
    "FIRST_NAMES",
    "GENERATOR_VERSION",
    "ICL_CLASSES",
    "ICL_FRAME",
    "ICL_KEYWORDS_PER_SAMPLE",
    "ICL_QUESTION_SUFFIX",
    "LURE_PREFIX",
    "RELATIONS",
    "SOURCES",
    "SOURCE_PROMPTS",
    "SPLITS",
    "SURNAME_HEADS",
    "SURNAME_TAILS",
    "UPDATE_QUESTION_PREFIX",
    "Relation",
    "SyntheticConfig",
    "build_synthetic",
    "surname_pools",
    "synthetic_instance",
    "write_synthetic",
]


# ============================================================================ generator


@dataclass
class _Sentence:
    text: str
    role: str  # fact | update | distractor | example
    key: str | None = None
    value: str | None = None
    asked: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"role": self.role, "key": self.key, "value": self.value, "asked": self.asked, **self.extra}


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _render(template: str, subject: str, value: str = "") -> str:
    text = template.format(s=subject, v=value, a=_article(value) if value else "")
    return text[0].upper() + text[1:]


def _question(relation: Relation, subject: str, latest: bool) -> str:
    text = relation.question.format(s=subject)
    return UPDATE_QUESTION_PREFIX + text[0].lower() + text[1:] if latest else text


def surname_pools(seed: int, test_fraction: float) -> dict[str, list[str]]:
    """Surnames per split, disjoint: a test person's name never appears in train."""
    surnames = sorted({head + tail for head in SURNAME_HEADS for tail in SURNAME_TAILS})
    random.Random(f"{seed}:surnames").shuffle(surnames)
    n_test = max(1, round(len(surnames) * test_fraction))
    return {"test": surnames[:n_test], "train": surnames[n_test:]}


class _People:
    """Draws distinct people (distinct surnames) for one instance."""

    def __init__(self, rng: random.Random, surnames: Sequence[str]) -> None:
        self.rng, self._left = rng, list(surnames)
        rng.shuffle(self._left)

    def new(self) -> str:
        if not self._left:
            raise ValueError("synthetic: ran out of surnames for one instance; lower the instance size knobs")
        return f"{self.rng.choice(FIRST_NAMES)} {self._left.pop()}"


class _Values:
    """Draws values per relation, distinct within an instance while the relation's pool lasts."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._used: dict[str, set[str]] = {}

    def draw(self, relation: Relation, avoid: Sequence[str] = ()) -> str:
        used = self._used.setdefault(relation.name, set())
        fresh = [v for v in relation.values if v not in used and v not in avoid]
        value = self.rng.choice(fresh or [v for v in relation.values if v not in avoid])
        used.add(value)
        return value


def _layout(rng: random.Random, cfg: SyntheticConfig) -> list[tuple[int, int]]:
    """(fact slots, distractor slots) per chunk."""
    layout = []
    for _ in range(cfg.chunks_per_instance):
        n = cfg.sentences_per_chunk + rng.randint(-cfg.sentence_jitter, cfg.sentence_jitter)
        n_distractors = min(n - 1, round(n * cfg.distractor_ratio))
        layout.append((n - n_distractors, n_distractors))
    return layout


def _distractors(rng: random.Random, n: int, people: _People | None, values: _Values) -> list[_Sentence]:
    """Filler sentences, and (when ``people`` is given) facts about people nobody asks about."""
    out = []
    for _ in range(n):
        if people is not None and rng.random() < 0.5:
            relation, person = rng.choice(RELATIONS), people.new()
            value = values.draw(relation)
            text = _render(rng.choice(relation.facts), person, value)
            out.append(_Sentence(text, "distractor", f"{person}|{relation.name}", value))
        else:
            opener, subject, event = rng.choice(FILLER_OPENERS), rng.choice(FILLER_SUBJECTS), rng.choice(FILLER_EVENTS)
            out.append(_Sentence(f"{opener}, {subject} {event}.", "distractor"))
    return out


@dataclass
class _Draft:
    """An instance being built: sentences per chunk, global questions and their evidence, chunk QAs."""

    chunks: list[list[_Sentence]]
    questions: list[QA] = field(default_factory=list)
    question_meta: list[dict[str, Any]] = field(default_factory=list)
    extra_meta: dict[str, Any] = field(default_factory=dict)


def _people_facts(rng: random.Random, cfg: SyntheticConfig, surnames: Sequence[str], updates: bool) -> _Draft:
    """synth_factoid (``updates=False``) and synth_update: facts about people among distractors."""
    people, values = _People(rng, surnames), _Values(rng)
    relations = [r for r in RELATIONS if r.updates] if updates else list(RELATIONS)
    relation_of = {r.name: r for r in RELATIONS}
    open_people: list[tuple[str, list[str]]] = []  # person, relations still free
    history: dict[str, list[tuple[int, int, str]]] = {}  # key -> [(chunk, sentence, value)]
    chunks: list[list[_Sentence]] = []

    def new_fact() -> _Sentence:
        if (
            not open_people
            or not open_people[-1][1]
            or len(relations) - len(open_people[-1][1]) >= cfg.facts_per_entity
        ):
            free = list(relations)
            rng.shuffle(free)
            open_people.append((people.new(), [r.name for r in free]))
        person, free = open_people[-1]
        relation = relation_of[free.pop()]
        value = values.draw(relation)
        return _Sentence(_render(rng.choice(relation.facts), person, value), "fact", f"{person}|{relation.name}", value)

    for t, (n_facts, n_distractors) in enumerate(_layout(rng, cfg)):
        sentences: list[_Sentence] = []
        for _ in range(n_facts):
            in_chunk = {s.key for s in sentences}
            updatable = [
                k
                for k, h in history.items()
                if k not in in_chunk and h[-1][0] < t and len(h) <= cfg.max_updates_per_key
            ]
            if updates and updatable and rng.random() < cfg.update_probability:
                key = rng.choice(updatable)
                person, relation_name = key.split("|")
                relation = relation_of[relation_name]
                value = values.draw(relation, avoid=[v for _, _, v in history[key]])
                text = _render(rng.choice(relation.updates), person, value)
                sentences.append(_Sentence(text, "update", key, value))
            else:
                sentences.append(new_fact())
        sentences += _distractors(rng, n_distractors, people, values)
        rng.shuffle(sentences)
        for i, sentence in enumerate(sentences):
            if sentence.role in ("fact", "update"):
                history.setdefault(sentence.key, []).append((t, i, sentence.value))
        chunks.append(sentences)

    keys = list(history)
    updated = [k for k in keys if len(history[k]) > 1]
    rest = [k for k in keys if len(history[k]) == 1]
    if cfg.asked_stratified:
        asked = updated + _stratified_sample(rng, rest, [history[k][0][0] for k in rest], cfg.asked_fraction)
    else:
        n_rest = round(len(rest) * cfg.asked_fraction)
        asked = updated + rng.sample(rest, n_rest)
    if not asked:
        asked = [rng.choice(keys)]
    rng.shuffle(asked)
    draft = _Draft(chunks)
    for key in asked:
        person, relation_name = key.split("|")
        chunk, sentence, value = history[key][-1]
        draft.questions.append(QA(_question(relation_of[relation_name], person, latest=updates), (value,)))
        draft.question_meta.append(
            {"key": key, "chunk": chunk, "sentence": sentence, "history": [[c, s] for c, s, _ in history[key]]}
        )
        for c, s, _ in history[key]:
            chunks[c][s].asked = True
    return draft


def _stratified_sample(rng: random.Random, keys: Sequence[str], chunk_of: Sequence[int], fraction: float) -> list[str]:
    """``fraction`` of the keys of every chunk (rounded per chunk), chunk by chunk."""
    by_chunk: dict[int, list[str]] = {}
    for key, chunk in zip(keys, chunk_of, strict=True):
        by_chunk.setdefault(chunk, []).append(key)
    picked: list[str] = []
    for chunk in sorted(by_chunk):
        group = by_chunk[chunk]
        picked += rng.sample(group, round(len(group) * fraction))
    return picked


def _add_lures(draft: _Draft, rng: random.Random, ratio: float) -> None:
    """Turn a ``ratio`` share of the filler sentences into lures about asked keys (wrong values).

    A lure names an asked person and holds the question's words, so it competes with the fact in
    BM25 and in the reader; it is a ``distractor`` (never asked, never a chunk QA) with
    ``{"lure": true}``, its ``key`` and its (wrong) ``value`` in the metadata.
    """
    relation_of = {r.name: r for r in RELATIONS}
    asked = [meta["key"] for meta in draft.question_meta if meta.get("key")]
    if not asked or ratio <= 0.0:
        return
    for sentences in draft.chunks:
        for i, sentence in enumerate(sentences):
            if sentence.role != "distractor" or sentence.key is not None or rng.random() >= ratio:
                continue
            key = rng.choice(asked)
            person, relation_name = key.split("|")
            relation = relation_of[relation_name]
            truth = {
                v for c in draft.chunks for s in c if s.key == key and s.role in ("fact", "update") for v in [s.value]
            }
            value = rng.choice([v for v in relation.values if v not in truth])
            core = _render(relation.facts[0], person, value)
            text = (
                f"{LURE_PREFIX} {core[0].lower()}{core[1:]}" if not core.startswith(person) else f"{LURE_PREFIX} {core}"
            )
            sentences[i] = _Sentence(text, "distractor", key, value, extra={"lure": True})


def _icl_text(rng: random.Random, keywords: Sequence[str]) -> str:
    """A sample: ``ICL_KEYWORDS_PER_SAMPLE`` distinct keywords of one class in the fixed frame."""
    *first, last = rng.sample(list(keywords), ICL_KEYWORDS_PER_SAMPLE)
    return ICL_FRAME.format(f"{', '.join(first)} and {last}")


def _labelled_examples(rng: random.Random, cfg: SyntheticConfig) -> _Draft:
    """synth_icl: "Sample: ...; Label: N." examples; questions are new samples, answers the label digits."""
    classes = rng.sample(sorted(ICL_CLASSES), cfg.icl_labels)
    labels = dict(zip(classes, (str(n) for n in rng.sample(range(20), cfg.icl_labels)), strict=True))
    seen: set[str] = set()

    def fresh_text(cls: str) -> str:
        for _ in range(1000):
            text = _icl_text(rng, ICL_CLASSES[cls])
            if text not in seen:
                seen.add(text)
                return text
        raise ValueError("synthetic: ran out of distinct ICL samples; lower the instance size knobs")

    chunks: list[list[_Sentence]] = []
    slot = 0
    for n_examples, n_distractors in _layout(rng, cfg):
        sentences = []
        for _ in range(n_examples):
            cls = classes[slot % len(classes)] if slot < len(classes) else rng.choice(classes)
            slot += 1
            text = fresh_text(cls)
            sentence = _Sentence(f"Sample: {text}; Label: {labels[cls]}.", "example", None, labels[cls])
            sentence.extra = {"class": cls, "sample": text}
            sentences.append(sentence)
        sentences += _distractors(rng, n_distractors, None, _Values(rng))
        rng.shuffle(sentences)
        chunks.append(sentences)
    draft = _Draft(chunks, extra_meta={"labels": {label: cls for cls, label in labels.items()}})
    for _ in range(cfg.icl_questions):
        cls = rng.choice(classes)
        draft.questions.append(QA(f"Sample: {fresh_text(cls)}\n{cfg.icl_question}", (labels[cls],)))
        draft.question_meta.append({"key": None, "chunk": None, "sentence": None, "class": cls})
    return draft


def _chunk_qa(sentence: _Sentence, latest: bool, icl_question: str) -> QA:
    if sentence.role == "example":
        return QA(f"Sample: {sentence.extra['sample']}\n{icl_question}", (sentence.value,))
    person, relation_name = sentence.key.split("|")
    relation = next(r for r in RELATIONS if r.name == relation_name)
    return QA(_question(relation, person, latest), (sentence.value,))


def _finish(draft: _Draft, rng: random.Random, cfg: SyntheticConfig, source: str, index: int, split: str, seed: int):
    chunk_qas, chunk_qa_meta = [], []
    for sentences in draft.chunks:
        candidates = [i for i, s in enumerate(sentences) if s.role in ("fact", "update", "example")]
        picked = sorted(rng.sample(candidates, min(cfg.chunk_qa_k, len(candidates))))
        chunk_qas.append(tuple(_chunk_qa(sentences[i], source == "synth_update", cfg.icl_question) for i in picked))
        chunk_qa_meta.append(picked)
    metadata = {
        "prompt": SOURCE_PROMPTS[source],
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "split": split,
        "sentences": [[s.record() for s in sentences] for sentences in draft.chunks],
        "questions": draft.question_meta,
        "chunk_qa_sentences": chunk_qa_meta,
        **draft.extra_meta,
    }
    return Instance(
        id=f"{source}/{index}",
        source=source,
        chunks=tuple(" ".join(s.text for s in sentences) for sentences in draft.chunks),
        questions=tuple(draft.questions),
        chunk_qas=tuple(chunk_qas),
        metadata=metadata,
    )


def synthetic_instance(source: str, split: str, index: int, cfg: SyntheticConfig, seed: int) -> Instance:
    """One synthetic instance; the same arguments always give the same instance."""
    if source not in SOURCES or split not in SPLITS:
        raise ValueError(f"unknown synthetic source/split {source!r}/{split!r}; sources {SOURCES}, splits {SPLITS}")
    rng = random.Random(f"{seed}:{split}:{source}:{index}")
    surnames = surname_pools(seed, cfg.test_name_fraction)[split]
    if source == "synth_icl":
        draft = _labelled_examples(rng, cfg)
    else:
        draft = _people_facts(rng, cfg, surnames, updates=source == "synth_update")
        if cfg.lure_ratio > 0.0:  # its own random stream: the instance without lures is unchanged
            _add_lures(draft, random.Random(f"{seed}:{split}:{source}:{index}:lures"), cfg.lure_ratio)
    return _finish(draft, rng, cfg, source, index, split, seed)


def build_synthetic(
    knobs: SyntheticConfig | Mapping[str, Any] | None = None, seed: int = 0
) -> dict[str, list[Instance]]:
    """The synthetic benchmark: ``{"train": [...], "test": [...]}``, sources in order, seeded.

    ``knobs`` is a :class:`SyntheticConfig`, the profile's ``data`` section, or a mapping of knobs.
    Instance ids are ``"<source>/<n>"``; test numbers continue after train's, so ids are unique
    across splits.
    """
    cfg = knobs if isinstance(knobs, SyntheticConfig) else SyntheticConfig.from_mapping(knobs)
    out: dict[str, list[Instance]] = {"train": [], "test": []}
    for source in cfg.sources:
        for i in range(cfg.train_instances):
            out["train"].append(synthetic_instance(source, "train", i, cfg, seed))
        for i in range(cfg.test_instances):
            out["test"].append(synthetic_instance(source, "test", cfg.train_instances + i, cfg, seed))
    return out


def write_synthetic(
    knobs: SyntheticConfig | Mapping[str, Any] | None, seed: int, out_dir: str | Path
) -> dict[str, Path]:
    """Build the benchmark and write ``<out_dir>/{train,test}.parquet`` (Memalpha schema + ``chunk_qas``)."""
    out = Path(out_dir)
    return {
        split: write_memalpha_parquet(instances, out / f"{split}.parquet")
        for split, instances in build_synthetic(knobs, seed).items()
    }
