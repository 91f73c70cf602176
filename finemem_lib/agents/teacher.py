"""A scripted, deliberately imperfect memory manager that writes the SFT cold-start traces.

It reads the synthetic benchmark's per-sentence metadata (``role``: fact | update | distractor |
example; ``key``) and decides, sentence by sentence with seeded coin flips, what to store:

- a fact (or a labelled example) is inserted with probability ``p_store_fact`` (``p_store_example``);
- a distractor is inserted with probability ``p_store_distractor``;
- an update is stored with probability ``p_store_fact``; it becomes ``memory_update(memory_id=<the
  item holding the same key>, sentence=n)`` with probability ``p_update`` when that item is in the
  manager's memory view (an id the prompt does not show cannot be learned), otherwise the new value
  is inserted as a fresh item (the old, stale item stays);
- a chunk with nothing stored gets ``memory_skip``.

So the teacher misses some facts, keeps some distractors and rarely updates: the cold-started
manager is usable but leaves the RL stage room to improve. :func:`replay_teacher` runs it through a
:class:`~finemem_lib.core.memory.Memory`, tracking key -> memory id, and records what the manager would
see at every step.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from finemem_lib.agents.prompts import chunk_sentences
from finemem_lib.agents.view import line_hints, manager_view
from finemem_lib.core.memory import Memory, MemoryItem, Operation, OpKind, OpResult
from finemem_lib.core.ops import NUMBERED_STYLES, STYLES
from finemem_lib.data.instance import Instance


@dataclass(frozen=True)
class TeacherConfig:
    """Knobs of the imperfect teacher (``sft.teacher`` in the profile). ``p_store_example`` None = ``p_store_fact``."""

    p_store_fact: float = 0.8
    p_store_distractor: float = 0.2
    p_update: float = 0.3
    p_store_example: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("p_store_fact", "p_store_distractor", "p_update", "p_store_example"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"teacher.{name} must be in [0, 1], got {value}")

    @classmethod
    def from_mapping(cls, knobs: Mapping[str, Any] | None) -> TeacherConfig:
        """Build from a mapping of knobs; unknown keys are an error."""
        knobs = dict(knobs or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(knobs) - names)
        if unknown:
            raise ValueError(f"unknown teacher knob(s) {unknown}; known: {sorted(names)}")
        return cls(**knobs)


@dataclass(frozen=True)
class TeacherStep:
    """One chunk step of a teacher episode: what the manager saw and what the teacher did."""

    instance_id: str
    step: int
    chunk: str
    sentences: tuple[str, ...]
    view: tuple[MemoryItem, ...]
    ops: tuple[Operation, ...]
    results: tuple[OpResult, ...]
    hints: tuple[MemoryItem | None, ...] | None = None  # review_hints: each sentence's hinted item


def sentence_metadata(instance: Instance) -> list[list[dict[str, Any]]]:
    """Per chunk, per sentence metadata; raises ValueError naming the instance when it is missing or misaligned."""
    meta = instance.metadata.get("sentences") if isinstance(instance.metadata, Mapping) else None
    if not isinstance(meta, list) or len(meta) != instance.num_chunks:
        raise ValueError(
            f"instance {instance.id!r} has no per-sentence metadata for its {instance.num_chunks} chunks "
            "(metadata['sentences']); the teacher needs the synthetic benchmark's metadata"
        )
    return meta


def decide_ops(
    sentence_meta: Sequence[Mapping[str, Any]],
    key_to_id: Mapping[str, str],
    visible_ids: set[str],
    rng: random.Random,
    cfg: TeacherConfig,
    hint_ids: Sequence[str | None] | None = None,
) -> list[Operation]:
    """The teacher's operations for one chunk (extractive style: 1-based sentence numbers). With ``hint_ids``
    (each sentence's hinted item) an update replaces the old item only when its line shows it."""
    p_example = cfg.p_store_fact if cfg.p_store_example is None else cfg.p_store_example
    ops: list[Operation] = []
    for number, meta in enumerate(sentence_meta, start=1):
        role, key = meta.get("role"), meta.get("key")
        if role == "fact":
            store = rng.random() < cfg.p_store_fact
        elif role == "example":
            store = rng.random() < p_example
        elif role == "update":
            store = rng.random() < cfg.p_store_fact
            old_id = key_to_id.get(key) if key else None
            shown = old_id in visible_ids if hint_ids is None else old_id is not None and old_id == hint_ids[number - 1]
            if store and shown and rng.random() < cfg.p_update:
                ops.append(Operation(OpKind.UPDATE, sentence=number, item_id=old_id))
                continue
        else:  # distractor or anything unknown
            store = rng.random() < cfg.p_store_distractor
        if store:
            ops.append(Operation(OpKind.INSERT, sentence=number))
    return ops or [Operation(OpKind.SKIP)]


def to_style(op: Operation, sentences: Sequence[str], style: str) -> Operation:
    """An extractive operation in the given style (``content``: the sentence's text as content)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if style in NUMBERED_STYLES or op.sentence is None:
        return op
    return Operation(op.kind, content=sentences[op.sentence - 1], item_id=op.item_id)


def replay_teacher(
    instance: Instance,
    cfg: TeacherConfig | None = None,
    view_k: int = 5,
    id_style: str = "short",
    style: str = "extractive",
    view_order: str = "recency",
    related_k: int = 0,
    hints: bool = False,
) -> list[TeacherStep]:
    """Run the teacher over an instance through a Memory; one :class:`TeacherStep` per chunk.

    The view is the manager's (:func:`finemem_lib.agents.view.manager_view`: ``view_k`` recent items in
    ``view_order``, plus ``related_k`` items related to the chunk). The random stream depends on
    ``cfg.seed`` and the instance id only, so episodes are reproducible and independent of the order
    instances are replayed in. ``hints``: each step records its sentences' hinted items
    (:func:`finemem_lib.agents.view.line_hints`), and updates follow them (:func:`decide_ops`).
    """
    cfg = cfg or TeacherConfig()
    meta = sentence_metadata(instance)
    rng = random.Random(f"{cfg.seed}:{instance.id}")
    memory = Memory(id_style=id_style, seed=cfg.seed)
    key_to_id: dict[str, str] = {}
    steps: list[TeacherStep] = []
    for step, (chunk, chunk_meta) in enumerate(zip(instance.chunks, meta, strict=True)):
        sentences = chunk_sentences(chunk)
        if len(sentences) != len(chunk_meta):
            raise ValueError(
                f"instance {instance.id!r} chunk {step}: {len(sentences)} sentences but metadata for {len(chunk_meta)}"
            )
        view = tuple(manager_view(memory, view_k, view_order, sentences, related_k))
        shown = tuple(line_hints(memory, sentences)) if hints else None
        hint_ids = [h.id if h is not None else None for h in shown] if shown is not None else None
        ops = decide_ops(chunk_meta, key_to_id, {item.id for item in view}, rng, cfg, hint_ids)
        ops = [to_style(op, sentences, style) for op in ops]
        results = memory.apply_all(ops, step, sentences)
        for op, result in zip(ops, results, strict=True):
            key = chunk_meta[_sentence_index(op, sentences)].get("key") if op.kind != OpKind.SKIP else None
            if result.ok and result.item_id and key:
                key_to_id[key] = result.item_id
        steps.append(TeacherStep(instance.id, step, chunk, tuple(sentences), view, tuple(ops), tuple(results), shown))
    return steps


def _sentence_index(op: Operation, sentences: Sequence[str]) -> int:
    if op.sentence is not None:
        return op.sentence - 1
    return list(sentences).index(op.content)
