"""The synthetic benchmark's vocabulary, sentence templates, fixed texts and size knobs (pure data).

See :mod:`finemem_lib.data.synthetic` for how instances are generated from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

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


SOURCES = ("synth_factoid", "synth_update", "synth_icl")
SPLITS = ("train", "test")
GENERATOR_VERSION = "finemem-synthetic-1"
SOURCE_PROMPTS = {
    "synth_factoid": "Remember the facts about people in the following text; ignore unrelated filler.",
    "synth_update": "Remember the facts about people in the following text; later statements replace earlier ones.",
    "synth_icl": "Remember the labelled samples in the following text so you can label new samples.",
}
UPDATE_QUESTION_PREFIX = "According to the latest information, "
DEFAULT_ICL_QUESTION = "What is the label for the above sample?"
"""The line after a synthetic ICL sample that asks for its label (``SyntheticConfig.icl_question``)."""
ICL_QUESTION_SUFFIX = "\n" + DEFAULT_ICL_QUESTION
LURE_PREFIX = "Rumour:"
"""Opener of a lure: a wrong value of an asked key in the key's shortest fact template (its question's words)."""


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
    ``icl_question`` is the line after a synthetic ICL sample that asks for its label, in global and chunk
    questions alike. The default, Mem-alpha-like wording holds ``the`` and ``for``, words only the filler
    sentences contain: with BM25 top-2 over a memory of labelled examples plus a little filler, those
    filler items win retrieval and the ICL score falls far below that of a memory with all the filler or
    none (docs/miniature.md); a wording whose words are all in every example (``Which label fits this
    sample?``) removes that.
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
    icl_question: str = DEFAULT_ICL_QUESTION

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
        if not self.icl_question.strip() or "\n" in self.icl_question:
            raise ValueError(f"synthetic.icl_question must be one non-empty line, got {self.icl_question!r}")
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
