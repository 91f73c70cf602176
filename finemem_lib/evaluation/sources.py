"""Data sources the evaluation can score: the built-in rules, and bring-your-own sources from the profile.

A source is scored by :func:`finemem_lib.core.metrics.score` (its rule found by
:func:`finemem_lib.core.metrics.rule_for`)
and asked with the instruction :func:`finemem_lib.agents.instructions.query_instruction` gives it. A new source
in a user's own MemoryAgentBench-schema parquet is added in the profile::

    evaluation:
      source_rules:
        mysrc: substring_exact_match                  # short form: a rule name, the question asked bare
        other:                                        # long form
          rule: keyword_hit_fraction
          instruction: "Summarise what you remember."  # prefixed to the question (null: none)
          column: Other                               # its table column (default: the source name)

:func:`register_sources` adds those to the rule and instruction tables before any work starts;
:func:`check_sources` stops on a source that has neither, naming the known rules and how to add one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from finemem_lib.agents import instructions
from finemem_lib.core import metrics

RULE_FUNCTIONS: dict[str, Callable[[str, metrics.Golds], float]] = {
    "containment": metrics.containment,
    "partial_containment": metrics.partial_containment,
    "keyword_hit_fraction": metrics.keyword_hit_fraction,
    "boxed_label_match": metrics.boxed_label_match,
    "recall_at_5": metrics.recall_at_k,
    **{name: partial(metrics.mab_best, fn) for name, fn in metrics.MAB_METRICS.items()},
}
"""Rules a bring-your-own source may name; MemoryAgentBench's metrics take the max over golds and ``Answer:``."""


class UnknownSourceError(ValueError):
    """A data source with no scoring rule or no query instruction; the message says how to add one."""


def _spec(value: Any, source: str) -> dict[str, Any]:
    spec = {"rule": value} if isinstance(value, str) else dict(value or {})
    rule = spec.get("rule")
    if rule not in RULE_FUNCTIONS:
        raise UnknownSourceError(
            f"evaluation.source_rules.{source}: unknown rule {rule!r}; known rules: {', '.join(sorted(RULE_FUNCTIONS))}"
        )
    return spec


def register_sources(source_rules: Mapping[str, Any] | None) -> list[str]:
    """Add the profile's bring-your-own sources to the scoring rules and query instructions (idempotent)."""
    added = []
    for source, value in (source_rules or {}).items():
        spec = _spec(value, source)
        pattern = re.escape(source.strip().lower())
        rule = metrics.ScoreRule(spec["rule"], pattern, RULE_FUNCTIONS[spec["rule"]])
        for protocol, rules in metrics.RULE_TABLES.items():  # the source's rule under every scoring protocol
            metrics.RULE_TABLES[protocol] = (rule, *(r for r in rules if r.pattern != pattern))
        instruction = spec.get("instruction")
        instructions.QUERY_INSTRUCTIONS = (
            (pattern, instruction),
            *((p, text) for p, text in instructions.QUERY_INSTRUCTIONS if p != pattern),
        )
        added.append(source)
    return added


def _problem(source: str) -> str | None:
    try:
        metrics.rule_for(source)
        instructions.query_instruction(source)
    except ValueError as exc:
        return str(exc)
    return None


def check_sources(sources: Iterable[str]) -> None:
    """Raise :class:`UnknownSourceError` for sources that cannot be asked or scored (before any work)."""
    unknown = {s: p for s in sorted(set(sources)) if (p := _problem(s))}
    if not unknown:
        return
    first = next(iter(unknown))
    error = UnknownSourceError(
        f"no scoring rule or query instruction for data source(s) {sorted(unknown)} ({unknown[first]}). "
        f"Known rules: {', '.join(sorted(RULE_FUNCTIONS))}. To add one, name a rule in the profile "
        f"(evaluation: {{source_rules: {{{first}: substring_exact_match}}}}, or {{rule, instruction, column}}) "
        f"or on the command line (--rule {first}=substring_exact_match)"
    )
    error.sources = sorted(unknown)  # type: ignore[attr-defined]
    raise error
