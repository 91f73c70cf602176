"""An offline out-of-distribution benchmark in the MemoryAgentBench schema, seeded and deterministic.

Rows have MemoryAgentBench's columns (``context`` str, ``questions`` list[str], ``answers``
list[list[str]], ``metadata`` struct with ``source``), one parquet file per split, and are read back
through the real :func:`finemem_lib.data.memoryagentbench.load_memoryagentbench` and its sentence
chunker, so that path runs end to end offline.

Out of distribution relative to the synthetic training benchmark (:mod:`finemem_lib.data.synthetic`):
contexts are several times longer (``context_sentences`` sentences, chunked at ``chunk_size`` tokens:
at least three times a training instance's chunks), with new subjects (places and institutions, not
people), new relation templates, new filler and new classification vocabularies. One synthetic
source stands in for each column of the papers' MemoryAgentBench table:

- ``ruler_qa1_synth`` (AR, SH-Doc): single-hop facts about institutions among filler and distractor facts.
- ``ruler_qa2_synth`` (AR, MH-Doc): two-hop questions; hop one names where an institution is, hop two
  (far away in the context) says something about that town. A reader must combine two retrieved items.
- ``icl_trec_coarse_synth`` (TTL, TREC-C; 6 labels) and ``icl_banking77_synth`` (TTL, Banking; 10
  labels): many-shot classification with numeric labels (``Sample: ...; Label: N.``), new samples asked;
  a sample names two keywords of its class and one of another class, so a single neighbour can mislead.
- ``infbench_sum_synth`` (LRU, InfBench-Sum): one long story whose sentences each carry one keyword;
  the single question asks for a summary, scored by the fraction of the story's keywords recalled.
- ``factconsolidation_sh_synth`` (CR): facts restated with new values later in the context; the
  latest statement is the answer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from finemem_lib.core.tokens import TokenCounter
from finemem_lib.data.instance import Instance
from finemem_lib.data.memoryagentbench import load_memoryagentbench

GENERATOR_VERSION = "finemem-mab-synthetic-1"

SOURCE_SPLITS: dict[str, str] = {
    "ruler_qa1_synth": "Accurate_Retrieval",
    "ruler_qa2_synth": "Accurate_Retrieval",
    "icl_trec_coarse_synth": "Test_Time_Learning",
    "icl_banking77_synth": "Test_Time_Learning",
    "infbench_sum_synth": "Long_Range_Understanding",
    "factconsolidation_sh_synth": "Conflict_Resolution",
}
"""Synthetic source -> the MemoryAgentBench split it belongs to (its parquet file)."""

SOURCES = tuple(SOURCE_SPLITS)


@dataclass(frozen=True)
class MABSyntheticConfig:
    """Size knobs (``evaluation.mab_synthetic`` in the profile). Instance counts are per source."""

    sources: tuple[str, ...] = SOURCES
    instances: int = 3
    context_sentences: int = 200
    chunk_size: int = 128
    questions: int = 8
    fact_ratio: float = 0.3
    icl_question: str = "What is the label for the above sample?"  # the line after a new sample (see below)

    def __post_init__(self) -> None:
        unknown = [s for s in self.sources if s not in SOURCE_SPLITS]
        if unknown or not self.sources:
            raise ValueError(f"mab_synthetic.sources must be a non-empty subset of {SOURCES}, got {list(self.sources)}")
        for name in ("instances", "context_sentences", "chunk_size", "questions"):
            if getattr(self, name) < 1:
                raise ValueError(f"mab_synthetic.{name} must be >= 1, got {getattr(self, name)}")
        if not self.icl_question.strip() or "\n" in self.icl_question:
            raise ValueError(f"mab_synthetic.icl_question must be one non-empty line, got {self.icl_question!r}")
        if not 0.0 < self.fact_ratio <= 1.0:
            raise ValueError(f"mab_synthetic.fact_ratio must be in (0, 1], got {self.fact_ratio}")

    @classmethod
    def from_mapping(cls, knobs: Mapping[str, Any] | None) -> MABSyntheticConfig:
        knobs = dict(knobs or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(knobs) - names)
        if unknown:
            raise ValueError(f"unknown mab_synthetic knob(s) {unknown}; known: {sorted(names)}")
        if "sources" in knobs:
            knobs["sources"] = tuple(knobs["sources"])
        return cls(**knobs)


# ============================================================================ vocabulary (disjoint from training)
def _w(words: str) -> tuple[str, ...]:
    return tuple(words.split())


NAME_HEADS = _w("Ar Bel Cal Dor Eth Fir Gal Hav Isk Jor Kav Lir Mol Nev Orr Pav Quill Rav Sav Tel Vel Wyn")
NAME_TAILS = _w("mora daine vast ferro lune brisk cairn holm wold tarn mire stow")
KINDS = _w("Institute Academy Observatory Foundry Archive Conservatory Guild Society Laboratory Museum")
TOWNS = _w(
    "Vask Brill Telsk Orvo Pelm Quarn Sidra Ulm Dravik Esk Harrow Ilse Jandor Kesh Lomm Marn Nyx Opal Rhune Sorl"
)
PEOPLE = _w(
    "Pella Varn|Idris Calloway|Mette Osk|Bram Feld|Tove Hallin|Corin Ashe|Dalia Moor|Esben Roth|Gerd Lune|"
    "Hilde Sarn|Jorun Vell|Kael Brisk|Lotte Fenn|Nils Darrow|Oda Crane|Rune Halvard"
)
PEOPLE = tuple(" ".join(PEOPLE).split("|"))

# (question, statement, value pool) for an institution; {e} is the institution, {v} the value.
INSTITUTION_RELATIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Who was the founder of {e}?", "The founder of {e} was {v}.", PEOPLE),
    ("Which river flows past {e}?", "The river that flows past {e} is the {v}.", _w("Aldra Bexa Corva Dunmere Elsk")),
    ("What colour is the roof of {e}?", "The roof of {e} is painted {v}.", _w("ochre slate copper ivory jade rust")),
    ("What animal is the emblem of {e}?", "The emblem of {e} shows a {v}.", _w("heron lynx otter stag falcon badger")),
    ("How many rooms does {e} have?", "In total, {e} has {v} rooms.", tuple(str(n) for n in range(31, 98, 3))),
    ("Who is the director of {e}?", "The director of {e} is {v}.", PEOPLE),
)
TOWN_RELATIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "What is the market day of the town where {e} is located?",
        "The market day of {t} is {v}.",
        _w("Monday Tuesday Wednesday Thursday Friday Saturday"),
    ),
    (
        "Which mountain overlooks the town where {e} is located?",
        "The mountain that overlooks {t} is Mount {v}.",
        _w("Karst Ferrin Olde Tamber Vire Gallow"),
    ),
)
LOCATION = "{e} is located in the town of {t}."
COUNTRIES = _w("Norvania Eldoria Quessia Tarvonne Ulmstad Brevania Caskland Dorrovia Fennmark Ildaria Moravel Ostrava")
CR_RELATIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("What is the capital of {e}?", "Fact: the capital of {e} is {v}.", TOWNS),
    ("Who is the head of state of {e}?", "Fact: the head of state of {e} is {v}.", PEOPLE),
    (
        "What is the currency of {e}?",
        "Fact: the currency of {e} is the {v}.",
        _w("crown mark florin talon scute ducat"),
    ),
    ("What is the national bird of {e}?", "Fact: the national bird of {e} is the {v}.", _w("wren kite plover tern")),
)
FILLER = (
    _w("Meanwhile Afterwards Eventually Occasionally Sometimes Nearby Elsewhere Overnight"),
    (
        "a supply barge",
        "the tram line",
        "a night watchman",
        "the weather station",
        "a travelling circus",
        "the ferry pier",
        "an old windmill",
        "the harbour crane",
    ),
    (
        "stood idle for a while",
        "needed a fresh coat of paint",
        "drew a few curious visitors",
        "was inspected by the council",
        "rang its bell twice",
        "lost power for an hour",
        "was mentioned in a pamphlet",
        "changed hands quietly",
    ),
)
ICL_CLASSES: dict[str, tuple[str, ...]] = {
    "astronomy": _w("comet nebula telescope orbit galaxy meteor eclipse quasar asteroid planetarium"),
    "gardening": _w("trowel compost seedling hedge mulch greenhouse trellis pruning tulip fertiliser"),
    "law": _w("verdict attorney statute plaintiff appeal testimony subpoena tribunal lawsuit bailiff"),
    "sailing": _w("rudder mast anchor regatta keel spinnaker harbourmaster tiller buoy mooring"),
    "chemistry": _w("beaker molecule reagent titration catalyst isotope solvent enzyme polymer distillation"),
    "theatre": _w("stagehand curtain rehearsal playwright understudy matinee spotlight costume prologue usher"),
    "farming": _w("tractor harvest barley silo orchard livestock plough irrigation hayloft dairy"),
    "geology": _w("basalt fossil sediment glacier magma quartz erosion canyon stalactite tectonic"),
    "banking": _w("cheque overdrawn teller vault withdrawal deposit statement routing cashier debit"),
    "aviation": _w("cockpit runway altimeter hangar propeller turbulence autopilot taxiway glider fuselage"),
}
ICL_LABELS = {"icl_trec_coarse_synth": 6, "icl_banking77_synth": 10}
ICL_FRAME = "Sample: a question on {}; Label: {}."
ICL_QUESTION = "Sample: a question on {}\n{}"
"""A TTL question: the new sample, a line break and ``MABSyntheticConfig.icl_question`` (whose default wording
holds ``the`` and ``for``, words only filler holds, so BM25 can prefer filler to examples: docs/miniature.md)."""
STORY_SUBJECTS = _w("Heron Lantern Compass Thistle Juniper Falcon Harbour Meridian")
STORY_ADJECTIVES = _w("Silver Amber Crimson Northern Quiet Hollow Copper Distant")
STORY_KEYWORDS = _w(
    "shipwreck lighthouse treasure mutiny storm island map cannon parrot reef telescope rope lantern chest "
    "whale fog tide marooned feast wedding duel prophecy"
)
STORY_TEMPLATES = (
    "During the voyage of the {n}, the crew spoke of a {k}.",
    "On the voyage of the {n}, the captain wrote about a {k} in the log.",
    "Later on the voyage of the {n}, everyone remembered the {k}.",
)


# ============================================================================ generators
def _filler(rng: random.Random) -> str:
    opener, subject, event = (rng.choice(part) for part in FILLER)
    return f"{opener}, {subject} {event}."


def _institutions(rng: random.Random, n: int) -> list[str]:
    names = [f"the {head}{tail} {kind}" for head in NAME_HEADS for tail in NAME_TAILS for kind in KINDS]
    return rng.sample(names, n)


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _mix(rng: random.Random, facts: list[str], total: int, head: int = 0) -> list[str]:
    """``facts`` in order, spread among filler sentences, ``total`` sentences in all (first ``head`` kept first)."""
    n_filler = max(0, total - len(facts))
    slots = sorted(rng.sample(range(len(facts) - head + n_filler), len(facts) - head))
    body, fi, out = facts[head:], 0, list(facts[:head])
    for i in range(len(facts) - head + n_filler):
        if fi < len(slots) and slots[fi] == i:
            out.append(body[fi])
            fi += 1
        else:
            out.append(_filler(rng))
    return out


def _single_hop(rng: random.Random, cfg: MABSyntheticConfig) -> tuple[list[str], list[tuple[str, str]]]:
    n_facts = max(cfg.questions, round(cfg.context_sentences * cfg.fact_ratio))
    entities = _institutions(rng, n_facts)
    facts, qas = [], []
    for i, entity in enumerate(entities):
        question, statement, pool = rng.choice(INSTITUTION_RELATIONS)
        value = rng.choice(pool)
        facts.append(_cap(statement.format(e=entity, v=value)))
        if i < cfg.questions:
            qas.append((question.format(e=entity), value))
    order = list(range(len(facts)))
    rng.shuffle(order)
    return _mix(rng, [facts[i] for i in order], cfg.context_sentences), qas


def _multi_hop(rng: random.Random, cfg: MABSyntheticConfig) -> tuple[list[str], list[tuple[str, str]]]:
    n_pairs = max(cfg.questions, round(cfg.context_sentences * cfg.fact_ratio / 2))
    entities = _institutions(rng, n_pairs)
    towns = rng.sample(TOWNS, min(len(TOWNS), n_pairs))
    first, second, qas = [], [], []
    for i, entity in enumerate(entities):
        town = towns[i % len(towns)]
        question, statement, pool = TOWN_RELATIONS[i % len(TOWN_RELATIONS)]
        value = rng.choice(pool)
        first.append(_cap(LOCATION.format(e=entity, t=town)))
        if i < len(towns):
            second.append(statement.format(t=town, v=value))
            if len(qas) < cfg.questions:
                qas.append((question.format(e=entity), value))
    rng.shuffle(first)
    rng.shuffle(second)
    return _mix(rng, first + second, cfg.context_sentences), qas  # hop two comes in the second half


def _classification(
    rng: random.Random, cfg: MABSyntheticConfig, n_labels: int
) -> tuple[list[str], list[tuple[str, str]]]:
    classes = rng.sample(sorted(ICL_CLASSES), n_labels)
    labels = dict(zip(classes, (str(n) for n in rng.sample(range(100), n_labels)), strict=True))
    seen: set[str] = set()

    def sample(cls: str) -> str:  # two keywords of its class and one of another class, in random order
        while True:
            words = [
                *rng.sample(ICL_CLASSES[cls], 2),
                rng.choice(ICL_CLASSES[rng.choice([c for c in classes if c != cls])]),
            ]
            rng.shuffle(words)
            text = f"{words[0]}, {words[1]} and {words[2]}"
            if text not in seen:
                seen.add(text)
                return text

    shots = [ICL_FRAME.format(sample(cls), labels[cls]) for cls in classes]
    shots += [
        ICL_FRAME.format(sample(cls), labels[cls])
        for cls in (rng.choice(classes) for _ in range(cfg.context_sentences - n_labels))
    ]
    rng.shuffle(shots)
    qas = [
        (ICL_QUESTION.format(sample(cls), cfg.icl_question), labels[cls])
        for cls in (rng.choice(classes) for _ in range(cfg.questions))
    ]
    return shots, qas


def _summary(rng: random.Random, cfg: MABSyntheticConfig) -> tuple[list[str], list[tuple[str, str]]]:
    name = f"{rng.choice(STORY_ADJECTIVES)} {rng.choice(STORY_SUBJECTS)}"
    n_keys = min(len(STORY_KEYWORDS), max(4, round(cfg.context_sentences * cfg.fact_ratio / 4)))
    keywords = rng.sample(STORY_KEYWORDS, n_keys)
    story = [rng.choice(STORY_TEMPLATES).format(n=name, k=k) for k in keywords]
    return _mix(rng, story, cfg.context_sentences), [(f"Summarize the voyage of the {name}.", ", ".join(keywords))]


def _conflicts(rng: random.Random, cfg: MABSyntheticConfig) -> tuple[list[str], list[tuple[str, str]]]:
    keys = [(c, r) for c in COUNTRIES for r in range(len(CR_RELATIONS))]
    rng.shuffle(keys)
    n_keys = max(cfg.questions, round(cfg.context_sentences * cfg.fact_ratio / 2))
    keys = keys[:n_keys]
    early, late, qas = [], [], []
    for i, (country, r) in enumerate(keys):
        question, statement, pool = CR_RELATIONS[r]
        old, new = rng.sample(pool, 2)
        early.append(statement.format(e=country, v=old))
        late.append(statement.format(e=country, v=new))
        if i < cfg.questions:
            qas.append((question.format(e=country), new))
    rng.shuffle(early)
    rng.shuffle(late)
    return _mix(rng, early + late, cfg.context_sentences), qas  # every restatement comes after all originals


def mab_synthetic_row(source: str, index: int, cfg: MABSyntheticConfig, seed: int) -> dict[str, Any]:
    """One row in the MemoryAgentBench schema; the same arguments always give the same row."""
    if source not in SOURCE_SPLITS:
        raise ValueError(f"unknown synthetic MemoryAgentBench source {source!r}; sources: {SOURCES}")
    rng = random.Random(f"{seed}:mab:{source}:{index}")
    if source == "ruler_qa1_synth":
        sentences, qas = _single_hop(rng, cfg)
    elif source == "ruler_qa2_synth":
        sentences, qas = _multi_hop(rng, cfg)
    elif source in ICL_LABELS:
        sentences, qas = _classification(rng, cfg, ICL_LABELS[source])
    elif source == "infbench_sum_synth":
        sentences, qas = _summary(rng, cfg)
    else:
        sentences, qas = _conflicts(rng, cfg)
    answers = [a.split(", ") if source == "infbench_sum_synth" else [a] for _, a in qas]
    return {
        "context": " ".join(sentences),
        "questions": [q for q, _ in qas],
        "answers": answers,
        "metadata": {"source": source, "generator": GENERATOR_VERSION, "seed": seed, "index": index},
    }


ROW_SCHEMA = pa.schema(
    [
        ("context", pa.string()),
        ("questions", pa.list_(pa.string())),
        ("answers", pa.list_(pa.list_(pa.string()))),
        (
            "metadata",
            pa.struct(
                [("source", pa.string()), ("generator", pa.string()), ("seed", pa.int64()), ("index", pa.int64())]
            ),
        ),
    ]
)


def write_mab_synthetic(
    knobs: MABSyntheticConfig | Mapping[str, Any] | None, seed: int, out_dir: str | Path
) -> dict[str, Path]:
    """Write ``<out_dir>/<Split>.parquet`` per MemoryAgentBench split; same input gives identical files."""
    cfg = knobs if isinstance(knobs, MABSyntheticConfig) else MABSyntheticConfig.from_mapping(knobs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list[dict[str, Any]]] = {}
    for source in cfg.sources:
        for i in range(cfg.instances):
            by_split.setdefault(SOURCE_SPLITS[source], []).append(mab_synthetic_row(source, i, cfg, seed))
    files = {}
    for split, rows in by_split.items():
        files[split] = out / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=ROW_SCHEMA), files[split], compression="zstd")
    return files


def load_mab_synthetic(
    knobs: MABSyntheticConfig | Mapping[str, Any] | None,
    seed: int,
    out_dir: str | Path,
    count_tokens: TokenCounter | None = None,
) -> list[Instance]:
    """Write the benchmark under ``out_dir`` and read it back through :func:`load_memoryagentbench` (chunked)."""
    cfg = knobs if isinstance(knobs, MABSyntheticConfig) else MABSyntheticConfig.from_mapping(knobs)
    files = write_mab_synthetic(cfg, seed, out_dir)
    instances: list[Instance] = []
    for split, path in files.items():
        instances += load_memoryagentbench(split, data_dir=path, chunk_size=cfg.chunk_size, count_tokens=count_tokens)
    return instances
