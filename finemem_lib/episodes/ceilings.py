"""Scripted reference policies: how well a manager could do through the same memory, retrieval and reader.

Each policy writes a :class:`~finemem_lib.core.memory.Memory` chunk by chunk with the extractive
operations a manager emits (INSERT a sentence, UPDATE an item with a sentence), using the synthetic
generator's knowledge of what each sentence is (:mod:`finemem_lib.data.roles`); the memory is then
answered exactly as a manager's is (BM25 top-k, the profile's reader and scorer). They are ceilings and
references, not methods: no model is involved.

- ``oracle`` (fair oracle, never sees the questions): stores every sentence that states a fact (facts,
  updates, labelled examples, and facts about people nobody asks about, which read like any other fact),
  UPDATEs the item holding a fact when its value changes, skips filler and lures.
- ``oracle_view``: the oracle limited to what the manager sees: it UPDATEs only when the old item is in
  the manager's view (``memory.view_k`` / ``view_order`` / ``view_related``), else inserts the new value
  (the stale item stays), as a manager can only name ids it is shown.
- ``skip_filler``: stores every sentence but filler and lures; never updates.
- ``oracle_questions`` (question-aware): stores only the statements of keys some question asks about
  (updated in place) and the labelled examples: the smallest memory that answers everything.
- ``teacher``: the SFT cold start's imperfect teacher (``sft.teacher``), replayed with the manager's view.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from finemem_lib.agents.reasoner import Reasoner
from finemem_lib.agents.teacher import TeacherConfig, replay_teacher
from finemem_lib.agents.view import manager_view
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.sentences import split_sentences
from finemem_lib.core.tokens import TokenCounter, regex_token_count
from finemem_lib.data.instance import Instance
from finemem_lib.data.roles import FACT_KINDS, has_roles, sentence_kinds
from finemem_lib.episodes.qa import QAResult, answer_over_memory, qa_options_from_config

logger = logging.getLogger(__name__)

CEILINGS = ("oracle", "oracle_view", "skip_filler", "oracle_questions", "teacher")


def checked(names: Sequence[str] | None) -> list[str]:
    """The ceiling names of a profile's ``evaluation.ceilings`` (None: none); an unknown one is an error."""
    unknown = [n for n in names or () if n not in CEILINGS]
    if unknown:
        raise ValueError(f"evaluation.ceilings: unknown {unknown}; choose from {CEILINGS}")
    return list(names or ())


def missing_roles(instances: Sequence[Instance]) -> str | None:
    """Why the ceilings cannot run on ``instances`` (None: every one carries the generator's sentence roles).

    Only the synthetic generator records what each sentence is; real data and the MemoryAgentBench
    analogue do not, so a benchmark gets the ceilings only when all its instances carry the roles.
    """
    lacking = [inst for inst in instances if not has_roles(inst)]
    if not lacking:
        return None
    first = lacking[0]
    return (
        f"{len(lacking)} of {len(instances)} instances carry no per-sentence roles "
        f"(e.g. {first.id!r}, source {first.source}); only the synthetic benchmark's instances do"
    )


@dataclass(frozen=True)
class ViewSettings:
    """The manager's view (``memory`` section of a profile): recent items, their order, related items."""

    k: int = 5
    order: str = "recency"
    related_k: int = 0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> ViewSettings:
        memory = dict((cfg or {}).get("memory") or {})
        return cls(
            int(memory.get("view_k", 5)), str(memory.get("view_order", "recency")), int(memory.get("view_related", 0))
        )


# A rule decides, for one sentence, whether to store it and whether an UPDATE of its key's item is allowed.
Rule = Callable[[str, Mapping[str, Any]], tuple[bool, bool]]


def _oracle(kind: str, meta: Mapping[str, Any]) -> tuple[bool, bool]:
    return kind in FACT_KINDS, True


def _skip_filler(kind: str, meta: Mapping[str, Any]) -> tuple[bool, bool]:
    return kind in FACT_KINDS, False


def _questions(kind: str, meta: Mapping[str, Any]) -> tuple[bool, bool]:
    return kind == "example" or (kind in ("fact", "update") and bool(meta.get("asked"))), True


RULES: dict[str, tuple[Rule, bool]] = {  # name -> (rule, limited to the manager's view)
    "oracle": (_oracle, False),
    "oracle_view": (_oracle, True),
    "skip_filler": (_skip_filler, False),
    "oracle_questions": (_questions, False),
}


def scripted_memory(
    instance: Instance,
    rule: Rule,
    view: ViewSettings | None = None,
    token_counter: TokenCounter = regex_token_count,
    stats: Counter[str] | None = None,
) -> Memory:
    """The memory a rule writes over an instance (UPDATEs limited to ``view`` when given).

    ``stats`` (a Counter) receives ``updates``: update sentences stored whose key already had an item,
    and ``updates_in_view``: those whose item the view showed (all of them without ``view``).
    """
    kinds = sentence_kinds(instance)
    meta = instance.metadata["sentences"]
    memory = Memory(token_counter=token_counter, id_style="short")
    item_of: dict[str, str] = {}  # key -> id of the item holding its latest stored statement
    for step, chunk in enumerate(instance.chunks):
        sentences = split_sentences(chunk)
        visible = None
        if view is not None:
            visible = {item.id for item in manager_view(memory, view.k, view.order, sentences, view.related_k)}
        ops: list[tuple[Operation, str | None]] = []
        for number, (kind, record) in enumerate(zip(kinds[step], meta[step], strict=True), start=1):
            store, may_update = rule(kind, record)
            if not store:
                continue
            key = record.get("key")
            old = item_of.get(key) if key else None
            if stats is not None and kind == "update" and old in memory:
                stats["updates"] += 1
                stats["updates_in_view"] += visible is None or old in visible
            if kind == "update" and may_update and old in memory and (visible is None or old in visible):
                ops.append((Operation(OpKind.UPDATE, sentence=number, item_id=old), key))
            else:
                ops.append((Operation(OpKind.INSERT, sentence=number), key))
        for op, key in ops:
            result = memory.apply(op, step, sentences)
            if result.ok and result.item_id and key:
                item_of[key] = result.item_id
    return memory


def teacher_memory(
    instance: Instance,
    teacher: TeacherConfig | None = None,
    view: ViewSettings | None = None,
    token_counter: TokenCounter = regex_token_count,
) -> Memory:
    """The memory the SFT teacher writes over an instance, seeing the manager's view."""
    view = view or ViewSettings()
    steps = replay_teacher(instance, teacher, view.k, "short", "extractive", view.order, view.related_k)
    memory = Memory(token_counter=token_counter, id_style="short")
    for step in steps:
        memory.apply_all(step.ops, step.step, step.sentences)
    return memory


def ceiling_memory(
    name: str, instance: Instance, cfg: Mapping[str, Any] | None = None, token_counter: TokenCounter = regex_token_count
) -> Memory:
    """The memory ceiling ``name`` writes over ``instance`` with a profile's view (and teacher) settings."""
    if name not in CEILINGS:
        raise ValueError(f"unknown ceiling {name!r}; choose one of {CEILINGS}")
    view = ViewSettings.from_config(cfg)
    if name == "teacher":
        knobs = ((cfg or {}).get("sft") or {}).get("teacher")
        return teacher_memory(instance, TeacherConfig.from_mapping(knobs), view, token_counter)
    rule, limited = RULES[name]
    return scripted_memory(instance, rule, view if limited else None, token_counter)


def run_ceiling(
    name: str,
    instance: Instance,
    reasoner: Reasoner,
    cfg: Mapping[str, Any] | None = None,
    token_counter: TokenCounter = regex_token_count,
    questions: Sequence[Any] | None = None,
) -> tuple[list[QAResult], Memory]:
    """Answer ``instance``'s questions (or ``questions``) over ceiling ``name``'s memory, as a manager's is."""
    memory = ceiling_memory(name, instance, cfg, token_counter)
    options = qa_options_from_config(cfg)
    qas = instance.questions if questions is None else questions
    return answer_over_memory(memory, qas, instance.source, reasoner, options.top_k, options=options), memory
