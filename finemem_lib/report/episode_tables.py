"""Episodes as tables, for notebooks: what each step did, and what each global question retrieved."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.core.rewards import eara
from finemem_lib.core.sentences import split_sentences
from finemem_lib.data.instance import Instance
from finemem_lib.episodes.advantages import episode_group_advantages
from finemem_lib.episodes.rollout import Episode


def step_table(episode: Episode) -> pd.DataFrame:
    """One row per chunk step: operations, validity, memory size and the step's reward inputs."""
    N, r_chunk = episode.N, episode.r_chunk
    rows = []
    for record in episode.steps:
        kinds = [op.kind.value for op in record.operations]
        rows.append(
            {
                "step": record.step,
                "ops": ", ".join(kinds) or "-",
                "emitted": record.n_emitted,
                "executed": record.n_executed,
                "r_fmt": record.format_score,
                "memory_items": record.memory_items,
                "memory_tokens": record.memory_tokens,
                "chunk_qas": len(record.chunk_correct),
                "r_chunk": r_chunk[record.step],
                "N_t": N[record.step],
            }
        )
    return pd.DataFrame(rows)


def retrieval_table(episode: Episode) -> pd.DataFrame:
    """One row per global question: the answer, its score, and the retrieved items with their writer steps."""
    memory = episode.memory
    rows = []
    for result in episode.global_results:
        contents = [memory.get(i).content if memory is not None and memory.get(i) else "?" for i in result.evidence_ids]
        rows.append(
            {
                "question": result.question,
                "gold": " | ".join(result.golds),
                "prediction": result.prediction,
                "score": result.score,
                "evidence_steps": list(result.evidence_steps),
                "evidence": " || ".join(contents),
            }
        )
    return pd.DataFrame(rows)


def reward_components(episode: Episode, betas: tuple[float, ...] = (0.0, 0.5, 1.0)) -> pd.DataFrame:
    """Per step: r_chunk, N_t, r_fmt and r_EARA for several beta values (columns ``eara_beta=...``)."""
    frame = pd.DataFrame({"r_chunk": episode.r_chunk, "N_t": episode.N, "r_fmt": episode.r_fmt})
    for beta in betas:
        frame[f"eara_beta={beta}"] = eara(episode.r_global, episode.N, beta)
    frame.index.name = "step"
    return frame


def conservation_gap(episode: Episode, beta: float) -> float:
    """|sum_t r_EARA(t) - r_global|: zero whenever every global question retrieved evidence."""
    return float(abs(np.sum(eara(episode.r_global, episode.N, beta)) - episode.r_global))


def credit_table(
    episode: Episode, beta: float | None = None, w1: float | None = None, w2: float | None = None
) -> pd.DataFrame:
    """Per step, the parts of r_t: the global reward as OR-only gives it (the same on every step) and as EARA
    routes it, the chunk reward w1·r_chunk, the format reward and the compression reward w2·r_comp.

    Knobs left None take :class:`~finemem_lib.core.reward_spec.RewardSpec`'s values."""
    spec = RewardSpec.of(RewardSpec(), beta=beta, w1=w1, w2=w2)
    beta, w1, w2 = spec.beta, spec.w1, spec.w2
    T = episode.T
    frame = pd.DataFrame(
        {
            "r_global (OR-only, +CSR)": np.full(T, episode.r_global),
            "r_EARA (+EARA, Fine-Mem)": eara(episode.r_global, episode.N, beta),
            "w1·r_chunk (+CSR, Fine-Mem)": w1 * episode.r_chunk,
            "r_fmt (all)": episode.r_fmt,
            "w2·r_comp (all)": np.full(T, w2 * episode.r_comp),
        }
    )
    frame.index.name = "step"
    return frame


def advantage_table(
    group: list[Episode] | tuple[Episode, ...],
    variants: tuple[str, ...] = ("or_only", "finemem"),
    beta: float | None = None,
    w1: float | None = None,
    w2: float | None = None,
    mode: str | None = None,
) -> pd.DataFrame:
    """GRPO advantages A_t of the G rollouts of one instance, one row per (variant, rollout), a column per step."""
    rows = []
    for variant in variants:
        advantages = episode_group_advantages(group, variant, beta, w1, w2, mode)
        for g, episode in enumerate(group):
            rows.append(
                {"variant": variant, "rollout": g, "r_global": episode.r_global}
                | {f"A_{t}": a for t, a in enumerate(advantages[g])}
            )
    return pd.DataFrame(rows).set_index(["variant", "rollout"])


def stale_items(episode: Episode, instance: Instance) -> pd.DataFrame:
    """Items of the final memory that share a fact key (e.g. ``"Ada Brook|city"``) with another item: a stale
    value kept beside its update. Needs the synthetic sources' sentence metadata; empty otherwise."""
    roles = instance.metadata.get("sentences") or []
    by_text = {}
    for t, chunk in enumerate(instance.chunks):
        for i, sentence in enumerate(split_sentences(chunk)):
            if t < len(roles) and i < len(roles[t]) and roles[t][i].get("key"):
                by_text[sentence.strip()] = (roles[t][i]["key"], roles[t][i].get("value"), t)
    rows = []
    for item in episode.memory.items if episode.memory is not None else []:
        if item.content.strip() in by_text:
            key, value, source_step = by_text[item.content.strip()]
            rows.append(
                {"key": key, "item": item.id, "value": value, "from_chunk": source_step, "content": item.content}
            )
    frame = pd.DataFrame(rows, columns=["key", "item", "value", "from_chunk", "content"])
    if frame.empty:
        return frame
    frame = frame[frame.groupby("key")["key"].transform("size") > 1].sort_values(["key", "from_chunk"])
    latest = frame.groupby("key")["from_chunk"].transform("max")
    return frame.assign(current=frame["from_chunk"] == latest).reset_index(drop=True)
