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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from finemem_lib.data.instance import QA, Instance
from finemem_lib.data.memalpha import write_memalpha_parquet

# ============================================================================ templates (pure data)


def _w(words: str) -> tuple[str, ...]:
    """A tuple of space-separated words (keeps the word lists compact)."""
    return tuple(words.split())


@dataclass(frozen=True)
class Relation:
    """A relation: how a fact about it is stated, updated and asked.

    Templates use ``{s}`` for the entity name, ``{v}`` for the value and ``{a}`` for the value's
    indefinite article (``a``/``an``). ``updates`` is empty for relations that never change.
    Every fact and update template contains the question's words (same counts); the first fact
    template is the shortest (the core statement), the second adds a three-word opener, and the
    update templates add ``now`` or ``These days`` (lengths in between).
    """

    name: str
    facts: tuple[str, ...]
    question: str
    values: tuple[str, ...]
    updates: tuple[str, ...] = ()


RELATIONS: tuple[Relation, ...] = (
    Relation(
        "favourite_colour",
        ("The favourite colour of {s} is {v}.", "By all accounts, the favourite colour of {s} is {v}."),
        "What is the favourite colour of {s}?",
        _w(
            "teal crimson amber violet indigo maroon turquoise magenta ochre lavender scarlet emerald saffron "
            "cobalt beige charcoal"
        ),
        ("The favourite colour of {s} is now {v}.", "These days the favourite colour of {s} is {v}."),
    ),
    Relation(
        "home_city",
        ("The home city of {s} is {v}.", "As records show, the home city of {s} is {v}."),
        "What is the home city of {s}?",
        _w(
            "Oslo Lima Quito Porto Dakar Hanoi Tallinn Bergen Cusco Valletta Tbilisi Riga Perth Accra Bogota "
            "Kyoto Nantes Gdansk Malaga Tromso"
        ),
        ("The home city of {s} is now {v}.", "These days the home city of {s} is {v}."),
    ),
    Relation(
        "job",
        ("The job of {s} is {a} {v}.", "As colleagues say, the job of {s} is {a} {v}."),
        "What is the job of {s}?",
        _w(
            "carpenter pharmacist librarian geologist architect baker surveyor translator welder botanist "
            "cartographer electrician midwife locksmith glassblower beekeeper"
        ),
        ("The job of {s} is now {a} {v}.", "These days the job of {s} is {a} {v}."),
    ),
    Relation(
        "pet",
        ("The pet of {s} is {a} {v}.", "As friends say, the pet of {s} is {a} {v}."),
        "What is the pet of {s}?",
        _w(
            "parrot tortoise ferret hamster iguana goldfish rabbit beagle canary gecko chinchilla axolotl "
            "hedgehog cockatoo"
        ),
    ),
    Relation(
        "instrument",
        ("The instrument {s} can play is the {v}.", "As friends say, the instrument {s} can play is the {v}."),
        "Which instrument can {s} play?",
        _w("cello oboe banjo harp trumpet clarinet accordion ukulele bassoon sitar flute mandolin trombone xylophone"),
    ),
    Relation(
        "car",
        ("The car in the garage of {s} is {a} {v}.", "As neighbours say, the car in the garage of {s} is {a} {v}."),
        "Which car is in the garage of {s}?",
        _w("Volvo Subaru Fiat Skoda Peugeot Renault Mazda Hyundai Citroen Lancia Dacia Saab"),
        ("The car in the garage of {s} is now {a} {v}.", "These days the car in the garage of {s} is {a} {v}."),
    ),
    Relation(
        "favourite_food",
        ("The favourite food of {s} is {v}.", "By all accounts, the favourite food of {s} is {v}."),
        "What is the favourite food of {s}?",
        _w(
            "lasagna dumplings paella falafel risotto ramen goulash tacos pierogi curry sushi moussaka ceviche "
            "gnocchi couscous"
        ),
    ),
    Relation(
        "employer",
        ("The company that employs {s} is {v}.", "As colleagues say, the company that employs {s} is {v}."),
        "Which company employs {s}?",
        _w(
            "Halvex Quillstone Brightmoor Tarnfield Orivane Pellucid Stonebridge Kestrel Northwind Lumora "
            "Vantrell Copperleaf"
        ),
        ("The company that employs {s} is now {v}.", "These days the company that employs {s} is {v}."),
    ),
    Relation(
        "birth_year",
        ("{s} was born in the year {v}.", "As records show, {s} was born in the year {v}."),
        "In what year was {s} born?",
        tuple(str(year) for year in range(1948, 2006)),
    ),
    Relation(
        "sport",
        ("The weekend sport of {s} is {v}.", "As friends say, the weekend sport of {s} is {v}."),
        "What is the weekend sport of {s}?",
        _w("tennis rugby hockey cricket volleyball badminton squash handball lacrosse curling netball softball"),
    ),
    Relation(
        "language",
        ("The language {s} can speak fluently is {v}.", "As friends note, the language {s} can speak fluently is {v}."),
        "Which language can {s} speak fluently?",
        _w("Swahili Finnish Tagalog Basque Welsh Icelandic Hungarian Portuguese Korean Maltese Estonian Catalan"),
    ),
    Relation(
        "hobby",
        ("The evening hobby of {s} is {v}.", "As neighbours say, the evening hobby of {s} is {v}."),
        "What is the evening hobby of {s}?",
        _w(
            "knitting pottery birdwatching chess gardening origami archery sailing calligraphy fencing "
            "woodcarving stargazing"
        ),
    ),
    Relation(
        "team",
        ("At work {s} is part of the {v} team.", "As colleagues say, at work {s} is part of the {v} team."),
        "Which team at work is {s} part of?",
        _w("logistics marketing procurement payroll compliance outreach analytics facilities recruiting support"),
        ("At work {s} is now part of the {v} team.", "These days at work {s} is part of the {v} team."),
    ),
    Relation(
        "extension",
        ("The office extension of {s} is {v}.", "For phone calls, the office extension of {s} is {v}."),
        "What is the office extension of {s}?",
        tuple(str(n) for n in range(4100, 4999, 7)),
        ("The office extension of {s} is now {v}.", "These days the office extension of {s} is {v}."),
    ),
    Relation(
        "locker",
        ("The gym locker number of {s} is {v}.", "As records show, the gym locker number of {s} is {v}."),
        "What is the gym locker number of {s}?",
        tuple(str(n) for n in range(210, 890, 11)),
        ("The gym locker number of {s} is now {v}.", "These days the gym locker number of {s} is {v}."),
    ),
    Relation(
        "street",
        ("The flat of {s} is on {v} Street.", "It seems that the flat of {s} is on {v} Street."),
        "Which street is the flat of {s} on?",
        ("Juniper", "Rowan", "Hawthorn", "Sycamore", "Larch", "Alder", "Linden", "Cypress", "Magnolia", "Poplar"),
        ("The flat of {s} is now on {v} Street.", "These days the flat of {s} is on {v} Street."),
    ),
)

# Phrases for filler sentences about nobody in particular: "<opener>, <subject> <event>."
FILLER_OPENERS = (
    "On Monday",
    "Last week",
    "Early in the morning",
    "During the storm",
    "After lunch",
    "Later that year",
    "By the harbour",
    "In the old market",
    "Over the weekend",
    "Before sunrise",
    "At the end of the month",
    "Around noon",
    "That winter",
    "Just after midnight",
)
FILLER_SUBJECTS = (
    "the ferry",
    "a delivery van",
    "the local bakery",
    "the museum",
    "a flock of geese",
    "the town council",
    "the night bus",
    "the public library",
    "the village choir",
    "a street vendor",
    "the football club",
    "the new cafe",
    "the river",
    "the school orchestra",
)
FILLER_EVENTS = (
    "was closed for repairs",
    "arrived two hours late",
    "changed its opening hours",
    "hosted a small concert",
    "ran out of bread",
    "flooded the lower road",
    "attracted a large crowd",
    "was painted bright yellow",
    "made the evening news",
    "raised money for charity",
    "received a new roof",
    "moved to a larger building",
    "cancelled its plans",
    "stayed quiet for hours",
)

# First names and name syllables; surnames are built from syllables and split between train and test.
FIRST_NAMES = _w(
    "Zorvan Mira Tobin Elsa Kasimir Anouk Bastian Ilse Darko Fenna Joren Liesel Marek Nadia Oskar Petra "
    "Rasmus Saskia Teodor Ursula Viggo Wanda Yannick Zelda Anders Brigid Cosmin Dagny Emil Freya Gustav "
    "Hedda Ivo Jolanda Kaspar Linnea Matthias Noor Orla Pavel Quirin Rosalind Stellan Tamsin"
)
SURNAME_HEADS = _w(
    "Kel Tras Vor Brin Dal Fen Gar Hol Jas Lon Mar Nor Pel Quen Ros Sel Tor Ul Wes Yar Zan Cor Drav Ember Fal"
)
SURNAME_TAILS = _w("ek dane wick mont holt stad berg rin vell ton quist sby mere gard lund vik")

# Test-time-learning (ICL) classes, each with its own keywords (disjoint across classes, and from the filler
# sentences' words). A sample names ICL_KEYWORDS_PER_SAMPLE keywords of its class in a fixed frame, so only
# the keywords tell classes apart: a labelled example shares keywords with a new sample only if it has the
# same class (and then often does not), so the more examples per class a memory keeps, the more it labels right.
ICL_CLASSES: dict[str, tuple[str, ...]] = {
    "sports": _w(
        "goalkeeper penalty stadium referee tournament striker medal sprint coach league trophy halftime "
        "scoreboard marathon dribble umpire"
    ),
    "weather": _w(
        "drizzle forecast thunder humidity frost breeze hailstorm sunshine fog heatwave blizzard rainbow "
        "monsoon drought sleet barometer"
    ),
    "cooking": _w(
        "oven recipe saucepan dough simmer garlic spatula marinade pastry broth skillet oregano whisk colander "
        "ladle cinnamon"
    ),
    "finance": _w(
        "invoice mortgage dividend budget interest savings refund loan tax shares pension auditor overdraft "
        "ledger inflation receipt"
    ),
    "travel": _w(
        "passport luggage boarding itinerary hostel visa airport layover ticket suitcase customs souvenir "
        "jetlag backpack cruise postcard"
    ),
    "health": _w(
        "clinic vaccine symptoms prescription fever dentist bandage therapy allergy checkup stethoscope nurse "
        "vitamins surgeon ointment pharmacy"
    ),
    "music": _w(
        "chorus melody guitarist album rehearsal lyrics drummer encore tempo soprano saxophone playlist ballad "
        "octave metronome songwriter"
    ),
    "computing": _w(
        "laptop password server keyboard database browser printer router backup firewall spreadsheet compiler "
        "download modem software monitor"
    ),
}
ICL_KEYWORDS_PER_SAMPLE = 3
ICL_FRAME = "a note about {}"  # the same words in every sample

# ============================================================================ generator

SOURCES = ("synth_factoid", "synth_update", "synth_icl")
SPLITS = ("train", "test")
GENERATOR_VERSION = "finemem-synthetic-1"
SOURCE_PROMPTS = {
    "synth_factoid": "Remember the facts about people in the following text; ignore unrelated filler.",
    "synth_update": "Remember the facts about people in the following text; later statements replace earlier ones.",
    "synth_icl": "Remember the labelled samples in the following text so you can label new samples.",
}
UPDATE_QUESTION_PREFIX = "According to the latest information, "
ICL_QUESTION_SUFFIX = "\nWhat is the label for the above sample?"


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape knobs of the synthetic benchmark (``data.synthetic`` in the profile YAML).

    Instance counts are per source. A chunk has ``sentences_per_chunk`` sentences (plus or minus up
    to ``sentence_jitter``), of which a ``distractor_ratio`` share are distractors. ``asked_fraction``
    of the facts get a global question (synth_update asks every updated fact plus that share of the
    rest). ``chunk_qa_k`` short QAs are written per chunk (fewer when the chunk holds fewer facts).
    Test instances draw their people from surnames never used in train (``test_name_fraction`` of
    the surname pool).

    Two knobs for long episodes (both off by default, and then the benchmark is exactly what it was
    without them): ``lure_ratio`` turns that share of each people-source chunk's filler sentences
    into *lures*: a wrong value of an asked key stated with that key's question words after the
    opener ``Rumour:`` (see :data:`LURE_PREFIX`), so BM25 and the reader cannot tell it from the fact
    by the question's words, and a lure kept in memory can win retrieval and give a wrong answer.
    ``asked_stratified`` draws the asked share of never-updated facts chunk by chunk, so every part
    of a long episode holds asked facts (instead of one draw over the whole instance).
    """

    sources: tuple[str, ...] = SOURCES
    train_instances: int = 32
    test_instances: int = 8
    chunks_per_instance: int = 6
    sentences_per_chunk: int = 8
    sentence_jitter: int = 1
    distractor_ratio: float = 0.4
    asked_fraction: float = 0.5
    facts_per_entity: int = 3
    update_probability: float = 0.5
    max_updates_per_key: int = 2
    icl_labels: int = 4
    icl_questions: int = 8
    chunk_qa_k: int = 5
    test_name_fraction: float = 0.25
    lure_ratio: float = 0.0
    asked_stratified: bool = False

    def __post_init__(self) -> None:
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not self.sources:
            raise ValueError(f"synthetic sources must be a non-empty subset of {SOURCES}, got {list(self.sources)}")
        for name in ("train_instances", "test_instances", "sentence_jitter", "max_updates_per_key"):
            if getattr(self, name) < 0:
                raise ValueError(f"synthetic.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("chunks_per_instance", "facts_per_entity", "icl_questions", "chunk_qa_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"synthetic.{name} must be >= 1, got {getattr(self, name)}")
        if self.sentences_per_chunk - self.sentence_jitter < 1:
            raise ValueError("synthetic.sentences_per_chunk - sentence_jitter must be >= 1")
        if not 0.0 <= self.lure_ratio <= 1.0:
            raise ValueError(f"synthetic.lure_ratio must be in [0, 1], got {self.lure_ratio}")
        if not 0.0 <= self.distractor_ratio < 1.0:
            raise ValueError(f"synthetic.distractor_ratio must be in [0, 1), got {self.distractor_ratio}")
        for name in ("asked_fraction", "update_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"synthetic.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.test_name_fraction < 1.0:
            raise ValueError(f"synthetic.test_name_fraction must be in (0, 1), got {self.test_name_fraction}")
        if not 2 <= self.icl_labels <= len(ICL_CLASSES):
            raise ValueError(f"synthetic.icl_labels must be in [2, {len(ICL_CLASSES)}], got {self.icl_labels}")

    @classmethod
    def from_mapping(cls, knobs: Mapping[str, Any] | None) -> SyntheticConfig:
        """Build from the knobs, or from a profile's ``data`` section (its ``synthetic`` mapping, with
        ``chunk_qa.k`` as ``chunk_qa_k`` unless the synthetic mapping sets it)."""
        knobs = dict(knobs or {})
        if isinstance(knobs.get("synthetic"), Mapping):  # a profile's data section
            chunk_qa = knobs.get("chunk_qa") or {}
            knobs = dict(knobs["synthetic"])
            if "k" in chunk_qa:
                knobs.setdefault("chunk_qa_k", chunk_qa["k"])
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(knobs) - names)
        if unknown:
            raise ValueError(f"unknown synthetic knob(s) {unknown}; known: {sorted(names)}")
        if "sources" in knobs:
            knobs["sources"] = tuple(knobs["sources"])
        return cls(**knobs)


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


LURE_PREFIX = "Rumour:"
"""Opener of a lure: a wrong value of an asked key in the key's shortest fact template (its question's words)."""


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
        draft.questions.append(QA(f"Sample: {fresh_text(cls)}{ICL_QUESTION_SUFFIX}", (labels[cls],)))
        draft.question_meta.append({"key": None, "chunk": None, "sentence": None, "class": cls})
    return draft


def _chunk_qa(sentence: _Sentence, latest: bool) -> QA:
    if sentence.role == "example":
        return QA(f"Sample: {sentence.extra['sample']}{ICL_QUESTION_SUFFIX}", (sentence.value,))
    person, relation_name = sentence.key.split("|")
    relation = next(r for r in RELATIONS if r.name == relation_name)
    return QA(_question(relation, person, latest), (sentence.value,))


def _finish(draft: _Draft, rng: random.Random, cfg: SyntheticConfig, source: str, index: int, split: str, seed: int):
    chunk_qas, chunk_qa_meta = [], []
    for sentences in draft.chunks:
        candidates = [i for i, s in enumerate(sentences) if s.role in ("fact", "update", "example")]
        picked = sorted(rng.sample(candidates, min(cfg.chunk_qa_k, len(candidates))))
        chunk_qas.append(tuple(_chunk_qa(sentences[i], latest=source == "synth_update") for i in picked))
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
