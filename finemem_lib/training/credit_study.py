"""The credit study: how well each variant's advantage A_t ranks steps by their leave-one-step-out value.

Rollouts of the SFT start (training rollouts: G samples at the training temperature, the training share
of global questions for A_t) are scored by every variant of :func:`credit_variants` (the variant table at
the profile's knobs, then Fine-Mem's ablation points); the marginal values use all of an instance's
questions. Writes ``05_credit_*`` tables and a log (see :mod:`finemem_lib.episodes.credit`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from finemem_lib.agents.policy import load_manager
from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.agents.sft import free_cpu_threads, policy_settings
from finemem_lib.core.reward_spec import VARIANTS
from finemem_lib.episodes.credit import (
    CreditVariant,
    credit_quality,
    measure_credit,
    paired_credit_differences,
    profile_variants,
)
from finemem_lib.episodes.rollout import settings_from_config
from finemem_lib.infra.atomic import write_csv, write_json
from finemem_lib.infra.determinism import runtime_threads
from finemem_lib.infra.paths import ProfilePaths, repo_relative
from finemem_lib.infra.provenance import provenance
from finemem_lib.training.heldout import LOG_PREFIX
from finemem_lib.training.start import heldout_subset, load_training_data, start_model

MAIN_VARIANTS = VARIANTS  # the rows of the variant table: the credit figure's variants
FigureWriter = Callable[[pd.DataFrame, pd.DataFrame, Mapping[str, Path]], None]

EXTRA_CREDIT_VARIANTS = (
    ("eara_beta1", "eara", {"beta": 1.0}),
    ("finemem_beta0", "finemem", {"beta": 0.0}),
    ("finemem_beta0.25", "finemem", {"beta": 0.25}),
    ("finemem_beta0.75", "finemem", {"beta": 0.75}),
    ("finemem_beta1", "finemem", {"beta": 1.0}),
    ("finemem_w10", "finemem", {"w1": 0.0}),
    ("finemem_w10.25", "finemem", {"w1": 0.25}),
    ("finemem_w11", "finemem", {"w1": 1.0}),
    ("finemem_episode", "finemem", {"group_mode": "episode"}),
    ("or_only_episode", "or_only", {"group_mode": "episode"}),
)


def credit_variants(profile: Mapping[str, Any]) -> list[CreditVariant]:
    """The four variants at the profile's knobs, then Fine-Mem's ablation points (beta, w1, per-episode groups)."""
    variants = profile_variants(profile)
    by_name = {v.name: v for v in variants}
    for name, base, changes in EXTRA_CREDIT_VARIANTS:
        variants.append(CreditVariant(name, replace(by_name[base].spec, **changes)))
    return variants


def advantage_matrices_from_steps(steps: pd.DataFrame, group: str | None = None) -> tuple[dict, np.ndarray, str]:
    """``({variant: [G, T] A_t}, [G, T] v_t, group id)`` of one group of a credit-steps table (the first by default)."""
    group = group if group is not None else str(steps["group"].iloc[0])
    frame = steps[steps["group"].astype(str) == group]
    names = [c.removeprefix("A_") for c in steps.columns if c.startswith("A_")]
    pivot = {n: frame.pivot(index="rollout", columns="step", values=f"A_{n}").to_numpy() for n in names}
    values = frame.pivot(index="rollout", columns="step", values="value").to_numpy()
    return pivot, values, group


@dataclass(frozen=True)
class CreditMeasure:
    """What a credit measure samples and how it reports: the training split (its first ``max_instances``
    instances, all by default), the rollout seeds, bootstrap draws, the command logged, whether to write."""

    split: str = "train"
    max_instances: int | None = None
    seeds: Sequence[int] = (0, 1)
    n_boot: int = 1000
    command: str = ""
    write: bool = True


@dataclass(frozen=True)
class CreditRollouts:
    """What the credit measures roll out with: instances, the SFT start (path and policy), reasoner, settings."""

    instances: list
    sft_model: Path | str
    policy: Any
    reasoner: Any
    settings: Any  # rollout settings of training (``settings_from_config(..., training=True)``)
    variants: list[CreditVariant]


def credit_rollouts(profile: Mapping[str, Any], paths: ProfilePaths, measure: CreditMeasure) -> CreditRollouts:
    """Load the SFT start and the training instances the credit measures roll out, with the variants they score."""
    # training.num_threads, else runtime.threads (a fixed count: the same numbers on every rerun), else free cores
    threads = runtime_threads(profile, "training") or free_cpu_threads()
    torch.set_num_threads(threads)  # more threads than free cores makes generation far slower on a shared CPU
    data = load_training_data(profile, paths)
    instances = heldout_subset(data[measure.split], measure.max_instances)
    sft_model = start_model(profile, paths)
    policy = load_manager(sft_model, **policy_settings(profile))
    reasoner = build_reasoner(profile.get("reasoner"))
    settings = settings_from_config(dict(profile), training=True)
    return CreditRollouts(instances, sft_model, policy, reasoner, settings, credit_variants(profile))


def write_credit_log(
    path: Path,
    profile: Mapping[str, Any],
    setup: CreditRollouts,
    measure: CreditMeasure,
    wall: float,
    files: Mapping[str, Path],
    **extra: Any,
) -> None:
    """The provenance log of a credit measure: its rollouts, variants, ``extra`` fields, time and outputs."""
    seeds = measure.seeds
    write_json(
        path,
        provenance(
            profile,
            int(seeds[0]) if seeds else 0,
            command=measure.command,
            split=measure.split,
            instances=len(setup.instances),
            rollout_seeds=list(seeds),
            num_generations=setup.settings.num_generations,
            question_ratio=setup.settings.question_ratio,
            sft_model=repo_relative(setup.sft_model),
            variants=[v.to_dict() for v in setup.variants],
            **extra,
            wall_s=round(wall, 1),
            outputs={k: repo_relative(v) for k, v in files.items()},
        ),
    )


def write_credit_tables(paths: ProfilePaths, tables: Mapping[str, tuple[str, pd.DataFrame]]) -> dict[str, Path]:
    """Write each ``{key: (name, frame)}`` to ``<tables>/05_<name>.csv``; returns ``{key: path}`` in that order."""
    files = {}
    for key, (name, frame) in tables.items():
        files[key] = paths.tables / f"{LOG_PREFIX}_{name}.csv"
        write_csv(frame, files[key], index=False)
    return files


def measure_credit_quality(
    profile: Mapping[str, Any], paths: ProfilePaths, *, draw: FigureWriter | None = None, **options: Any
) -> dict[str, Any]:
    """Credit quality of every variant on rollouts of the SFT start; writes ``05_credit_*`` tables and the log.

    ``options`` are those of :class:`CreditMeasure` (``split``, ``max_instances``, ``seeds``, ``n_boot``,
    ``command``, ``write``). The rollouts are training rollouts (G samples at the training temperature,
    the training share of global questions for A_t); the marginal values use all of an instance's
    questions. ``draw`` writes the figures (``draw(quality, steps, files)``, e.g.
    :func:`finemem_lib.report.study_figures.write_credit_figures`).
    """
    measure = CreditMeasure(**options)
    seeds, n_boot = measure.seeds, measure.n_boot
    setup = credit_rollouts(profile, paths, measure)
    variants = setup.variants
    started = time.perf_counter()
    steps = measure_credit(setup.instances, setup.policy, setup.reasoner, setup.settings, variants, seeds=seeds)
    wall = time.perf_counter() - started
    quality = credit_quality(steps, variants, n_boot=n_boot).assign(source="all")
    by_source = [
        credit_quality(steps[steps["source"] == s], variants, n_boot=n_boot).assign(source=s)
        for s in sorted(steps["source"].unique())
    ]
    quality = pd.concat([quality, *by_source], ignore_index=True)
    differences = paired_credit_differences(steps, [v for v in variants if v.name != "or_only"], n_boot=n_boot)
    out: dict[str, Any] = {"steps": steps, "quality": quality, "differences": differences, "wall_s": wall}
    if not measure.write:
        return out
    files = write_credit_tables(
        paths, {"steps": ("credit_steps", steps), "quality": ("credit_quality", quality),
                "differences": ("credit_differences", differences)}
    )  # fmt: skip
    if draw is not None:
        files |= {
            "figure": paths.figures / f"{LOG_PREFIX}_credit_quality.png",
            "ablations": paths.figures / f"{LOG_PREFIX}_credit_ablations.png",
            "matrices": paths.figures / f"{LOG_PREFIX}_advantage_matrices.png",
        }
        draw(quality, steps, files)
    write_credit_log(paths.runs / f"{LOG_PREFIX}_credit.json", profile, setup, measure, wall, files)
    out["files"] = files
    return out
