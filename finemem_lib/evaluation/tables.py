"""Tables in the papers' layouts, with bootstrap 95 % intervals over instances.

An instance's score is the mean over its questions; a column's score is the mean over its instances.
Intervals: percentile bootstrap, resampling each column's instances with replacement
(``evaluation.bootstrap.samples`` replicates, seeded). ``avg`` is the unweighted mean of the columns that
have data (CR excluded in the MemoryAgentBench layout), its interval from the same replicates (columns
resampled independently). ``memory`` is the mean memory length in tokens over all instances of the table.

Every row has a ``kind``: ``method`` (baselines and managers, the compared methods) or ``ceiling`` (a scripted
reference policy of :mod:`finemem_lib.episodes.ceilings`, role ``ceiling`` in the records: how well a
manager could do, not a method to rank). Ceilings come after the methods; :func:`rows_of_kind` splits a table.

Trained managers are one row per (variant, seed), ``<variant>_s<seed>``; after a variant's last seed comes
its mean over seeds, ``<variant> (mean of N seeds)``, with a two-level bootstrap interval (seeds, then
instances within each seed); :func:`paper_differences` gives each variant's mean minus OR-only's and the
SFT start's, paired, with a verdict (:mod:`~finemem_lib.evaluation.seed_means`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from finemem_lib.episodes.ceilings import CEILINGS
from finemem_lib.evaluation.columns import Column, column_for, layout
from finemem_lib.evaluation.seed_means import differences_table, seed_mean_rows, seed_runs
from finemem_lib.evaluation.settings import EvaluationSettings, evaluation_settings

AVERAGING_RULES = {
    "memalpha": "avg = unweighted mean of the source columns that have data; 95 % intervals: bootstrap over instances.",
    "mab": (
        "avg = unweighted mean of the AR, TTL and LRU columns that have data (CR shown, not averaged, as both "
        "papers skip it); 95 % intervals: bootstrap over instances."
    ),
}


KINDS = ("method", "ceiling")


def method_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """Method -> ``ceiling`` (role ``ceiling``) or ``method``; a frame without roles (records written before
    they were recorded) goes by the ceilings' names."""
    if "kind" in frame:
        return dict(zip(frame["method"], frame["kind"], strict=True))
    if "role" in frame:
        roles = dict(zip(frame["method"], frame["role"], strict=True))
        return {m: "ceiling" if r == "ceiling" else "method" for m, r in roles.items()}
    return {m: "ceiling" if m in CEILINGS else "method" for m in frame["method"].unique()}


def instance_scores(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (benchmark, method, instance): mean score over its questions, memory tokens, column, kind."""
    if records.empty:
        return pd.DataFrame(
            columns=["benchmark", "method", "instance_id", "source", "column", "score", "memory_tokens", "kind"]
        )
    keys = ["benchmark", "method", "instance_id", "source", "column"]
    scores = (
        records.groupby(keys, sort=False)
        .agg(score=("score", "mean"), memory_tokens=("memory_tokens", "first"), questions=("score", "size"))
        .reset_index()
    )
    scores = scores.assign(kind=scores["method"].map(method_kinds(records)))
    if "role" in records:  # which managers are trained (seed) runs and which is the start
        roles = records.drop_duplicates("method").set_index("method")["role"]
        scores = scores.assign(role=scores["method"].map(roles))
    return scores


def _columns_in_order(frame: pd.DataFrame, kind: str, custom: Mapping[str, Any] | None) -> list[Column]:
    columns = list(layout(kind))
    names = {c.name for c in columns}
    for source in frame["source"].unique():
        column = column_for(source, layout(kind), custom)
        if column.name not in names:
            columns.append(column)
            names.add(column.name)
    return columns


def bootstrap_table(
    per_instance: pd.DataFrame,
    kind: str,
    samples: int = 1000,
    seed: int = 0,
    custom: Mapping[str, Any] | None = None,
    seed_means: bool = True,
) -> pd.DataFrame:
    """Long table: one row per (method, column) plus ``avg``: mean, 95 % interval, instances, memory tokens.

    After the last seed of each trained variant (``<variant>_s<seed>``), its mean over seeds
    (:mod:`~finemem_lib.evaluation.seed_means`, with ``seed_means``)."""
    if samples < 1:
        raise ValueError(f"bootstrap samples must be >= 1, got {samples}")
    rows: list[dict] = []
    columns = _columns_in_order(per_instance, kind, custom) if not per_instance.empty else list(layout(kind))
    kinds = method_kinds(per_instance) if not per_instance.empty else {}
    groups = dict(list(per_instance.groupby("method", sort=False)))
    runs = seed_runs(per_instance) if seed_means else {}
    last_seed = {max(v.values(), key=list(groups).index): k for k, v in runs.items()}
    for method in sorted(groups, key=lambda m: KINDS.index(kinds[m])):  # methods first, then the ceilings
        frame = groups[method]
        rng = np.random.default_rng(seed)
        replicate_means, means = [], []
        for column in columns:
            scores = frame.loc[frame["column"] == column.name, "score"].to_numpy(dtype=float)
            if scores.size == 0:
                rows.append({"method": method, "column": column.name, "group": column.group, "n": 0})
                continue
            draws = rng.integers(0, scores.size, size=(samples, scores.size))
            boot = scores[draws].mean(axis=1)
            lo, hi = np.percentile(boot, [2.5, 97.5])
            rows.append(
                {
                    "method": method,
                    "column": column.name,
                    "group": column.group,
                    "mean": float(scores.mean()),
                    "lo": float(lo),
                    "hi": float(hi),
                    "n": int(scores.size),
                }
            )
            if column.in_average:
                replicate_means.append(boot)
                means.append(scores.mean())
        avg = {"method": method, "column": "avg", "group": "", "n": len(frame)}
        if means:
            boot_avg = np.mean(np.stack(replicate_means), axis=0)
            lo, hi = np.percentile(boot_avg, [2.5, 97.5])
            avg.update(mean=float(np.mean(means)), lo=float(lo), hi=float(hi))
        rows.append(avg)
        rows.append(
            {
                "method": method,
                "column": "memory",
                "group": "",
                "mean": float(frame["memory_tokens"].mean()),
                "n": len(frame),
            }
        )
        if method in last_seed:
            variant = last_seed[method]
            mean_rows = seed_mean_rows(per_instance, columns, variant, runs[variant], samples, seed)
            kinds[mean_rows[0]["method"]] = kinds[method]
            rows += mean_rows
    long = pd.DataFrame(rows, columns=["method", "column", "group", "mean", "lo", "hi", "n"])
    long.insert(1, "kind", long["method"].map(kinds).astype(object))
    return long


def wide_table(long: pd.DataFrame, digits: int = 3, intervals: bool = True) -> pd.DataFrame:
    """The paper layout: one row per method, one column per table column, cells ``mean [lo, hi]``; no data: ``–``.

    The first column is each row's ``kind`` (``method`` or ``ceiling``) when the long table has one."""

    def cell(row: pd.Series) -> str:
        if pd.isna(row.get("mean")):
            return "–"
        if row["column"] == "memory":
            return f"{row['mean']:.0f}"
        text = f"{row['mean']:.{digits}f}"
        if intervals and not pd.isna(row.get("lo")):
            text += f" [{row['lo']:.{digits}f}, {row['hi']:.{digits}f}]"
        return text

    if long.empty:
        return pd.DataFrame()
    order = list(dict.fromkeys(long["column"]))
    cells = long.assign(cell=long.apply(cell, axis=1))
    wide = cells.pivot(index="method", columns="column", values="cell")[order]
    methods = list(dict.fromkeys(long["method"]))
    wide = wide.loc[methods]
    if "kind" in long:
        wide.insert(0, "kind", long.drop_duplicates("method").set_index("method")["kind"].reindex(methods))
        order = ["kind", *order]
    groups = long.drop_duplicates("column").set_index("column")["group"].reindex(order).fillna("")
    if groups.str.len().gt(0).any():
        wide.columns = pd.MultiIndex.from_arrays([groups.to_list(), order], names=["", "column"])
    wide.columns.name = None if not isinstance(wide.columns, pd.MultiIndex) else wide.columns.names
    return wide


def rows_of_kind(wide: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The rows of a wide table of one ``kind`` (``method`` or ``ceiling``), without the kind column."""
    if wide.empty:
        return wide
    column = next(c for c in wide.columns if (c[-1] if isinstance(c, tuple) else c) == "kind")
    return wide[wide[column] == kind].drop(columns=[column])


def paper_tables(
    records: pd.DataFrame, cfg: Mapping[str, Any] | EvaluationSettings | None = None
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """``{benchmark: (long table, wide table)}`` for every benchmark in the records (``cfg``: a profile or its
    evaluation settings: the bootstrap and the bring-your-own sources' columns)."""
    settings = evaluation_settings(cfg)
    boot, custom = settings.bootstrap, settings.source_rules
    out = {}
    per_instance = instance_scores(records)
    for benchmark, frame in per_instance.groupby("benchmark", sort=False):
        kind = "memalpha" if benchmark == "memalpha" else "mab"
        long = bootstrap_table(frame, kind, boot.samples, boot.seed, custom)
        out[str(benchmark)] = (long, wide_table(long))
    return out


def paper_differences(
    records: pd.DataFrame, cfg: Mapping[str, Any] | EvaluationSettings | None = None
) -> dict[str, pd.DataFrame]:
    """``{benchmark: differences}``: each trained variant's mean over seeds minus OR-only's mean and the SFT
    start, per column and ``avg``, with paired two-level bootstrap intervals and a verdict
    (:func:`finemem_lib.evaluation.seed_means.differences_table`); benchmarks without trained runs: none."""
    settings = evaluation_settings(cfg)
    boot, custom = settings.bootstrap, settings.source_rules
    out = {}
    for benchmark, frame in instance_scores(records).groupby("benchmark", sort=False):
        kind = "memalpha" if benchmark == "memalpha" else "mab"
        table = differences_table(frame, _columns_in_order(frame, kind, custom), boot.samples, boot.seed)
        if not table.empty:
            out[str(benchmark)] = table
    return out
