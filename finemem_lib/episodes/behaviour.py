"""What a manager did with each sentence of an episode: stored (INSERT or UPDATE) or not, by sentence kind.

The store rate of a kind is the share of the chunk sentences of that kind the manager wrote into memory
(an executed INSERT or UPDATE naming the sentence, extractive style). Facts (:data:`FACT_KINDS`) should be
stored and filler (:data:`FILLER_KINDS`) skipped; ``updates_applied`` counts executed UPDATE calls and
``updates_possible`` the update sentences whose key already had an item the manager wrote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from finemem_lib.core.memory import Operation, OpKind, OpResult
from finemem_lib.data.instance import Instance
from finemem_lib.data.roles import FACT_KINDS, FILLER_KINDS, KINDS, has_roles, sentence_kinds


def stored_sentences(operations: Sequence[Operation], results: Sequence[OpResult]) -> set[int]:
    """0-based indices of the chunk sentences an executed INSERT / UPDATE wrote."""
    return {
        op.sentence - 1
        for op, result in zip(operations, results, strict=True)
        if result.ok and op.sentence is not None and op.kind in (OpKind.INSERT, OpKind.UPDATE)
    }


def step_counts(kinds: Sequence[str], operations: Sequence[Operation], results: Sequence[OpResult]) -> Counter[str]:
    """``seen/<kind>``, ``stored/<kind>`` and ``updates`` counts of one chunk step."""
    stored = stored_sentences(operations, results)
    counts: Counter[str] = Counter()
    for i, kind in enumerate(kinds):
        counts[f"seen/{kind}"] += 1
        counts[f"stored/{kind}"] += i in stored
    counts["updates"] += sum(
        result.ok and op.kind is OpKind.UPDATE for op, result in zip(operations, results, strict=True)
    )
    return counts


def episode_counts(instance: Instance, steps: Sequence[object]) -> Counter[str]:
    """Counts summed over an episode's steps (objects with ``operations`` and ``results``); empty without roles."""
    if not has_roles(instance):
        return Counter()
    kinds = sentence_kinds(instance)
    total: Counter[str] = Counter()
    for t, step in enumerate(steps):
        total += step_counts(kinds[t], step.operations, step.results)  # type: ignore[attr-defined]
    return total


def rates(counts: Counter[str]) -> dict[str, float]:
    """Store rates per kind, of facts and of filler (NaN where none was seen), and UPDATEs per episode step."""
    out = {}
    for kind in KINDS:
        seen = counts.get(f"seen/{kind}", 0)
        out[f"store_rate/{kind}"] = counts.get(f"stored/{kind}", 0) / seen if seen else float("nan")
    for name, group in (("facts", FACT_KINDS), ("filler", FILLER_KINDS)):
        seen = sum(counts.get(f"seen/{k}", 0) for k in group)
        stored = sum(counts.get(f"stored/{k}", 0) for k in group)
        out[f"store_rate/{name}"] = stored / seen if seen else float("nan")
    out["updates"] = float(counts.get("updates", 0))
    return out
