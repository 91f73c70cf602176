"""The papers' table layouts: which data source fills which column, and how columns group.

One mapping drives every table, real or offline: a source name is matched (full match, case-insensitive,
first hit wins) against each layout's column patterns. The offline sources map onto the same columns:

- Memalpha layout: ``synth_factoid`` -> squad (single-hop factoids among distractors),
  ``synth_update`` -> lme (LongMemEval-style knowledge updates: the latest value is asked),
  ``synth_icl`` -> ttl (test-time learning from labelled examples).
- MemoryAgentBench layout: ``ruler_qa1_synth`` -> SH-Doc, ``ruler_qa2_synth`` -> MH-Doc,
  ``icl_trec_coarse_synth`` -> TREC-C, ``icl_banking77_synth`` -> Banking, ``infbench_sum_synth`` ->
  InfBench-Sum, ``factconsolidation_sh_synth`` -> CR (the real names' patterns cover them).

A source no column claims (a bring-your-own source) gets a column of its own, named by
``evaluation.source_rules.<source>.column`` or the source itself, after the layout's columns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    """A table column: its name, the group it belongs to (AR/TTL/LRU/CR, or ``""``), and the sources it holds."""

    name: str
    group: str
    pattern: str
    in_average: bool = True


MEMALPHA_LAYOUT: tuple[Column, ...] = (
    Column("squad", "", r"squad.*|synth_factoid"),
    Column("hotpotqa", "", r"hotpotqa.*"),
    Column("perltqa", "", r"perltqa.*"),
    Column("lme", "", r"lme.*|longmemeval.*|synth_update"),
    Column("booksum", "", r"booksum.*"),
    Column("pubmed-rct", "", r"pubmed[-_]rct.*"),
    Column("ttl", "", r"ttl.*|icl.*|synth_icl"),
)
"""Memalpha test: one column per source; avg = unweighted mean of the columns that have data."""

MAB_LAYOUT: tuple[Column, ...] = (
    Column("SH-Doc", "AR", r"ruler_qa1.*"),
    Column("MH-Doc", "AR", r"ruler_qa2.*"),
    Column("LME", "AR", r"longmemeval.*|lme.*"),
    Column("TREC-C", "TTL", r"icl_trec_coarse.*"),
    Column("NLU", "TTL", r"icl_nlu.*"),
    Column("TREC-F", "TTL", r"icl_trec_fine.*"),
    Column("Clinic", "TTL", r"icl_clinic.*"),
    Column("Banking", "TTL", r"icl_banking.*"),
    Column("InfBench-Sum", "LRU", r"infbench_sum.*"),
    Column("CR", "CR", r"factconsolidation.*", in_average=False),
)
"""MemoryAgentBench: AR, TTL, LRU as in Mem-alpha's table (avg = unweighted mean of these columns), plus CR
(FactConsolidation), which both papers skip: shown, not averaged."""

LAYOUTS: dict[str, tuple[Column, ...]] = {"memalpha": MEMALPHA_LAYOUT, "mab": MAB_LAYOUT}


def layout(benchmark: str) -> tuple[Column, ...]:
    """The column layout of a benchmark kind (``memalpha`` or ``mab``; anything else: the MAB layout)."""
    return LAYOUTS.get(benchmark, MAB_LAYOUT)


def column_for(source: str, columns: tuple[Column, ...], custom: Mapping[str, Any] | None = None) -> Column:
    """The column a source's scores go to; an unclaimed source gets its own (averaged) column."""
    key = source.strip().lower()
    for column in columns:
        if re.fullmatch(column.pattern, key):
            return column
    spec = (custom or {}).get(source)
    name = spec.get("column", source) if isinstance(spec, Mapping) else source
    return Column(str(name), "own", re.escape(key))
