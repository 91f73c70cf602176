"""Figure of notebook 05's credit-scheme comparison: credit quality per scheme and paired differences."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from finemem_lib.report.plots import save

HOUSE = ("or_only", "csr", "eara", "finemem")


def plot_credit_schemes(
    quality: pd.DataFrame,
    differences: pd.DataFrame,
    references: Sequence[str] = ("or_only", "finemem"),
    path: str | Path | None = None,
) -> plt.Figure:
    """Left: Spearman(A_t, v_t) per variant and scheme with its interval (house variants grey).
    Right: each scheme minus each reference on the same steps, with its paired interval.

    ``quality``: rows of one source (variant, spearman, lo, hi, n_groups); ``differences``: variant,
    reference, diff, lo, hi.
    """
    frame = quality.reset_index(drop=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1.2, 1]})
    x = np.arange(len(frame))
    schemes = [v for v in frame["variant"] if v not in HOUSE]
    palette = dict(zip(schemes, sns.color_palette("deep", len(schemes)), strict=True))
    colours = [palette.get(v, (0.6, 0.6, 0.6)) for v in frame["variant"]]
    left.bar(x, frame["spearman"], color=colours, alpha=0.8)
    left.errorbar(x, frame["spearman"], yerr=[frame["spearman"] - frame["lo"], frame["hi"] - frame["spearman"]],
                  fmt="none", ecolor="black", capsize=4)  # fmt: skip
    left.axhline(0, color="grey", lw=1)
    left.set_xticks(x, frame["variant"], rotation=30, ha="right")
    left.set_ylabel("Spearman(A_t, leave-one-step-out value)")
    n = int(frame["n_groups"].iloc[0]) if len(frame) else 0
    left.set_title(f"credit quality ({n} groups, 95% bootstrap over groups)")
    diffs = differences[differences["variant"].isin(schemes)]
    offsets = np.linspace(-0.15, 0.15, max(len(references), 1))
    markers = ("o", "s", "^", "D")
    for k, ref in enumerate(references):
        part = diffs[diffs["reference"] == ref].set_index("variant").reindex(schemes)
        y = np.arange(len(schemes)) + offsets[k]
        right.errorbar(part["diff"], y, xerr=[part["diff"] - part["lo"], part["hi"] - part["diff"]], fmt=markers[k % 4],
                       capsize=3, label=f"minus {ref}")  # fmt: skip
    right.axvline(0, color="grey", lw=1)
    right.set_yticks(np.arange(len(schemes)), schemes)
    right.invert_yaxis()
    right.set_xlabel("difference in Spearman (paired bootstrap, 95%)")
    right.set_title("each scheme against OR-only and Fine-Mem")
    right.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return save(fig, path)
