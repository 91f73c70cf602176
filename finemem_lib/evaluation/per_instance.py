"""Per-instance evaluation in memory (no records): a manager's greedy episode and the baselines, same questions.

Every method gives one row per instance: its mean score over all global questions and, where the
method builds a memory, the memory length in tokens. :func:`summary_table` averages per raw source.
Notebook 02 uses these; the recorded, resumable evaluation in the papers' layouts is
:func:`finemem_lib.evaluation.runner.run_evaluation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from finemem_lib.agents.policy import ManagerPolicy
from finemem_lib.agents.reasoner import Reasoner
from finemem_lib.core.tokens import TokenCounter, regex_token_count, token_counter_from_config
from finemem_lib.data.instance import Instance
from finemem_lib.episodes.baselines import BASELINES, run_baseline
from finemem_lib.episodes.qa import mean_score, qa_options_from_config
from finemem_lib.episodes.rollout import settings_from_config
from finemem_lib.evaluation.memory_length import baseline_memory_tokens
from finemem_lib.evaluation.methods import run_manager
from finemem_lib.infra.progress import progress

CLASSIC_BASELINES = tuple(name for name in BASELINES if name != "closed_book")


def evaluate_manager(
    name: str,
    policy: ManagerPolicy,
    instances: Sequence[Instance],
    reasoner: Reasoner,
    cfg: Mapping[str, Any],
    seed: int = 0,
) -> pd.DataFrame:
    """One evaluation episode per instance (``rollout.eval_sampling``, greedy by default), all questions.

    The episodes are :func:`finemem_lib.evaluation.methods.run_manager`'s (the recorded evaluation's),
    one row per instance.
    """
    scorer = settings_from_config(dict(cfg), training=False).qa_options.scorer
    counter = token_counter_from_config(cfg, policy.tokenizer)
    results = run_manager(
        policy, instances, reasoner, cfg, seed=seed, token_counter=counter, progress_desc=f"{name}: held-out episodes"
    )
    rows = [
        {
            "method": name,
            "instance_id": result.instance.id,
            "source": result.instance.source,
            "scorer": scorer.rule_name(result.instance.source),
            "score": mean_score(result.results),
            "memory_tokens": result.memory_tokens,
            "memory_items": result.memory_items,
            "format_rate": result.extra["format_rate"],
        }
        for result in results
    ]
    return pd.DataFrame(rows)


def evaluate_baselines(
    instances: Sequence[Instance],
    reasoner: Reasoner,
    cfg: Mapping[str, Any],
    names: Sequence[str] = CLASSIC_BASELINES,
    token_counter: TokenCounter = regex_token_count,
) -> pd.DataFrame:
    """Every baseline on the same instances and questions."""
    rows = []
    scorer = qa_options_from_config(cfg).scorer
    for name in progress(names, "baselines"):
        results = run_baseline(name, instances, reasoner, cfg, token_counter)
        for inst, answered in zip(instances, results, strict=True):
            memory_tokens = baseline_memory_tokens(name, inst, answered, cfg, token_counter)
            rows.append(
                {
                    "method": name,
                    "instance_id": inst.id,
                    "source": inst.source,
                    "scorer": scorer.rule_name(inst.source),
                    "score": mean_score(answered),
                    "memory_tokens": memory_tokens,
                }
            )
    return pd.DataFrame(rows)


def scorer_row(frame: pd.DataFrame) -> pd.Series:
    """Which scorer produced each source column of :func:`summary_table` (e.g. a table caption or footer row)."""
    if "scorer" not in frame:
        raise ValueError("the frame has no 'scorer' column (made by evaluate_manager / evaluate_baselines)")
    return frame.groupby("source")["scorer"].agg(lambda s: " | ".join(sorted(set(s))))


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean score per method and source, with the average over sources and the mean memory length."""
    scores = frame.pivot_table(index="method", columns="source", values="score", aggfunc="mean")
    scores["avg"] = scores.mean(axis=1)
    scores["memory_tokens"] = frame.groupby("method")["memory_tokens"].mean()
    return scores.sort_values("avg", ascending=False).round(3)
