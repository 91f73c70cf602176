"""Credit quality, measured directly: does a variant's advantage A_t rank steps by what they were worth?

The true marginal value of step t in an episode is how much the final score drops when the items
that step wrote are taken out of the final memory (leave-one-step-out):

    v_t = r_global(M_T) - r_global(M_T without {m : phi(m) = t})

where phi(m) is the step that last wrote item m (the memory's provenance, the same phi as EARA's).
The reader re-answers the questions over the reduced memory; nothing is generated again. A step
whose items are all gone by the end (deleted or overwritten) or that wrote nothing has v_t = 0.

Per reward variant, the credit quality is the Spearman correlation between A_t (the GRPO advantage
every token of step t's completion gets in training) and v_t, pooled over the steps of all
rollouts of many groups, with a bootstrap interval that resamples whole groups (steps of one
group are not independent). Everything here is a pure function over finished episodes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from finemem_lib.agents.reasoner import Reasoner
from finemem_lib.core import rewards
from finemem_lib.core.reward_spec import VARIANTS, RewardSpec
from finemem_lib.data.instance import QA
from finemem_lib.episodes.advantages import group_step_rewards
from finemem_lib.episodes.qa import MemoryQuestions, answer_over_memories, mean_score
from finemem_lib.episodes.rollout import Episode


@dataclass(frozen=True)
class CreditVariant:
    """A way of computing A_t, under a name: a reward spec (variant, knobs, group normalisation).

    The name is the variant's own for the profile's settings, or an ablation point's (``finemem_beta0``).
    """

    name: str
    spec: RewardSpec = field(default_factory=RewardSpec)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, **self.spec.to_dict()}


def profile_variants(cfg: Mapping, names: Sequence[str] = VARIANTS) -> list[CreditVariant]:
    """The reward variants at the profile's ``rewards`` knobs (beta, w1, w2, group_mode)."""
    spec = RewardSpec.from_config(cfg, variant=VARIANTS[0])
    return [CreditVariant(name, spec.with_variant(name)) for name in names]


def episode_questions(episode: Episode) -> tuple[QA, ...]:
    """The global questions the episode was scored on, as QAs."""
    return tuple(QA(r.question, tuple(r.golds)) for r in episode.global_results)


def leave_one_step_out(
    episode: Episode, reasoner: Reasoner, top_k: int = 2, questions: Sequence[QA] | None = None
) -> tuple[float, np.ndarray]:
    """``(r_global(M_T), v [T])``: the score on the final memory and each step's leave-one-step-out value.

    ``questions`` defaults to those the episode was scored on; pass all of the instance's questions
    for the value of each step to the whole instance. All reduced memories go to the reasoner in one call.
    """
    if episode.memory is None:
        raise ValueError(f"episode {episode.instance_id}/{episode.rollout} has no final memory (not rolled out?)")
    qas = tuple(episode_questions(episode) if questions is None else questions)
    items = list(episode.memory.items)
    T = episode.T
    writers = [int(item.step) for item in items]
    for step in writers:
        if not 0 <= step < T:
            raise ValueError(f"episode {episode.instance_id}: item written at step {step}, outside 0..{T - 1}")
    wrote = sorted(set(writers))
    tasks = [MemoryQuestions(items, qas, episode.source)]
    tasks += [
        MemoryQuestions([m for m, w in zip(items, writers, strict=True) if w != t], qas, episode.source) for t in wrote
    ]
    answered = answer_over_memories(tasks, reasoner, top_k)
    full = mean_score(answered[0])
    values = np.zeros(T, dtype=np.float64)
    for t, results in zip(wrote, answered[1:], strict=True):
        values[t] = full - mean_score(results)
    return full, values


def group_advantage_matrices(group: Sequence[Episode], variants: Sequence[CreditVariant]) -> dict[str, np.ndarray]:
    """``{variant name: [G, T] A_t}`` of one group under each variant."""
    out = {}
    for v in variants:
        out[v.name] = rewards.group_advantages(group_step_rewards(group, v.spec), v.spec)
    return out


def credit_steps(
    groups: Sequence[Sequence[Episode]],
    reasoner: Reasoner,
    variants: Sequence[CreditVariant],
    top_k: int = 2,
    questions: Sequence[Sequence[QA] | None] | None = None,
    group_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per (group, rollout, step): the marginal value ``v`` and ``A_<variant>`` of every variant.

    ``questions[i]`` are the questions the marginal values of group i are measured on (None: those its
    episodes were scored on). Also kept: the step's r_global, N_t and r_chunk, and ``wrote`` (items of
    the final memory written at that step).
    """
    if questions is not None and len(questions) != len(groups):
        raise ValueError(f"questions has {len(questions)} entries for {len(groups)} groups")
    rows = []
    for i, group in enumerate(groups):
        gid = group_ids[i] if group_ids is not None else str(i)
        adv = group_advantage_matrices(group, variants)
        for g, episode in enumerate(group):
            full, values = leave_one_step_out(episode, reasoner, top_k, questions[i] if questions else None)
            writers = [int(item.step) for item in episode.memory.items]
            N, r_chunk = episode.N, episode.r_chunk
            for t in range(episode.T):
                row = {
                    "group": gid,
                    "source": episode.source,
                    "rollout": g,
                    "step": t,
                    "value": values[t],
                    "r_global_measured": full,
                    "r_global": episode.r_global,
                    "N": N[t],
                    "r_chunk": r_chunk[t],
                    "wrote": writers.count(t),
                }
                for name, matrix in adv.items():
                    row[f"A_{name}"] = matrix[g, t]
                rows.append(row)
    return pd.DataFrame(rows)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    rx = pd.Series(np.asarray(x, dtype=np.float64)).rank(method="average").to_numpy()
    ry = pd.Series(np.asarray(y, dtype=np.float64)).rank(method="average").to_numpy()
    if len(rx) != len(ry):
        raise ValueError(f"x and y differ in length ({len(rx)} vs {len(ry)})")
    if len(rx) < 2 or np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def group_resamples(by_group: Sequence[np.ndarray], n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``n_boot`` bootstrap samples of whole groups: each draws len(by_group) groups with replacement, rows stacked."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        picked = rng.integers(0, len(by_group), len(by_group))
        yield np.concatenate([by_group[k] for k in picked])


def bootstrap_spearman(
    steps: pd.DataFrame,
    column: str,
    value: str = "value",
    group: str = "group",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Pooled Spearman of ``column`` vs ``value`` and a percentile bootstrap interval over whole groups."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    for name in (column, value, group):
        if name not in steps.columns:
            raise ValueError(f"steps has no column {name!r}")
    ids = list(dict.fromkeys(steps[group]))
    by_group = [steps.loc[steps[group] == gid, [column, value]].to_numpy() for gid in ids]
    point = spearman(steps[column], steps[value])
    draws = np.asarray([spearman(sample[:, 0], sample[:, 1]) for sample in group_resamples(by_group, n_boot, seed)])
    finite = draws[np.isfinite(draws)]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(finite, [alpha, 1 - alpha]) if len(finite) else (np.nan, np.nan)
    return {"spearman": point, "lo": float(lo), "hi": float(hi), "n_groups": len(ids), "n_steps": len(steps)}


def paired_credit_differences(
    steps: pd.DataFrame,
    variants: Sequence[CreditVariant | str],
    reference: str = "or_only",
    value: str = "value",
    group: str = "group",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per variant: Spearman(A_t, v_t) minus the reference's on the same steps, with a paired bootstrap interval.

    Each draw resamples whole groups once and scores every variant and the reference on that sample, so
    the interval is that of the difference (both advantages are computed on the same rollouts).
    """
    names = [v.name if isinstance(v, CreditVariant) else str(v) for v in variants]
    columns = [f"A_{n}" for n in dict.fromkeys([reference, *names])]
    missing = [c for c in [*columns, value, group] if c not in steps.columns]
    if missing:
        raise ValueError(f"steps has no column(s) {missing}")
    ids = list(dict.fromkeys(steps[group]))
    by_group = [steps.loc[steps[group] == gid, [value, *columns]].to_numpy() for gid in ids]

    def spearmans(sample: np.ndarray) -> dict[str, float]:
        return {c: spearman(sample[:, 1 + i], sample[:, 0]) for i, c in enumerate(columns)}

    point = spearmans(np.concatenate(by_group))
    draws = [spearmans(sample) for sample in group_resamples(by_group, n_boot, seed)]
    alpha = (1 - level) / 2
    ref = f"A_{reference}"
    rows = []
    for name in names:
        col = f"A_{name}"
        diffs = np.asarray([d[col] - d[ref] for d in draws])
        diffs = diffs[np.isfinite(diffs)]
        lo, hi = np.quantile(diffs, [alpha, 1 - alpha]) if len(diffs) else (np.nan, np.nan)
        rows.append(
            {"variant": name, "reference": reference, "diff": point[col] - point[ref], "lo": float(lo), "hi": float(hi),
             "n_groups": len(ids)}
        )  # fmt: skip
    return pd.DataFrame(rows)


def credit_quality(
    steps: pd.DataFrame, variants: Sequence[CreditVariant | str], n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """One row per variant: Spearman(A_t, v_t) with its bootstrap interval (groups resampled)."""
    rows = []
    for v in variants:
        name = v.name if isinstance(v, CreditVariant) else str(v)
        stats = bootstrap_spearman(steps, f"A_{name}", n_boot=n_boot, level=level, seed=seed)
        rows.append({"variant": name, **stats})
    return pd.DataFrame(rows)


def rollout_batches(
    instances: Sequence,
    policy,
    reasoner: Reasoner,
    settings,
    seeds: Sequence[int] = (0,),
    all_questions: bool = True,
    batch_instances: int = 8,
) -> Iterator[tuple[list, list | None, list[str]]]:
    """``(groups, questions, group ids)`` of each batch of instances rolled out, seed by seed (the credit measures).

    ``questions`` holds each instance's questions with ``all_questions`` (the marginal values are then
    measured on all of them), else None; a group's id is ``<instance id>@s<seed>``.
    """
    from finemem_lib.episodes.rollout import rollout

    for seed in seeds:
        for start in range(0, len(instances), batch_instances):
            batch = list(instances[start : start + batch_instances])
            groups = rollout(batch, policy, reasoner, settings, seed=seed)
            questions = [inst.questions for inst in batch] if all_questions else None
            yield groups, questions, [f"{inst.id}@s{seed}" for inst in batch]


def measure_credit(
    instances: Sequence,
    policy,
    reasoner: Reasoner,
    settings,
    variants: Sequence[CreditVariant],
    seeds: Sequence[int] = (0,),
    all_questions: bool = True,
    batch_instances: int = 8,
) -> pd.DataFrame:
    """Roll out ``settings.num_generations`` episodes per instance and seed, and give :func:`credit_steps`.

    The advantages come from the episodes as training would score them (``settings.question_ratio``
    of the global questions); with ``all_questions`` the marginal values are measured on all of the
    instance's questions (the step's worth to the whole instance), else on the same subsample.
    """
    frames = [
        credit_steps(groups, reasoner, variants, settings.top_k, questions, ids)
        for groups, questions, ids in rollout_batches(
            instances, policy, reasoner, settings, seeds, all_questions, batch_instances
        )
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
