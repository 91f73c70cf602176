"""Where the time of one step-credit GRPO step goes, for a profile (default and smoke).

The trainer of the profile is built as in ``finemem_lib.training.runner`` (its SFT manager as the
start, KL reference included, no held-out evaluation, no checkpoints) and trained for ``--steps``
optimizer steps while these functions are timed (the time of a phase excludes the phases nested in it):

- ``prompt_building``: ``ManagerPolicy.step_prompt`` (memory view, chat template, tokenizing)
- ``generation``: ``ManagerPolicy.generate`` minus the log-prob recomputation, and ``CachedReview.decide``
  (review lines decided on caches kept from line to line)
- ``logprob_recompute``: the forward pass over prompt + completion after ``generate`` (transformers engine)
- ``chunk_qa`` / ``global_qa``: the reasoner answering the chunk QAs on M_t and the global QAs on M_T
- ``reward_kernels``: step rewards, EARA and group advantages (``step_samples``)
- ``ref_logprobs``: the no-grad reference (and old) log-prob passes of TRL
- ``forward_backward``: TRL's ``training_step`` minus the rollout it triggers
- ``other``: the rest of the step (optimizer, scheduler, parsing and applying ops, collating, logging)

Usage: python benchmarks/bench_step_profile.py --profile default [--steps 2] [--engine native]
       [--shared-prefix on|off] [--out FILE.json]
The SFT manager of the profile must exist (notebook 02 or 03 trains it: ``data/<profile>/models/sft``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

PHASES = (
    "prompt_building",
    "generation",
    "logprob_recompute",
    "chunk_qa",
    "global_qa",
    "reward_kernels",
    "ref_logprobs",
    "forward_backward",
)


class PhaseTimer:
    """Exclusive wall time per phase: a phase nested in another is subtracted from its parent."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[Any]] = []  # [name, start, time spent in children]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        frame = [name, time.perf_counter(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            elapsed = time.perf_counter() - frame[1]
            self.totals[name] += elapsed - frame[2]
            self.calls[name] += 1
            if self._stack:
                self._stack[-1][2] += elapsed

    def wrap(self, owner: Any, attribute: str, name: str) -> Callable[[], None]:
        """Time every call of ``owner.attribute`` as ``name``; returns the function that undoes it."""
        original = getattr(owner, attribute)
        timer = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            with timer.phase(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)
        return lambda: setattr(owner, attribute, original)


def _wrap_logps(timer: PhaseTimer, trainer_class: type) -> Callable[[], None]:
    """TRL's per-token log-prob pass: no-grad calls are ``ref_logprobs``, the loss's own forward is not timed apart."""
    attribute = "_get_per_token_logps_and_entropies"
    original = getattr(trainer_class, attribute)

    def timed(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            return original(*args, **kwargs)
        with timer.phase("ref_logprobs"):
            return original(*args, **kwargs)

    setattr(trainer_class, attribute, timed)
    return lambda: setattr(trainer_class, attribute, original)


def instrument(timer: PhaseTimer) -> list[Callable[[], None]]:
    """Patch the functions of every phase (module attributes where they are looked up)."""
    from finemem_lib.agents import policy, review_cache
    from finemem_lib.agents.engines import transformers_engine
    from finemem_lib.episodes import rollout
    from finemem_lib.training import grpo

    undo = [
        timer.wrap(policy.ManagerPolicy, "step_prompt", "prompt_building"),
        timer.wrap(policy.ManagerPolicy, "generate", "generation"),
        timer.wrap(review_cache.CachedReview, "decide", "generation"),  # review lines on kept caches
        timer.wrap(rollout, "chunk_correctness_many", "chunk_qa"),
        timer.wrap(rollout, "answer_over_memories", "global_qa"),
        timer.wrap(grpo, "step_samples", "reward_kernels"),
        _wrap_logps(timer, grpo.StepCreditGRPOTrainer),
        timer.wrap(grpo.StepCreditGRPOTrainer, "training_step", "forward_backward"),
        timer.wrap(grpo.StepCreditGRPOTrainer, "_generate_and_score_completions", "rollout_other"),
    ]
    undo.append(timer.wrap(transformers_engine.TransformersEngine, "sampled_logprobs", "logprob_recompute"))
    return undo


def deep_update(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, mappings recursively (``base`` is changed and returned)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def build_trainer(
    profile: str,
    engine: str | None,
    steps: int,
    output_dir: Path,
    shared_prefix: bool | None = None,
    overrides: dict[str, Any] | None = None,
):
    """The profile's GRPO trainer from its SFT manager, without held-out evaluation or checkpoints.

    ``overrides`` are merged into the profile (e.g. ``{"rollout": {"num_generations": 8}}``)."""
    from finemem_lib.agents.policy import load_manager
    from finemem_lib.agents.reasoner_factory import build_reasoner
    from finemem_lib.agents.sft import policy_settings
    from finemem_lib.infra.config import load_profile
    from finemem_lib.infra.paths import profile_paths, sft_manager_dir
    from finemem_lib.training.config import grpo_config, run_rollout_settings, training_settings
    from finemem_lib.training.grpo import StepCreditGRPOTrainer
    from finemem_lib.training.runner import load_training_data
    from finemem_lib.training.vllm_rollout import vllm_grpo_args

    cfg = deep_update(load_profile(profile), overrides or {})
    if engine:
        cfg.setdefault("manager", {})["engine"] = engine
    if shared_prefix is not None:
        cfg.setdefault("training", {})["shared_prefix"] = shared_prefix
    paths = profile_paths(cfg)
    sft = sft_manager_dir(paths)
    if not (sft / "config.json").is_file():
        raise SystemExit(f"no SFT manager at {sft}: run notebooks 01-02 of the {profile!r} profile first")
    data = load_training_data(cfg, paths)
    settings = training_settings(cfg, max_steps=steps)
    policy = load_manager(sft, **policy_settings(cfg))
    train_settings, _ = run_rollout_settings(cfg)
    args = grpo_config(
        settings,
        train_settings,
        str(output_dir),
        int(cfg.get("seed", 0)),
        [inst.num_chunks for inst in data["train"]],
        save_strategy="no",
        **vllm_grpo_args(cfg),
    )
    reasoner = build_reasoner(cfg.get("reasoner"))
    return cfg, StepCreditGRPOTrainer(policy, args, data["train"], reasoner, train_settings)


def _git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps profiled (the first one is included)")
    parser.add_argument("--engine", default=None, help="manager.engine override (native | transformers)")
    parser.add_argument("--shared-prefix", choices=("on", "off"), default=None, help="training.shared_prefix override")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--label", default=None, help="a name for this run in the JSON (e.g. before / after)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import tempfile

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        shared = None if args.shared_prefix is None else args.shared_prefix == "on"
        cfg, trainer = build_trainer(args.profile, args.engine, args.steps, Path(tmp), shared)
        timer = PhaseTimer()
        undo = instrument(timer)
        load_at_start = round(os.getloadavg()[0], 2)
        started = time.perf_counter()
        try:
            trainer.train()
        finally:
            total = time.perf_counter() - started
            for restore in undo:
                restore()
    totals = dict(timer.totals)
    totals["other"] = total - sum(totals.values())
    totals["other"] += totals.pop("rollout_other", 0.0)
    engine = getattr(trainer, "manager_engine", None) or cfg.get("manager", {}).get("engine", "transformers")
    record = {
        "profile": args.profile,
        "label": args.label,
        "engine": engine,
        "shared_prefix": bool(trainer.args.shared_prefix),
        "steps": args.steps,
        "threads": args.threads,
        "total_s": round(total, 3),
        "step_s": round(total / args.steps, 3),
        "phases_s": {k: round(totals.get(k, 0.0), 3) for k in (*PHASES, "other")},
        "share": {k: round(totals.get(k, 0.0) / total, 4) for k in (*PHASES, "other")},
        "calls": dict(timer.calls),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1min_at_start": load_at_start,
        },
        "torch": torch.__version__,
        "git_revision": _git_revision(),
        "command": "python benchmarks/bench_step_profile.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
    }
    print(json.dumps(record, indent=2))
    out = args.out or Path(__file__).parent / "results" / f"step_profile_{args.profile}_{args.label or engine}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
