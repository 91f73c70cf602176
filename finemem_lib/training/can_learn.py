"""Can the step-credit GRPO trainer learn at all? A small, fast experiment with a reward that cannot be gamed.

From the SFT start, GRPO is run with the profile's trainer and settings but a step reward that pays only
for what the manager writes: r_t = (share of chunk t's fact sentences it stored) - (share of chunk t's
filler sentences it stored) (:func:`fact_store_rewards`; sentence kinds from :mod:`finemem_lib.data.roles`,
no QA involved). Everything else (rollouts, samples, group advantages, micro-batches, TRL's loss, the
optimizer) is the trainer's own, so a plumbing defect shows up as a store rate that does not move.
Store rates are measured on held-out instances with sampled rollouts (the training temperature) before
and after training::

    python -m finemem_lib.training.can_learn --profile default --steps 24 \\
        --out results/diagnostics/can_learn_default.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finemem_lib.agents.policy import ManagerPolicy, load_manager
from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.agents.sft import policy_settings
from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.data.instance import Instance
from finemem_lib.data.roles import FACT_KINDS, FILLER_KINDS, sentence_kinds
from finemem_lib.episodes import behaviour
from finemem_lib.episodes.rollout import Episode, RolloutSettings, rollout
from finemem_lib.training.config import grpo_config, run_rollout_settings, training_settings
from finemem_lib.training.grpo import StepCreditGRPOTrainer

logger = logging.getLogger(__name__)


TARGETS = ("facts", "odd")
"""``facts``: the experiment's reward; ``odd``: a positional control (odd-numbered sentences paid, even ones
charged) that a content-blind manager can learn by moving its position preferences alone."""


def _reward_groups(kinds: Sequence[str], target: str) -> tuple[list[int], list[int]]:
    """Indices of the sentences paid and charged for under ``target``."""
    if target == "facts":
        return [i for i, k in enumerate(kinds) if k in FACT_KINDS], [
            i for i, k in enumerate(kinds) if k in FILLER_KINDS
        ]
    if target == "odd":
        return list(range(0, len(kinds), 2)), list(range(1, len(kinds), 2))
    raise ValueError(f"target must be one of {TARGETS}, got {target!r}")


def fact_store_rewards(instance: Instance, episode: Episode, target: str = "facts") -> np.ndarray:
    """``[T]``: per step, share of the paid sentences stored - share of the charged ones (0 where none).

    With ``target="facts"``: stored facts / facts in the chunk - stored filler / filler in the chunk.
    """
    kinds = sentence_kinds(instance)
    out = np.zeros(episode.T)
    for t, step in enumerate(episode.steps):
        stored = behaviour.stored_sentences(step.operations, step.results)
        paid, charged = _reward_groups(kinds[t], target)
        for members, sign in ((paid, 1.0), (charged, -1.0)):
            if members:
                out[t] += sign * sum(i in stored for i in members) / len(members)
    return out


SPEC = RewardSpec(variant="csr", w1=1.0, w2=0.0)
"""The spec the experiment trains with: r_t = r_global + r_fmt + r_chunk, where :class:`FactRewardEpisode`'s
r_chunk carries the fact reward minus the other two terms, so that r_t is the fact reward exactly and the logged
QA and format columns stay the episode's own."""


class FactRewardEpisode(Episode):
    """An episode whose step reward under :data:`SPEC` is :func:`fact_store_rewards` (no chunk QAs are asked)."""

    fact_rewards: np.ndarray

    @property
    def r_chunk(self) -> np.ndarray:
        return self.fact_rewards - self.r_global - self.r_fmt

    def step_rewards(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.fact_rewards


class FactRewardTrainer(StepCreditGRPOTrainer):
    """The step-credit trainer with :func:`fact_store_rewards` in place of the QA-based step reward.

    Every training round's store rates and mean reward are appended to ``rounds``.
    """

    def __init__(self, *args: Any, target: str = "facts", **kwargs: Any) -> None:
        self.rounds: list[dict[str, float]] = []
        self.target = target
        super().__init__(*args, **kwargs)

    def _rollout(self, instances: Sequence[Instance], settings: RolloutSettings, seed: int) -> list[list[Episode]]:
        groups = super()._rollout(instances, settings, seed)
        counts: Counter[str] = Counter()
        rewards = []
        for instance, group in zip(instances, groups, strict=True):
            for episode in group:
                episode.__class__ = FactRewardEpisode
                episode.fact_rewards = fact_store_rewards(instance, episode, self.target)  # type: ignore[attr-defined]
                rewards.append(float(episode.fact_rewards.mean()))  # type: ignore[attr-defined]
                counts += behaviour.episode_counts(instance, episode.steps)
        if self.model.training:
            rates = behaviour.rates(counts)
            self.rounds.append(
                {
                    "step": self.state.global_step,
                    "reward": float(np.mean(rewards)),
                    "fact_rate": rates["store_rate/facts"],
                    "filler_rate": rates["store_rate/filler"],
                }
            )
        return groups


def store_rates(
    policy: ManagerPolicy,
    instances: Sequence[Instance],
    settings: RolloutSettings,
    seed: int = 0,
    target: str = "facts",
) -> dict[str, float]:
    """Store rates of facts and filler, format rate and mean fact reward over sampled rollouts of ``instances``."""
    reasoner = build_reasoner({"backend": "offline"})
    with torch.random.fork_rng(devices=[]):
        groups = rollout(list(instances), policy, reasoner, settings, seed=seed)
    counts: Counter[str] = Counter()
    rewards, fmt = [], []
    odd: Counter[str] = Counter()
    for instance, group in zip(instances, groups, strict=True):
        for episode in group:
            counts += behaviour.episode_counts(instance, episode.steps)
            rewards.append(float(fact_store_rewards(instance, episode, target).mean()))
            for step in episode.steps:
                stored = behaviour.stored_sentences(step.operations, step.results)
                odd["stored_odd"] += sum(i % 2 == 0 for i in stored)
                odd["stored_even"] += sum(i % 2 == 1 for i in stored)
            fmt.append(float(episode.r_fmt.mean()))
    rates = behaviour.rates(counts)
    return {
        "fact_rate": rates["store_rate/facts"],
        "filler_rate": rates["store_rate/filler"],
        "reward": float(np.mean(rewards)),
        "format_rate": float(np.mean(fmt)),
        "odd_share": odd["stored_odd"] / max(1, odd["stored_odd"] + odd["stored_even"]),
        "episodes": len(rewards),
    }


@dataclass
class CanLearnResult:
    """Store rates before and after, per-round training rates and the trainer's log history."""

    before: dict[str, float]
    after: dict[str, float]
    rounds: list[dict[str, float]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def fact_gain(self) -> float:
        return self.after["fact_rate"] - self.before["fact_rate"]

    @property
    def filler_drop(self) -> float:
        return self.before["filler_rate"] - self.after["filler_rate"]

    def learned(self, margin: float = 0.1) -> bool:
        """Facts stored more and filler less, each by at least ``margin`` (the ``odd`` control: reward up by it)."""
        if self.settings.get("target") == "odd":
            return self.after["reward"] - self.before["reward"] >= margin
        return self.fact_gain >= margin and self.filler_drop >= margin

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before,
            "after": self.after,
            "fact_gain": self.fact_gain,
            "filler_drop": self.filler_drop,
            "learned": self.learned(),
            "rounds": self.rounds,
            "history": self.history,
            "settings": self.settings,
            "wall_s": round(self.wall_s, 1),
        }


def can_learn(
    cfg: Mapping[str, Any],
    sft_model: str | Path,
    train: Sequence[Instance],
    heldout: Sequence[Instance],
    steps: int = 24,
    seed: int = 0,
    eval_generations: int = 4,
    trainer_args: Mapping[str, Any] | None = None,
    target: str = "facts",
    **overrides: Any,
) -> CanLearnResult:
    """GRPO from ``sft_model`` on the fact-store reward for ``steps`` optimizer steps; store rates before/after.

    ``overrides`` replace ``training:`` keys (learning_rate, kl_beta, num_iterations, ...), ``trainer_args`` TRL
    arguments (``optim``, ``adam_beta2``, ...). Rates are measured on ``heldout`` with ``eval_generations``
    sampled rollouts per instance.
    """
    torch.manual_seed(seed)
    settings = training_settings(
        cfg, max_steps=steps, **{**overrides, "variant": SPEC.variant, "w1": SPEC.w1, "w2": SPEC.w2}
    )
    train_settings, _ = run_rollout_settings(cfg)
    train_settings = replace(train_settings, chunk_qas=False)  # no QA in this reward
    eval_settings = replace(train_settings, num_generations=eval_generations)
    policy = load_manager(sft_model, **policy_settings(cfg))
    torch.set_num_threads(int(settings.num_threads or 1))
    started = time.perf_counter()
    before = store_rates(policy, heldout, eval_settings, seed + 1, target)
    with tempfile.TemporaryDirectory(prefix="finemem-can-learn-") as work:
        args = grpo_config(
            settings,
            train_settings,
            work,
            seed,
            [inst.num_chunks for inst in train],
            **{"save_strategy": "no", **dict(trainer_args or {})},
        )
        trainer = FactRewardTrainer(
            policy, args, train, build_reasoner({"backend": "offline"}), train_settings, target=target
        )
        trainer.train()
    after = store_rates(policy, heldout, eval_settings, seed + 1, target)
    return CanLearnResult(
        before,
        after,
        trainer.rounds,
        list(trainer.state.log_history),
        {**settings.to_dict(), "trainer_args": dict(trainer_args or {}), "target": target},
        time.perf_counter() - started,
    )


def gradient_cosines(
    cfg: Mapping[str, Any],
    sft_model: str | Path,
    train: Sequence[Instance],
    rounds: int = 4,
    instances_per_round: int = 2,
    target: str = "facts",
    seed: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """Cosine similarities between the policy gradients of independent rollout rounds, from ``sft_model``.

    Each round rolls out ``instances_per_round`` distinct training instances (G rollouts each) and takes the
    gradient of the trainer's loss (one pass, no optimizer step). A gradient dominated by the reward's signal
    points the same way round after round (cosines near 1); one dominated by sampling noise does not (near 0).
    """
    settings = training_settings(
        cfg,
        max_steps=1,
        instances_per_step=instances_per_round,
        **{**overrides, "variant": SPEC.variant, "w1": SPEC.w1, "w2": SPEC.w2},
    )
    train_settings, _ = run_rollout_settings(cfg)
    train_settings = replace(train_settings, chunk_qas=False)
    policy = load_manager(sft_model, **policy_settings(cfg))
    stride = max(1, len(train) // (rounds * instances_per_round))
    order = [(i * stride) % len(train) for i in range(rounds * instances_per_round)]
    grads, norms = [], []
    with tempfile.TemporaryDirectory(prefix="finemem-grad-cos-") as work:
        args = grpo_config(
            settings, train_settings, work, seed, [inst.num_chunks for inst in train], save_strategy="no"
        )
        trainer = FactRewardTrainer(
            policy, args, train, build_reasoner({"backend": "offline"}), train_settings, target=target
        )
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1
        for r in range(rounds):
            rows = [{"instance_index": i} for i in order[r * instances_per_round : (r + 1) * instances_per_round]]
            batch = trainer._generate_and_score_completions(rows)
            trainer.model.zero_grad()
            trainer._compute_loss(trainer.model, batch).backward()
            grad = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
            grads.append(grad.clone())
            norms.append(float(grad.norm()))
    cos = [[float(torch.nn.functional.cosine_similarity(a, b, dim=0)) for b in grads] for a in grads]
    off = [cos[i][j] for i in range(rounds) for j in range(rounds) if i < j]
    return {
        "rounds": rounds,
        "instances_per_round": instances_per_round,
        "target": target,
        "grad_norms": norms,
        "cosines": cos,
        "mean_cosine": float(np.mean(off)) if off else float("nan"),
        "overrides": overrides,
    }


def main(argv: Sequence[str] | None = None) -> int:
    from finemem_lib.data.synthetic import build_synthetic
    from finemem_lib.evaluation.miniature import with_overrides
    from finemem_lib.infra.config import load_profile
    from finemem_lib.infra.paths import profile_paths, sft_manager_dir
    from finemem_lib.training.cli import parse_overrides

    parser = argparse.ArgumentParser(
        prog="python -m finemem_lib.training.can_learn", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--profile", default="default")
    parser.add_argument("--sft-model", default=None, help="start model (default: the profile's SFT manager)")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout", type=int, default=6, help="held-out instances for the store rates")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="training KEY=VALUE")
    parser.add_argument("--target", choices=TARGETS, default="facts", help="what the reward pays for")
    parser.add_argument("--arg", dest="trainer_args", action="append", default=[], help="TRL argument KEY=VALUE")
    parser.add_argument("--profile-set", action="append", default=[], help="dotted profile KEY=VALUE")
    parser.add_argument("--grad-cos", type=int, default=0, help="instead: gradient cosines over this many rounds")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = with_overrides(load_profile(args.profile), args.profile_set)
    data = build_synthetic(cfg.get("data"), int(cfg.get("seed", 0)))
    heldout = data["test"][:: max(1, len(data["test"]) // args.heldout)][: args.heldout]
    sft = args.sft_model or str(sft_manager_dir(profile_paths(cfg)))
    command = "python -m finemem_lib.training.can_learn " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.grad_cos:
        overrides = parse_overrides(args.overrides)
        per_round = int(overrides.pop("instances_per_step", 2))  # instances per round of the gradient estimate
        report = gradient_cosines(
            cfg, sft, data["train"], args.grad_cos, per_round, args.target, args.seed, **overrides
        )
        report["command"] = command
        print(json.dumps(report))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        return 0
    result = can_learn(
        cfg,
        sft,
        data["train"],
        heldout,
        args.steps,
        args.seed,
        trainer_args=parse_overrides(args.trainer_args),
        target=args.target,
        **parse_overrides(args.overrides),
    )
    report = result.to_dict()
    report["command"] = command
    print(json.dumps({k: report[k] for k in ("before", "after", "fact_gain", "filler_drop", "learned", "wall_s")}))
    for row in result.rounds:
        print(json.dumps(row))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=float) + "\n")
    return 0 if result.learned() else 1


if __name__ == "__main__":
    sys.exit(main())
