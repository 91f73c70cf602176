"""What each sentence of a synthetic instance is, in the terms a memory manager's choices are judged by.

The synthetic generator records per sentence a ``role`` (``fact``, ``update``, ``distractor``,
``example``), a ``key`` and, for lures, ``lure: true`` (:mod:`finemem_lib.data.synthetic`). A
manager reading the text can tell filler (``"<Opener>, <subject> <event>."``) and lures (``"Rumour:
..."``) from facts, but not a fact about a person nobody asks about from a fact someone asks about.
:func:`sentence_kinds` therefore sorts sentences into:

- ``fact``: the first statement of a key; ``update``: a later statement of the same key (supersedes it);
- ``example``: a labelled sample (classification sources);
- ``other_fact``: a fact about a person nobody asks about (a distractor that reads like a fact);
- ``filler``: a sentence about nobody in particular; ``lure``: a wrong value of an asked key after ``Rumour:``.

:data:`FACT_KINDS` are the sentences a question-blind manager should keep, :data:`FILLER_KINDS` those it
should skip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finemem_lib.data.instance import Instance

KINDS = ("fact", "update", "example", "other_fact", "filler", "lure")
FACT_KINDS = ("fact", "update", "example", "other_fact")
FILLER_KINDS = ("filler", "lure")


class MissingRolesError(ValueError):
    """The instance carries no per-sentence roles (only the synthetic generator writes them)."""


def sentence_kind(meta: Mapping[str, Any]) -> str:
    """The kind of one sentence from its metadata record (see the module docstring)."""
    role = meta.get("role")
    if role in ("fact", "update", "example"):
        return str(role)
    if role == "distractor":
        if meta.get("lure"):
            return "lure"
        return "other_fact" if meta.get("key") else "filler"
    raise ValueError(f"unknown sentence role {role!r}")


def sentence_kinds(instance: Instance) -> list[list[str]]:
    """Per chunk, per sentence: its kind. Raises :class:`MissingRolesError` naming the instance when absent."""
    meta = instance.metadata.get("sentences") if isinstance(instance.metadata, Mapping) else None
    if not isinstance(meta, list) or len(meta) != instance.num_chunks:
        raise MissingRolesError(
            f"instance {instance.id!r} ({instance.source}) has no per-sentence roles (metadata['sentences']); "
            "only the synthetic benchmark's instances carry them"
        )
    return [[sentence_kind(m) for m in chunk] for chunk in meta]


def has_roles(instance: Instance) -> bool:
    """Whether :func:`sentence_kinds` can sort this instance's sentences."""
    try:
        sentence_kinds(instance)
    except (MissingRolesError, ValueError):
        return False
    return True
