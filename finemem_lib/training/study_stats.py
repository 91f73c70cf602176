"""Statistics of a study: bootstrap intervals over instances and seeds, mean curves, the plateau rule, efficiency.

Held-out scores are ``[seeds, instances]`` matrices per variant; every bootstrap draw resamples the
instances once (shared by all variants: differences are paired by instance) and each variant's seeds
independently (runs of different variants are not paired).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def score_matrix(heldout: pd.DataFrame, column: str = "score") -> tuple[np.ndarray, list[int], list[str]]:
    """``[seeds, instances]`` of one variant's per-instance held-out values (rows: seeds, columns: instances)."""
    pivot = heldout.pivot_table(index="seed", columns="instance_id", values=column, aggfunc="mean")
    return pivot.to_numpy(dtype=np.float64), list(pivot.index), list(pivot.columns)


def bootstrap_means(
    matrices: Mapping[str, np.ndarray],
    reference: str | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean over seeds and instances per variant with a bootstrap interval; and the paired difference to ``reference``.

    Every matrix is ``[seeds, instances]`` over the SAME instance columns. Each bootstrap draw
    resamples the instances once (shared by all variants: the difference is paired by instance)
    and each variant's seeds independently (runs of different variants are not paired).
    """
    if not matrices:
        return pd.DataFrame()
    widths = {m.shape[1] for m in matrices.values()}
    if len(widths) != 1:
        raise ValueError(f"every variant must be scored on the same instances, got widths {sorted(widths)}")
    n_inst = widths.pop()
    rng = np.random.default_rng(seed)
    draws = {k: np.empty(n_boot) for k in matrices}
    for b in range(n_boot):
        cols = rng.integers(0, n_inst, n_inst)
        for key, m in matrices.items():
            rows = rng.integers(0, m.shape[0], m.shape[0])
            draws[key][b] = m[np.ix_(rows, cols)].mean()
    alpha = (1 - level) / 2
    out = []
    for key, m in matrices.items():
        row = {"variant": key, "seeds": m.shape[0], "instances": n_inst, "mean": float(m.mean())}
        row["lo"], row["hi"] = (float(q) for q in np.quantile(draws[key], [alpha, 1 - alpha]))
        if reference is not None and reference in matrices:
            diff = draws[key] - draws[reference]
            row["diff"] = float(m.mean() - matrices[reference].mean())
            row["diff_lo"], row["diff_hi"] = (float(q) for q in np.quantile(diff, [alpha, 1 - alpha]))
        out.append(row)
    return pd.DataFrame(out)


def mean_curve(curves: pd.DataFrame, column: str = "heldout/qa") -> pd.DataFrame:
    """Per variant and step: mean and standard error over seeds of a logged metric."""
    frame = curves.dropna(subset=[column])
    grouped = frame.groupby(["variant", "step"])[column]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["se"] = out["std"].fillna(0.0) / np.sqrt(out["count"])
    return out


def plateau(curve: pd.DataFrame, tolerance: float = 0.01, window: int = 2) -> dict[str, Any]:
    """Has a mean curve stopped rising? Yes when its last ``window`` evaluations gain less than ``tolerance``
    over the best value before them (a rise smaller than that is within the held-out noise of the miniature)."""
    values = curve.sort_values("step")["mean"].to_numpy()
    if len(values) <= window:
        return {"stopped_rising": False, "gain_last": float("nan"), "reason": "too few evaluations"}
    before = float(values[:-window].max())
    gain = float(values[-window:].max() - before)
    return {"stopped_rising": gain < tolerance, "gain_last": gain, "reason": f"gain over last {window} evals"}


def _first_step(steps: np.ndarray, means: np.ndarray, target: float) -> float:
    """The first of ``steps`` whose mean is at or above ``target`` (NaN: never; NaN means are skipped)."""
    hit = np.flatnonzero(means >= target)
    return float(steps[hit[0]]) if len(hit) else np.nan


def learning_efficiency(
    curves: pd.DataFrame,
    reference: str = "or_only",
    column: str = "heldout/qa",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per variant, the first step at which its mean held-out curve reaches the reference's final mean (NaN: never),
    with a bootstrap interval over seeds.

    Each draw resamples every variant's seeds (the reference's too, so its final mean, the target, moves with
    them) and finds the first step again. ``lo``/``hi`` are percentiles of the draws that reached the target,
    ``reached`` the share of draws that did (a variant that never reaches it in a draw has no step there).
    """
    columns = ["variant", "target", "first_step", "lo", "hi", "reached", "seeds"]
    frame = curves.dropna(subset=[column])
    tables = {
        v: f.pivot_table(index="seed", columns="step", values=column, aggfunc="mean")
        for v, f in frame.groupby("variant", sort=False)
    }
    if reference not in tables:
        return pd.DataFrame(columns=columns)
    ref_values = tables[reference].to_numpy(dtype=np.float64)
    target = float(np.nanmean(ref_values, axis=0)[-1])
    rng = np.random.default_rng(seed)
    ref_draws = rng.integers(0, len(ref_values), (n_boot, len(ref_values)))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a step no drawn seed logged has no mean
        drawn_targets = np.nanmean(ref_values[ref_draws], axis=1)[:, -1]
        alpha = (1 - level) / 2
        out = []
        for variant, table in tables.items():
            values, steps = table.to_numpy(dtype=np.float64), table.columns.to_numpy(dtype=np.float64)
            rows = ref_draws if variant == reference else rng.integers(0, len(values), (n_boot, len(values)))
            means = np.nanmean(values[rows], axis=1)  # [n_boot, steps]
            firsts = np.array([_first_step(steps, m, t) for m, t in zip(means, drawn_targets, strict=True)])
            reached = firsts[~np.isnan(firsts)]
            lo, hi = (float(q) for q in np.quantile(reached, [alpha, 1 - alpha])) if len(reached) else (np.nan,) * 2
            out.append(
                {
                    "variant": variant,
                    "target": target,
                    "first_step": _first_step(steps, np.nanmean(values, axis=0), target),
                    "lo": lo,
                    "hi": hi,
                    "reached": float(len(reached) / n_boot),
                    "seeds": len(values),
                }
            )
    return pd.DataFrame(out, columns=columns)
