"""Episodes as tables, for notebooks: what each step did, and what each global question retrieved."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finemem_lib.rewards import eara
from finemem_lib.rollout import Episode


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
