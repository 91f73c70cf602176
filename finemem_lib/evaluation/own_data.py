"""Evaluating a user's own MemoryAgentBench-schema parquet in one command: the profile the flags imply.

``finemem evaluate --parquet my.parquet --split Accurate_Retrieval --rule mysrc=substring_exact_match
--methods rag_bm25 store_everything`` (and ``--manager DIR`` for a trained manager) evaluates that one
file with the ``default`` profile (or ``--profile``'s) and no YAML of the user's:

- the file is the only benchmark (named after its stem), chunked per ``--chunk-size`` or the split's default;
- ``--rule source=rule`` scores a source the built-in tables do not know (``evaluation.source_rules``);
- no trained or SFT manager is required (``evaluation.trained_managers: false``); each ``--manager``
  folder is evaluated as a manager named after the folder;
- the run's name is ``--name``, else the ``--profile``'s, else the file's stem: its records say so and its
  outputs go to ``results/<name>/``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finemem_lib.data.memoryagentbench import MAB_SPLITS
from finemem_lib.evaluation.sources import RULE_FUNCTIONS, UnknownSourceError


class OwnDataError(ValueError):
    """A flag of the one-command evaluation that cannot work; the message says which and what would."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "mine"


def parse_rules(items: Sequence[str]) -> dict[str, str]:
    """``["src=rule", ...]`` as ``{src: rule}``; a malformed item or an unknown rule names the known rules."""
    rules = {}
    known = ", ".join(sorted(RULE_FUNCTIONS))
    for item in items:
        source, sep, rule = item.partition("=")
        if not sep or not source.strip() or not rule.strip():
            raise OwnDataError(f"--rule {item!r}: write SOURCE=RULE, e.g. mysrc=substring_exact_match; rules: {known}")
        if rule.strip() not in RULE_FUNCTIONS:
            raise UnknownSourceError(f"--rule {item!r}: unknown rule {rule.strip()!r}; known rules: {known}")
        rules[source.strip()] = rule.strip()
    return rules


def own_data_profile(
    cfg: Mapping[str, Any],
    parquet: str | Path,
    split: str = "Accurate_Retrieval",
    rules: Sequence[str] = (),
    managers: Sequence[str | Path] = (),
    name: str | None = None,
    chunk_size: int | None = None,
    on_error: str = "raise",
    keep_name: bool = False,
) -> dict[str, Any]:
    """``cfg`` turned into a profile that evaluates ``parquet`` alone (paths are taken from the current folder).

    ``keep_name``: the profile was chosen by the user (``--profile``), so its name stays unless ``name`` is given.
    """
    path = Path(parquet).expanduser().resolve()
    if not path.exists():
        raise OwnDataError(f"--parquet {parquet}: no such file or folder (looked for {path})")
    if split not in MAB_SPLITS:
        raise OwnDataError(f"--split {split!r}: not a MemoryAgentBench split; splits: {', '.join(MAB_SPLITS)}")
    if on_error not in ("raise", "skip"):
        raise OwnDataError(f"--on-error {on_error!r}: use raise or skip")
    source_rules = parse_rules(rules)
    extra: dict[str, str] = {}
    for folder in managers:
        model = Path(folder).expanduser().resolve()
        if not (model / "config.json").is_file():
            raise OwnDataError(f"--manager {folder}: no model folder there (no config.json in {model})")
        extra[_slug(model.name)] = str(model)
    bench = _slug(path.stem)
    out = copy.deepcopy(dict(cfg))
    out["name"] = name or (str(cfg.get("name")) if keep_name else bench)
    section = dict(out.get("evaluation") or {})
    spec: dict[str, Any] = {"path": str(path), "split": split, "on_error": on_error}
    if chunk_size is not None:
        spec["chunk_size"] = int(chunk_size)
    section.update(
        benchmarks=[],
        custom_benchmarks={bench: spec},
        source_rules={**(section.get("source_rules") or {}), **source_rules},
        trained_managers=False,
        ceilings=[],  # a user's own data carries no synthetic sentence roles: no ceiling can run on it
        extra_managers={**(section.get("extra_managers") or {}), **extra},
    )
    out["evaluation"] = section
    return out


def check_rule_sources(rules: Mapping[str, Any], sources: Sequence[str]) -> None:
    """A ``--rule`` for a source the data does not have is a mistake: name the sources it has."""
    missing = [s for s in rules if s not in sources]
    if missing:
        raise OwnDataError(
            f"--rule names source(s) {missing} that the data does not have; its sources: {', '.join(sources)}"
        )
