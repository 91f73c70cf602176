"""Trained managers over their seeds: a mean row per variant and paired differences, by a two-level bootstrap.

A trained manager is one (variant, seed) run, ``<variant>_s<seed>``. Its variant's **mean row**,
``<variant> (mean of N seeds)``, holds per column the mean over seeds of each seed's mean over instances.
Its 95 % interval comes from a **two-level bootstrap**: a replicate draws N seeds with replacement, then,
within each drawn seed, that seed's instances with replacement, and averages; the ``avg`` column averages
the columns of the same replicates (the seeds drawn once per replicate, shared by every column). The
interval thus widens with the spread between seeds as well as between instances. With one seed it is the
instance bootstrap of that seed's own row (the same draws: the two rows are identical).

**Differences** (a variant's mean row against OR-only's and against the SFT start) are paired: per seed,
the per-instance difference on the instances both rows share (a run and the start answer the same
instances; two variants with the same seeds are paired seed by seed, as runs with one seed see the same
training instances in the same order), then the same two-level bootstrap over these differences. Two
variants with different seed sets are compared unpaired (each side bootstrapped on its own). The verdict
reads the interval: ``higher`` (above 0), ``lower`` (below 0), ``no difference (interval spans 0)``; a side
with one seed is ``one seed: not a comparison`` (its interval covers instances only, not the seeds).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from finemem_lib.evaluation.columns import Column

SEED_RUN = re.compile(r"^(?P<variant>.+)_s(?P<seed>\d+)$")
MEAN_ROW = re.compile(r"^(?P<variant>.+) \(mean of (?P<seeds>\d+) seeds?\)$")
START_NAMES = ("sft_manager", "base_manager")
REFERENCE_VARIANT = "or_only"

HIGHER, LOWER, NO_DIFFERENCE = "higher", "lower", "no difference (interval spans 0)"
ONE_SEED = "one seed: not a comparison"
DIFFERENCE_COLUMNS = ["variant", "versus", "column", "seeds", "instances", "diff", "lo", "hi", "verdict"]


def mean_row_name(variant: str, seeds: int) -> str:
    """``<variant> (mean of N seeds)``."""
    return f"{variant} (mean of {seeds} seed{'' if seeds == 1 else 's'})"


def is_mean_row(name: str) -> bool:
    """Whether a table row is a variant's mean over seeds."""
    return MEAN_ROW.match(str(name)) is not None


def seed_runs(per_instance: pd.DataFrame) -> dict[str, dict[int, str]]:
    """``{variant: {seed: method}}`` of the trained managers, in the order the methods appear.

    A trained manager is a method named ``<variant>_s<seed>`` of role ``trained`` (frames without roles: of
    kind ``method``, not a baseline or the start)."""
    if per_instance.empty:
        return {}
    methods = list(dict.fromkeys(per_instance["method"]))
    if "role" in per_instance:
        roles = dict(zip(per_instance["method"], per_instance["role"], strict=True))
        methods = [m for m in methods if roles.get(m) == "trained"]
    elif "kind" in per_instance:
        kinds = dict(zip(per_instance["method"], per_instance["kind"], strict=True))
        methods = [m for m in methods if kinds.get(m) == "method"]
    runs: dict[str, dict[int, str]] = {}
    for method in methods:
        found = SEED_RUN.match(str(method))
        if found:
            runs.setdefault(found["variant"], {})[int(found["seed"])] = str(method)
    return runs


def start_method(per_instance: pd.DataFrame) -> str | None:
    """The GRPO start among the methods (role ``start``, else ``sft_manager`` / ``base_manager``), or None."""
    if per_instance.empty:
        return None
    if "role" in per_instance:
        starts = per_instance.loc[per_instance["role"] == "start", "method"]
        if len(starts):
            return str(starts.iloc[0])
    present = set(per_instance["method"])
    return next((name for name in START_NAMES if name in present), None)


# ---------------------------------------------------------------------------- the two-level bootstrap
def seed_draws(seeds: int, samples: int, seed: int) -> np.ndarray:
    """``[samples, seeds]``: the seeds a replicate draws (with replacement), by index."""
    return np.random.default_rng([seed, 1]).integers(0, seeds, size=(samples, seeds))


def two_level_replicates(
    per_seed: Sequence[np.ndarray | None], draws: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``[samples]`` replicate means: slot k of replicate b takes seed ``draws[b, k]`` and resamples its scores.

    ``per_seed``: one array of instance scores per seed (None or empty: that seed has no data here; a replicate
    averages the slots that drew a seed with data, NaN where none did)."""
    samples, slots = draws.shape
    means = np.full((len(per_seed), samples, slots), np.nan)
    for s, scores in enumerate(per_seed):
        if scores is None or len(scores) == 0:
            continue
        scores = np.asarray(scores, dtype=float)
        picks = rng.integers(0, scores.size, size=(samples, slots, scores.size))
        means[s] = scores[picks].mean(axis=-1)
    chosen = means[draws, np.arange(samples)[:, None], np.arange(slots)[None, :]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate that drew no seed with data: NaN
        return np.nanmean(chosen, axis=1)


def seed_mean(per_seed: Sequence[np.ndarray | None]) -> float:
    """Mean over the seeds with data of each seed's mean score (NaN if none has data)."""
    means = [float(np.mean(s)) for s in per_seed if s is not None and len(s)]
    return float(np.mean(means)) if means else float("nan")


def _interval(replicates: np.ndarray) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return float(lo), float(hi)


def column_replicates(
    per_column: Mapping[str, Sequence[np.ndarray | None]],
    columns: Sequence[Column],
    samples: int,
    seed: int,
) -> tuple[dict[str, tuple[float, np.ndarray]], tuple[float, np.ndarray] | None]:
    """Per column with data: (mean over seeds, replicates); and the same for ``avg`` (None without data).

    The seeds drawn are the same for every column of a replicate; the instances are drawn per column."""
    seeds = max((len(v) for v in per_column.values()), default=0)
    if seeds == 0:
        return {}, None
    draws, rng = seed_draws(seeds, samples, seed), np.random.default_rng(seed)
    out: dict[str, tuple[float, np.ndarray]] = {}
    averaged = []
    for column in columns:
        per_seed = per_column.get(column.name)
        if per_seed is None or not any(s is not None and len(s) for s in per_seed):
            continue
        out[column.name] = (seed_mean(per_seed), two_level_replicates(per_seed, draws, rng))
        if column.in_average:
            averaged.append(out[column.name])
    if not averaged:
        return out, None
    return out, (float(np.mean([m for m, _ in averaged])), np.mean([r for _, r in averaged], axis=0))


# ---------------------------------------------------------------------------- mean rows
def _scores(frame: pd.DataFrame, method: str, column: str) -> pd.Series:
    rows = frame[(frame["method"] == method) & (frame["column"] == column)]
    return rows.set_index("instance_id")["score"].astype(float)


def seed_mean_rows(
    per_instance: pd.DataFrame,
    columns: Sequence[Column],
    variant: str,
    runs: Mapping[int, str],
    samples: int,
    seed: int,
) -> list[dict]:
    """The long-table rows (columns, ``avg``, ``memory``) of a variant's mean over its seeds' runs."""
    methods = [runs[s] for s in sorted(runs)]
    name = mean_row_name(variant, len(methods))
    per_column = {
        c.name: [_scores(per_instance, m, c.name).to_numpy() for m in methods]
        for c in columns
        if ((per_instance["column"] == c.name) & per_instance["method"].isin(methods)).any()
    }
    stats, avg = column_replicates(per_column, columns, samples, seed)
    mine = per_instance[per_instance["method"].isin(methods)]
    rows = []
    for column in columns:
        n = int(mine.loc[mine["column"] == column.name, "instance_id"].nunique())
        row = {"method": name, "column": column.name, "group": column.group, "n": n}
        if column.name in stats:
            mean, replicates = stats[column.name]
            lo, hi = _interval(replicates)
            row.update(mean=mean, lo=lo, hi=hi)
        rows.append(row)
    row = {"method": name, "column": "avg", "group": "", "n": int(mine["instance_id"].nunique())}
    if avg is not None:
        lo, hi = _interval(avg[1])
        row.update(mean=avg[0], lo=lo, hi=hi)
    rows.append(row)
    memory = float(np.mean([mine.loc[mine["method"] == m, "memory_tokens"].mean() for m in methods]))
    rows.append({"method": name, "column": "memory", "group": "", "mean": memory, "n": row["n"]})
    return rows


# ---------------------------------------------------------------------------- differences
def verdict(lo: float, hi: float, seeds: int) -> str:
    """What a difference's 95 % interval says; ``seeds``: the fewest seeds on either side (0: a fixed model)."""
    if np.isnan(lo) or np.isnan(hi):
        return "no data"
    if seeds == 1:
        return ONE_SEED
    if lo > 0:
        return HIGHER
    if hi < 0:
        return LOWER
    return NO_DIFFERENCE


def _paired(per_instance: pd.DataFrame, column: str, pairs: Sequence[tuple[str, str]]) -> list[np.ndarray]:
    """Per pair (run, versus): the per-instance differences on the instances both have."""
    out = []
    for a, b in pairs:
        joined = pd.concat([_scores(per_instance, a, column), _scores(per_instance, b, column)], axis=1, join="inner")
        out.append((joined.iloc[:, 0] - joined.iloc[:, 1]).to_numpy())
    return out


def compare(
    per_instance: pd.DataFrame,
    columns: Sequence[Column],
    runs: Mapping[int, str],
    versus: str | Mapping[int, str],
    samples: int,
    seed: int,
) -> list[dict]:
    """Rows (``column``, ``seeds``, ``instances``, ``diff``, ``lo``, ``hi``, ``verdict``) of a variant's mean
    minus ``versus``: one model (the start) or another variant's runs; per column with data, then ``avg``."""
    seeds = sorted(runs)
    other = versus if isinstance(versus, Mapping) else None
    paired = other is None or sorted(other) == seeds
    fewest = len(seeds) if other is None else min(len(seeds), len(other))
    present = set(per_instance["column"])
    used = [c for c in columns if c.name in present]
    if paired:
        pairs = [(runs[s], other[s] if other is not None else str(versus)) for s in seeds]
        per_column = {c.name: _paired(per_instance, c.name, pairs) for c in used}
        stats, avg = column_replicates(per_column, used, samples, seed)
        shared = {c.name: max((len(d) for d in per_column[c.name]), default=0) for c in used}
    else:  # different seed sets: each side on its own
        assert other is not None
        sides = []
        for side in (runs, other):
            methods = [side[s] for s in sorted(side)]
            per_column = {c.name: [_scores(per_instance, m, c.name).to_numpy() for m in methods] for c in used}
            sides.append(column_replicates(per_column, used, samples, seed))
        (a_stats, a_avg), (b_stats, b_avg) = sides
        stats = {k: (a_stats[k][0] - b_stats[k][0], a_stats[k][1] - b_stats[k][1]) for k in a_stats if k in b_stats}
        avg = (a_avg[0] - b_avg[0], a_avg[1] - b_avg[1]) if a_avg is not None and b_avg is not None else None
        shared = {
            c.name: int(per_instance.loc[per_instance["column"] == c.name, "instance_id"].nunique()) for c in used
        }
    rows = []
    for name, (mean, replicates) in [*stats.items(), *([("avg", avg)] if avg is not None else [])]:
        # 12 decimals: a bound that is 0 up to float rounding reads as 0 on every machine
        lo, hi = (round(float(bound), 12) for bound in _interval(replicates))
        mean = round(float(mean), 12)
        instances = (
            sum(shared[c.name] for c in used if c.in_average and c.name in stats) if name == "avg" else shared[name]
        )
        rows.append(
            {"column": name, "seeds": len(seeds), "instances": instances, "diff": mean, "lo": lo, "hi": hi,
             "verdict": verdict(lo, hi, fewest)}
        )  # fmt: skip
    return rows


def differences_table(per_instance: pd.DataFrame, columns: Sequence[Column], samples: int, seed: int) -> pd.DataFrame:
    """Each trained variant's mean against OR-only's mean (variants other than OR-only) and the SFT start."""
    runs, start = seed_runs(per_instance), start_method(per_instance)
    rows = []
    for variant, mine in runs.items():
        name = mean_row_name(variant, len(mine))
        against: list[tuple[str, str | Mapping[int, str]]] = []
        if variant != REFERENCE_VARIANT and REFERENCE_VARIANT in runs:
            reference = runs[REFERENCE_VARIANT]
            against.append((mean_row_name(REFERENCE_VARIANT, len(reference)), reference))
        if start is not None:
            against.append((start, start))
        for label, versus in against:
            for row in compare(per_instance, columns, mine, versus, samples, seed):
                rows.append({"variant": name, "versus": label, **row})
    return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)


def verdict_sentences(differences: pd.DataFrame, benchmark: str = "") -> list[str]:
    """One sentence per variant from the ``avg`` rows of :func:`differences_table`, e.g. ``finemem (mean of 3
    seeds) scores higher than sft_manager (+0.052 [+0.021, +0.080]) and no differently from ...``."""
    if differences.empty:
        return []
    avg = differences[differences["column"] == "avg"]
    where = f"On {benchmark} (avg), " if benchmark else ""
    sentences = []
    for variant, rows in avg.groupby("variant", sort=False):
        parts = []
        for row in rows.itertuples():
            numbers = f"{row.diff:+.3f} [{row.lo:+.3f}, {row.hi:+.3f}]"
            parts.append(
                {
                    HIGHER: f"higher than {row.versus} ({numbers})",
                    LOWER: f"lower than {row.versus} ({numbers})",
                    NO_DIFFERENCE: f"no differently from {row.versus} ({numbers}: the interval spans 0)",
                }.get(row.verdict, f"{numbers} against {row.versus} ({row.verdict})")
            )
        sentences.append(f"{where}{variant} scores {' and '.join(parts)}.")
    return sentences
