"""Figures shared by the notebooks (seaborn on matplotlib); each returns its Figure and can save it.

One colour means one thing everywhere: :data:`SPLIT_COLOURS` (train/test), :data:`VARIANT_COLOURS` (the
four reward variants, also in notebook 03's figures) and :func:`source_colours`. Every figure has a title,
axis labels in words and a one-line caption under it (:func:`caption`) saying what to see.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from finemem_lib.core.reward_spec import SCHEME_TABLE, VARIANT_TABLE
from finemem_lib.infra import atomic

sns.set_theme(style="whitegrid", context="notebook")

PNG_METADATA = {"Software": None}  # no matplotlib version stamp: the same figure gives the same bytes
_PALETTE = sns.color_palette("colorblind")
SPLIT_ORDER = ("train", "test")
SPLIT_COLOURS = {"train": _PALETTE[0], "test": _PALETTE[1]}
# The reward variants as the variant table gives them (order, display name, colour); credit schemes keep theirs.
VARIANT_ORDER = tuple(v.name for v in VARIANT_TABLE)
VARIANT_LABELS = {v.name: v.label for v in (*VARIANT_TABLE, *SCHEME_TABLE)}
VARIANT_COLOURS = {v.name: v.colour for v in (*VARIANT_TABLE, *SCHEME_TABLE)}
SFT_COLOUR = "#555555"
_SOURCE_PALETTE = sns.color_palette("Set2")


def source_colours(sources: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """A fixed colour per data source (sorted names, so the same source gets the same colour in every figure)."""
    return {s: _SOURCE_PALETTE[i % len(_SOURCE_PALETTE)] for i, s in enumerate(sorted(set(sources)))}


def caption(fig: plt.Figure, text: str) -> plt.Figure:
    """A one-line caption under the figure (kept when saved with ``bbox_inches='tight'``); lays the panels out first
    so the caption never sits on an axis label."""
    fig.tight_layout()
    fig.text(0.01, -0.01, text, ha="left", va="top", fontsize=10, color="#333333", wrap=True)
    return fig


def save(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    """Save ``fig`` as PNG when a path is given (folders are created; written atomically)."""
    if path is not None:
        atomic.save_figure(fig, path, dpi=120, bbox_inches="tight", metadata=PNG_METADATA)
    return fig


def _split_order(frame: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(frame["split"]))
    return [s for s in SPLIT_ORDER if s in present] + [s for s in present if s not in SPLIT_ORDER]


def _split_palette(order: Sequence[str]) -> dict[str, tuple]:
    extra = iter(_PALETTE[5:])
    return {s: SPLIT_COLOURS.get(s) or next(extra) for s in order}


def _figure_legend(fig: plt.Figure, ax: plt.Axes, title: str | None = None) -> None:
    """Move ``ax``'s legend to one legend for the whole figure, above the panels on the right."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    fig.legend(handles, labels, title=title, loc="upper right", bbox_to_anchor=(1.0, 1.08), ncol=len(labels))


@contextlib.contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for a block (a plotting call that jitters), then restore its state."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# ---------------------------------------------------------------------------- notebook 01
def plot_data_sizes(instances: pd.DataFrame, chunks: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Chunks per instance, tokens per instance and tokens per chunk, per source; colour = split everywhere."""
    order = _split_order(instances)
    palette = _split_palette(order)
    sources = sorted(instances["source"].unique())
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    with seeded_numpy(0):  # seaborn draws the strip plot's jitter from numpy's global generator
        sns.stripplot(
            data=instances, x="source", y="chunks", hue="split", hue_order=order, order=sources, palette=palette,
            dodge=True, jitter=0.15, size=5, ax=axes[0],
        )  # fmt: skip
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    lo, hi = instances["chunks"].min(), instances["chunks"].max()
    axes[0].set_ylim(lo - 1, hi + 1)
    axes[0].set(title="Chunks per instance", xlabel="source", ylabel="chunks in the instance")
    sns.boxplot(
        data=instances, x="source", y="tokens", hue="split", hue_order=order, order=sources, palette=palette,
        saturation=1, ax=axes[1],
    )  # fmt: skip
    axes[1].set(title="Tokens per instance", xlabel="source", ylabel="tokens (regex count)")
    sns.boxplot(
        data=chunks, x="source", y="tokens", hue="split", hue_order=order, order=sources, palette=palette,
        saturation=1, ax=axes[2],
    )  # fmt: skip
    axes[2].set(title="Tokens per chunk", xlabel="source", ylabel="tokens (regex count)")
    for ax in axes[1:]:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    _figure_legend(fig, axes[0], "split")
    fig.suptitle("How long the inputs are", x=0.01, ha="left", y=1.08, fontsize=14)
    fig.tight_layout()
    caption(
        fig, "Each instance is cut into chunks the manager reads one at a time; train and test have the same shape."
    )
    return save(fig, path)


def plot_questions(instances: pd.DataFrame, chunks: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Global questions per source and the number of chunk QAs per chunk (CSR data); colour = split."""
    order = _split_order(instances)
    palette = _split_palette(order)
    sources = sorted(instances["source"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    per_source = instances.groupby(["split", "source"], as_index=False)["questions"].mean()
    sns.barplot(
        data=per_source, x="source", y="questions", hue="split", hue_order=order, order=sources, palette=palette,
        saturation=1, ax=axes[0],
    )  # fmt: skip
    axes[0].set(title="Global questions per instance", xlabel="source", ylabel="questions (mean per instance)")
    sns.histplot(
        data=chunks, x="chunk_qas", hue="split", hue_order=order, palette=palette, discrete=True, multiple="dodge",
        stat="percent", common_norm=False, shrink=0.8, alpha=1.0, ax=axes[1],
    )  # fmt: skip
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set(title="Chunk QAs per chunk (the CSR data)", xlabel="chunk QAs about the chunk", ylabel="% of chunks")
    if axes[1].get_legend() is not None:
        axes[1].get_legend().remove()
    _figure_legend(fig, axes[0], "split")
    fig.suptitle("What is asked", x=0.01, ha="left", y=1.08, fontsize=14)
    fig.tight_layout()
    caption(fig, "Global questions are asked after the last chunk; chunk QAs are asked right after their own chunk.")
    return save(fig, path)


# ---------------------------------------------------------------------------- notebook 02
def plot_memory_growth(steps: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Items and tokens in memory after each chunk step (from :func:`finemem_lib.report.episode_tables.step_table`)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.3), sharex=True)
    for ax, column, label, colour in (
        (axes[0], "memory_items", "items in memory", _PALETTE[0]),
        (axes[1], "memory_tokens", "tokens in memory", _PALETTE[2]),
    ):
        ax.plot(steps["step"], steps[column], marker="o", color=colour)
        for x, y in zip(steps["step"], steps[column], strict=True):
            ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=9)
        ax.set(xlabel="chunk step t", ylabel=label, title=label.capitalize() + " after each step")
        ax.set_ylim(bottom=0, top=max(1, steps[column].max()) * 1.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    caption(fig, "A flat stretch is a step that stored nothing; a jump is a chunk whose sentences the manager kept.")
    return save(fig, path)


def evidence_matrix(evidence_steps: Sequence[Sequence[int]], T: int) -> np.ndarray:
    """``[n, T]`` counts: how many items retrieved for query j were written at step t."""
    matrix = np.zeros((len(evidence_steps), T))
    for j, steps in enumerate(evidence_steps):
        for step in steps:
            matrix[j, step] += 1
    return matrix


def plot_evidence_heatmap(
    evidence_steps: Sequence[Sequence[int]],
    T: int,
    scores: Sequence[float] | None = None,
    path: str | Path | None = None,
) -> plt.Figure:
    """Queries x writer steps heatmap of the retrieved evidence (row labels carry the query score)."""
    matrix = evidence_matrix(evidence_steps, T)
    labels = [f"Q{j}" + (f" (score {scores[j]:.2f})" if scores is not None else "") for j in range(len(matrix))]
    fig, ax = plt.subplots(figsize=(max(6.5, 2.4 + 0.6 * T), 1.4 + 0.35 * max(1, len(matrix))))
    sns.heatmap(
        matrix,
        annot=True,
        fmt=".0f",
        cbar=False,
        cmap="Blues",
        ax=ax,
        yticklabels=labels,
        xticklabels=[f"t={t}" for t in range(T)],
    )
    ax.set_xlabel("chunk step that wrote the retrieved item")
    ax.set_ylabel("global question")
    ax.set_title("Which step wrote each question's evidence")
    caption(fig, "EARA credits a step with the score of the questions whose retrieved items it wrote.")
    return save(fig, path)


def plot_step_series(
    series: Mapping[str, Sequence[float]],
    title: str,
    ylabel: str = "reward",
    path: str | Path | None = None,
    colours: Mapping[str, object] | None = None,
    ax: plt.Axes | None = None,
    text: str | None = None,
) -> plt.Figure:
    """Grouped bars: one group per step, one bar per named series (e.g. beta values or reward variants)."""
    frame = pd.DataFrame(
        [
            {"step": t, "series": name, "value": float(v)}
            for name, values in series.items()
            for t, v in enumerate(values)
        ]
    )
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 3.5))
    palette = dict(colours) if colours else None
    sns.barplot(frame, x="step", y="value", hue="series", hue_order=list(series), palette=palette, saturation=1, ax=ax)
    ax.set_title(title)
    ax.set_xlabel("chunk step t")
    ax.set_ylabel(ylabel)
    ax.legend(title=None, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if text:
        caption(fig, text)
    return save(fig, path)


def plot_reward_components(components: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """r_chunk on its own panel; N_t and r_EARA at each β on another (they live on a different scale)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
    plot_step_series(
        {"r_chunk": components["r_chunk"]},
        "CSR: chunk QA accuracy on M_t",
        ylabel="r_chunk (share answered)",
        colours={"r_chunk": _PALETTE[2]},
        ax=axes[0],
    )
    axes[0].get_legend().remove()
    axes[0].set_ylim(0, 1.05)
    betas = [c for c in components.columns if c.startswith("eara_beta=")]
    named = {"N_t (evidence share)": components["N_t"]}
    named.update({f"r_EARA, β={c.split('=', 1)[1]}": components[c] for c in betas})
    blues = sns.color_palette("Blues", len(betas) + 1)[1:]
    colours = {"N_t (evidence share)": _PALETTE[1], **{name: blues[i] for i, name in enumerate(list(named)[1:])}}
    plot_step_series(named, "EARA: the global score routed to steps", ylabel="share of r_global", colours=colours,
                     ax=axes[1])  # fmt: skip
    fig.tight_layout()
    caption(fig, "β = 0 spreads r_global evenly over the steps; β = 1 gives each step exactly its evidence share N_t.")
    return save(fig, path)


def plot_reward_variants(
    variants: Mapping[str, Sequence[float]], shared: Sequence[float], path: str | Path | None = None
) -> plt.Figure:
    """The four variants' step rewards without the part they all share (r_fmt + w2·r_comp), shown apart."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6), gridspec_kw={"width_ratios": [1, 1.8]})
    plot_step_series(
        {"r_fmt(t) + w2·r_comp": shared},
        "Shared by every variant",
        ylabel="reward",
        colours={"r_fmt(t) + w2·r_comp": "#999999"},
        ax=axes[0],
    )
    axes[0].get_legend().remove()
    own = {VARIANT_LABELS.get(v, v): np.asarray(r, float) - np.asarray(shared, float) for v, r in variants.items()}
    colours = {VARIANT_LABELS.get(v, v): VARIANT_COLOURS.get(v, "#333333") for v in variants}
    plot_step_series(own, "What each variant adds on top", ylabel="r_t − shared part", colours=colours, ax=axes[1])
    fig.tight_layout()
    caption(fig, "OR-only and +CSR give every step the same r_global; +EARA and Fine-Mem give each step its own share.")
    return save(fig, path)
