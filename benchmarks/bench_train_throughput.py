"""Training throughput: step samples per second of whole GRPO steps, before and after, alternating in one run.

A GRPO step here is everything one optimizer step does: the rollout (generation, parsing, chunk and global
QA), the rewards and advantages, the old / reference log-probs, the forward/backward passes and the
optimizer. Its throughput is the step samples it trains on (instances x G x T chunk steps) per second.

Two recipes of the default profile (its SFT manager as the start, no held-out evaluation, no checkpoints):

- ``default``: the profile as it is (2 instances x G = 4 x T = 6 = 48 step samples per step);
- ``paper_like``: 8 instances x G = 8 x T = 6 = 384 step samples per step (the paper trains 32 x 8).

Two code paths (:data:`CODE_PATHS`): ``before`` (the trainer's code path before the throughput work, still
selectable: profile keys, and internal switches set by this benchmark, :data:`INTERNALS`) and ``after``
(this revision's defaults). A round
runs every recipe with both paths, which one goes first alternating between rounds, so that both see the
same machine load; the ratio of each recipe is its summed samples over its summed seconds, after / before
(wall time; ``ratio_samples_per_cpu_s`` the same over the process's CPU time, which the other jobs of a
shared machine disturb less).
The machine's load (1-minute average) is recorded at the start and end of every trial, with the CPU model;
an untimed warm-up step runs first (``--warmup``: imports and allocations the first trial would pay alone).
Every trial also records where its time goes (``bench_step_profile``'s phases), summed per recipe and path.

Usage: python benchmarks/bench_train_throughput.py [--recipes default,paper_like] [--rounds 2]
       [--steps default=2,paper_like=1] [--threads 1] [--paths before,after] [--out FILE.json]
The default profile's SFT manager must exist (notebook 02 or 03 trains it: ``data/default/models/sft``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))

from bench_step_profile import PHASES, PhaseTimer, _git_revision, build_trainer, instrument

RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "paper_like": {"training": {"instances_per_step": 8}, "rollout": {"num_generations": 8}},
}
# Profile keys of each code path ("before": the path of the landed main, kept selectable).
CODE_PATHS: dict[str, dict[str, Any]] = {
    "before": {"rollout": {"one_call": False}, "training": {"pack": False}, "manager": {"compile": "off"}},
    "after": {"rollout": {"one_call": True}, "training": {"pack": True}, "manager": {"compile": "off"}},
}
# Internal switches of the "before" path (module, attribute, value): one token per decode call, the sampler's
# torch.multinomial draw, the model's own attention and TRL's tiled LM head in the log-prob passes, every step
# sample scored from its own pass (no nested rows), review lines decoded as fresh prompts (no kept caches).
INTERNALS: dict[str, list[tuple[str, str, Any]]] = {
    "before": [
        ("finemem_lib.agents.decoding:IncrementalDecoder", "draft_tokens", 0),
        ("finemem_lib.agents.sampling", "draw", "multinomial"),
        ("finemem_lib.training.packed_pass", "PACKED_ATTENTION_ON", False),
        ("finemem_lib.training.shared_prefix", "DIRECT_HEAD_MAX", 0),
        ("finemem_lib.training.nested_rows", "ON", False),
        ("finemem_lib.agents.review_decoding", "CACHED_LINES", False),
    ],
    "after": [],
}


def multinomial_draw(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The sampler of the "before" path: ``torch.multinomial`` over ``probs`` ``[..., V]`` (``u`` unused)."""
    return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).view(probs.shape[:-1])


def switch_internals(path: str) -> list[Any]:
    """Apply the internal switches of ``path``; returns the functions that undo them."""
    import importlib

    undo = []
    for where, attribute, value in INTERNALS[path]:
        module, _, owner = where.partition(":")
        target = importlib.import_module(module)
        target = getattr(target, owner) if owner else target
        original = getattr(target, attribute)
        setattr(target, attribute, multinomial_draw if value == "multinomial" else value)
        undo.append(lambda t=target, a=attribute, o=original: setattr(t, a, o))
    return undo


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> float:
    return round(os.getloadavg()[0], 2)


class StepClock:
    """Wall time of every optimizer step and the step samples each one trained on."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self.tokens: list[int] = []

    def wrap(self) -> Any:
        """Count the samples and completion tokens of every round (``grpo.step_samples``); returns the undo."""
        from finemem_lib.training import grpo

        original = grpo.step_samples
        clock = self

        def counted(*args: Any, **kwargs: Any) -> Any:
            samples, advantages = original(*args, **kwargs)
            clock.samples.append(len(samples))
            clock.tokens.append(sum(int(s.completion_ids.numel()) for s in samples))
            return samples, advantages

        grpo.step_samples = counted
        return lambda: setattr(grpo, "step_samples", original)


def trial(recipe: str, path: str, steps: int, profile: str) -> dict[str, Any]:
    """Train ``steps`` optimizer steps of ``recipe`` with code path ``path``; seconds, samples, phases, load."""
    overrides = copy.deepcopy(RECIPES[recipe])
    for section, values in CODE_PATHS[path].items():
        overrides.setdefault(section, {}).update(values)
    with tempfile.TemporaryDirectory() as tmp:
        _, trainer = build_trainer(profile, None, steps, Path(tmp), overrides=overrides)
        timer, clock = PhaseTimer(), StepClock()
        undo = [*instrument(timer), clock.wrap(), *switch_internals(path)]
        load_start = load()
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            trainer.train()
        finally:
            seconds = time.perf_counter() - start
            cpu_seconds = time.process_time() - cpu_start
            for restore in undo:
                restore()
    phases = dict(timer.totals)
    phases["other"] = seconds - sum(phases.values()) + phases.pop("rollout_other", 0.0)
    samples = sum(clock.samples)
    return {
        "recipe": recipe,
        "path": path,
        "steps": steps,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "samples": samples,
        "completion_tokens": sum(clock.tokens),
        "samples_per_s": round(samples / seconds, 4),
        "phases_s": {k: round(phases.get(k, 0.0), 3) for k in (*PHASES, "other")},
        "load_start": load_start,
        "load_end": load(),
    }


def summarise(trials: list[dict[str, Any]], recipes: list[str], paths: list[str]) -> dict[str, Any]:
    """Per recipe and path: summed samples / summed seconds, mean phase shares; the after / before ratio."""
    out: dict[str, Any] = {}
    for recipe in recipes:
        row: dict[str, Any] = {"overrides": RECIPES[recipe]}
        for path in paths:
            mine = [t for t in trials if t["recipe"] == recipe and t["path"] == path]
            seconds = sum(t["seconds"] for t in mine)
            phases = {k: sum(t["phases_s"][k] for t in mine) for k in mine[0]["phases_s"]}
            row[path] = {
                "trials": len(mine),
                "steps": sum(t["steps"] for t in mine),
                "samples_per_step": sum(t["samples"] for t in mine) / sum(t["steps"] for t in mine),
                "step_s": round(seconds / sum(t["steps"] for t in mine), 3),
                "samples_per_s": round(sum(t["samples"] for t in mine) / seconds, 4),
                "samples_per_cpu_s": round(sum(t["samples"] for t in mine) / sum(t["cpu_seconds"] for t in mine), 4),
                "completion_tokens_per_step": round(
                    sum(t["completion_tokens"] for t in mine) / sum(t["steps"] for t in mine), 1
                ),
                "samples_per_s_by_trial": [t["samples_per_s"] for t in mine],
                "phase_share": {k: round(v / seconds, 4) for k, v in phases.items()},
            }
        if "before" in row and "after" in row:
            row["ratio_samples_per_s"] = round(row["after"]["samples_per_s"] / row["before"]["samples_per_s"], 2)
            # CPU time of the process: less sensitive to the other jobs taking turns on the cores
            row["ratio_samples_per_cpu_s"] = round(
                row["after"]["samples_per_cpu_s"] / row["before"]["samples_per_cpu_s"], 2
            )
            by_trial = [
                a / b
                for a, b in zip(
                    row["after"]["samples_per_s_by_trial"], row["before"]["samples_per_s_by_trial"], strict=False
                )
            ]
            row["ratio_by_round"] = [round(r, 2) for r in by_trial]
        out[recipe] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--recipes", default="default,paper_like")
    parser.add_argument("--paths", default="before,after")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", default="default=2,paper_like=1", help="optimizer steps per trial, per recipe")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first (imports, allocator)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_throughput.json")
    args = parser.parse_args()
    recipes = [r for r in args.recipes.split(",") if r]
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(recipes) - set(RECIPES)) + sorted(set(paths) - set(CODE_PATHS))
    if unknown:
        raise SystemExit(f"unknown recipe or path {unknown}; recipes: {sorted(RECIPES)}, paths: {sorted(CODE_PATHS)}")
    steps = {recipe: 1 for recipe in recipes}
    steps.update({k: int(v) for k, v in (item.split("=") for item in args.steps.split(",") if item)})
    torch.set_num_threads(args.threads)
    started, load_at_start = time.time(), load()
    if args.warmup > 0:
        trial(recipes[0], paths[0], args.warmup, args.profile)
    trials: list[dict[str, Any]] = []
    for round_index in range(args.rounds):
        order = paths if round_index % 2 == 0 else paths[::-1]
        for recipe in recipes:
            for path in order:
                result = trial(recipe, path, steps[recipe], args.profile)
                print(json.dumps(result), flush=True)
                trials.append({"round": round_index, **result})
    record = {
        "command": "python benchmarks/bench_train_throughput.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": {
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_1min_at_start": load_at_start,
            "load_average_1min_at_end": load(),
            "load_average_1min_mean_over_trials": round(
                sum(t["load_start"] + t["load_end"] for t in trials) / (2 * len(trials)), 2
            ),
        },
        "git_revision": _git_revision(),
        "wall_s": round(time.time() - started, 1),
        "code_paths": CODE_PATHS,
        "internals": {path: [f"{w}.{a} = {v}" for w, a, v in INTERNALS[path]] for path in paths},
        "recipes": summarise(trials, recipes, paths),
        "trials": trials,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for recipe, row in record["recipes"].items():
        print(
            recipe,
            {p: row[p]["samples_per_s"] for p in paths},
            "ratio",
            row.get("ratio_samples_per_s"),
            "(CPU time:",
            row.get("ratio_samples_per_cpu_s"),
            ")",
        )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
