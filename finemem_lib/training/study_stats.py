"""Statistics of a study: bootstrap intervals over instances and seeds, mean curves, the plateau rule, efficiency.

Held-out scores are ``[seeds, instances]`` matrices per variant; every bootstrap draw resamples the
instances once (shared by all variants: differences are paired by instance) and each variant's seeds
independently (runs of different variants are not paired).
"""

from __future__ import annotations

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


def learning_efficiency(curves: pd.DataFrame, reference: str = "or_only", column: str = "heldout/qa") -> pd.DataFrame:
    """Per variant, the first step at which its mean held-out curve reaches the reference's final mean (NaN: never)."""
    mean = mean_curve(curves, column)
    ref = mean[mean["variant"] == reference].sort_values("step")
    if ref.empty:
        return pd.DataFrame(columns=["variant", "target", "first_step"])
    target = float(ref["mean"].iloc[-1])
    rows = []
    for variant, frame in mean.groupby("variant", sort=False):
        hit = frame.sort_values("step").query("mean >= @target")
        rows.append(
            {"variant": variant, "target": target, "first_step": float(hit["step"].iloc[0]) if len(hit) else np.nan}
        )
    return pd.DataFrame(rows)
