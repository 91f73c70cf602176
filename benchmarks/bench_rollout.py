"""Rollout speed of the manager: the native decoding engine against transformers ``generate``, in one run.

(a) Tokens/s at the default profile's sizes: ``--batch`` real chunk-step prompts of the default
    benchmark (memory views filled, ~375 tokens), the default manager (its SFT checkpoint when it
    exists, else the default-size Qwen3 with random weights), greedy decoding so that both engines must
    produce the same tokens (checked and reported), and temperature-1 sampling (same seed, outputs differ
    between engines). Best of ``--repeats``. The native engine twice: ``native``, every call with an empty
    draft index (its speculative drafts come from that call's own completions only, as at a rollout's first
    chunk step), and ``native_warm``, after an untimed call on ``--batch`` other prompts (as at the later steps).
(c) Review-style chunk steps (the default op style; the harness restates each line and the manager decides it):
    ``--batch`` steps through ``ManagerPolicy.act``, decision tokens/s of transformers ``generate`` line by line
    (the only way it can), the native engine line by line, and the native engine on caches kept from line to
    line (the default); greedy outputs compared with transformers'. Best of ``--repeats``.
(b) The default profile's GRPO step time (``--grpo-steps`` optimizer steps each, from the SFT manager,
    no held-out evaluation; the phase split of ``bench_step_profile.py``) before this work (transformers
    ``generate``, unshared log-prob passes), with the native engine only, and with the engine and the
    prefix-shared log-prob passes (``training.shared_prefix``, the default).

Usage: python benchmarks/bench_rollout.py [--batch 32] [--max-new-tokens 256] [--repeats 2] [--grpo-steps 2]
       [--threads 1] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))

from bench_step_profile import PhaseTimer, build_trainer, instrument

from finemem_lib.agents.drafts import NgramDrafts
from finemem_lib.agents.policy import ManagerPolicy, SamplingParams, load_manager
from finemem_lib.agents.sft import policy_settings
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths, repo_relative, sft_manager_dir


def default_manager(cfg: dict[str, Any]) -> tuple[ManagerPolicy, str]:
    """The default profile's SFT manager, or (when not trained yet) its architecture with random weights."""
    folder = sft_manager_dir(profile_paths(cfg))
    if (folder / "config.json").is_file():
        return load_manager(folder, **policy_settings(cfg)), repo_relative(folder)
    from finemem_lib.agents.offline_model import build_offline_model, tokenizer_corpus, train_tokenizer
    from finemem_lib.data.synthetic import build_synthetic

    sizes = dict(cfg["manager"]["offline"])
    vocab = int(sizes.pop("vocab_size"))
    train = build_synthetic(cfg["data"], cfg.get("seed", 0))["train"]
    tokenizer = train_tokenizer(tokenizer_corpus(train, styles=("extractive",)), vocab_size=vocab)
    model = build_offline_model(tokenizer, sizes, seed=0)
    return ManagerPolicy(model, tokenizer, **policy_settings(cfg)), "random weights (no SFT manager trained yet)"


def step_prompts(cfg: dict[str, Any], policy: ManagerPolicy, count: int) -> list[list[int]]:
    """``count`` chunk-step prompts of the default benchmark, the memory holding the earlier chunks' sentences."""
    from finemem_lib.agents.prompts import chunk_sentences
    from finemem_lib.data.synthetic import build_synthetic

    train = build_synthetic(cfg["data"], cfg.get("seed", 0))["train"]
    prompts: list[list[int]] = []
    for instance in train:
        memory = Memory(id_style="short")
        for t, chunk in enumerate(instance.chunks):
            if t >= 2:
                prompts.append(policy.step_prompt(chunk, memory).ids)
                if len(prompts) == count:
                    return prompts
            for sentence in chunk_sentences(chunk)[::2]:
                memory.apply(Operation(OpKind.INSERT, content=sentence), t)
    return prompts


def time_engine(
    policy: ManagerPolicy,
    prompts: list[list[int]],
    sampling: SamplingParams,
    repeats: int,
    warm_with: list[list[int]] | None = None,
) -> tuple[float, list[list[int]], list[torch.Tensor]]:
    """Best wall time of ``repeats`` generate calls, the completions and the log-probs of the last call.

    The native engine's draft index starts empty before each call (cold), or holds the completions of one
    untimed call on ``warm_with`` (other prompts: as at a rollout's later chunk steps)."""
    best = float("inf")
    for _ in range(repeats):
        engine = policy.rollout_engine()
        if hasattr(getattr(engine, "decoder", None), "drafts"):
            engine.decoder.drafts = NgramDrafts()
            if warm_with:
                policy.generate(warm_with, sampling, seed=1)
        start = time.perf_counter()
        generations = policy.generate(prompts, sampling, seed=0)
        best = min(best, time.perf_counter() - start)
    return best, [g.completion_ids.tolist() for g in generations], [g.logprobs for g in generations]


def rollout_speed(cfg: dict[str, Any], batch: int, max_new_tokens: int, repeats: int) -> dict[str, Any]:
    policy, source = default_manager(cfg)
    prompts, others = (lambda p: (p[:batch], p[batch:]))(step_prompts(cfg, policy, 2 * batch))
    engines = {
        name: ManagerPolicy(
            policy.model, policy.tokenizer, **{**policy.settings(), "engine": name, "batch_size": batch}
        )
        for name in ("transformers", "native")
    }
    result: dict[str, Any] = {
        "model": source,
        "parameters": sum(p.numel() for p in {id(p): p for p in policy.model.parameters()}.values()),
        "batch": len(prompts),
        "prompt_tokens_mean": round(sum(map(len, prompts)) / len(prompts), 1),
        "max_new_tokens": max_new_tokens,
    }
    for label, temperature in (("greedy", 0.0), ("sampling_t1", 1.0)):
        sampling = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens)
        runs = {name: time_engine(engine, prompts, sampling, repeats) for name, engine in engines.items()}
        runs["native_warm"] = time_engine(engines["native"], prompts, sampling, repeats, others)
        row: dict[str, Any] = {}
        for name, (seconds, completions, _) in runs.items():
            tokens = sum(map(len, completions))
            row[name] = {"seconds": round(seconds, 3), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}
        row["ratio_tokens_per_s"] = round(row["native"]["tokens_per_s"] / row["transformers"]["tokens_per_s"], 2)
        row["ratio_tokens_per_s_warm"] = round(
            row["native_warm"]["tokens_per_s"] / row["transformers"]["tokens_per_s"], 2
        )
        if label == "greedy":
            same = [a == b for a, b in zip(runs["native"][1], runs["transformers"][1], strict=True)]
            row["identical_outputs"] = f"{sum(same)}/{len(same)}"
            warm = [a == b for a, b in zip(runs["native_warm"][1], runs["transformers"][1], strict=True)]
            row["identical_outputs_warm"] = f"{sum(warm)}/{len(warm)}"
            diffs = [
                float((a - b).abs().max())
                for a, b, ok in zip(runs["native"][2], runs["transformers"][2], same, strict=True)
                if ok and len(a)
            ]
            row["max_logprob_diff"] = max(diffs) if diffs else None
        result[label] = row
        print(label, json.dumps(row), flush=True)
    return result


def review_steps(cfg: dict[str, Any], count: int) -> tuple[list[str], list[Memory]]:
    """``count`` chunk steps of the default benchmark (chunk, memory holding every other earlier sentence)."""
    from finemem_lib.agents.prompts import chunk_sentences
    from finemem_lib.data.synthetic import build_synthetic

    chunks, memories = [], []
    for instance in build_synthetic(cfg["data"], cfg.get("seed", 0))["train"]:
        memory = Memory(id_style="short")
        for t, chunk in enumerate(instance.chunks):
            if t >= 2:
                chunks.append(chunk)
                memories.append(copy.deepcopy(memory))
                if len(chunks) == count:
                    return chunks, memories
            for sentence in chunk_sentences(chunk)[::2]:
                memory.apply(Operation(OpKind.INSERT, content=sentence), t)
    return chunks, memories


def review_speed(cfg: dict[str, Any], batch: int, repeats: int) -> dict[str, Any]:
    """Review-style chunk steps (the harness restates, the manager decides each line): decision tokens/s of
    transformers ``generate`` line by line, the native engine line by line, and the native engine on caches
    kept from line to line (:mod:`finemem_lib.agents.review_cache`, the default)."""
    from finemem_lib.agents import review_decoding

    policy, source = default_manager(cfg)
    chunks, memories = review_steps(cfg, batch)
    setups = {"transformers": ("transformers", False), "native_lines": ("native", False), "native": ("native", True)}
    result: dict[str, Any] = {"model": source, "style": policy.style, "restate": policy.restate, "steps": len(chunks)}
    if policy.style != "review":
        result["skipped"] = "the default manager is not a review-style one"
        return result
    for label, temperature in (("greedy", 0.0), ("sampling_t1", 1.0)):
        sampling = SamplingParams(temperature=temperature, max_new_tokens=256)
        runs = {}
        for name, (engine, cached) in setups.items():
            manager = ManagerPolicy(
                policy.model, policy.tokenizer, **{**policy.settings(), "engine": engine, "batch_size": batch}
            )
            review_decoding.CACHED_LINES = cached
            try:
                best = float("inf")
                for _ in range(repeats):
                    start = time.perf_counter()
                    generations = manager.act(chunks, memories, sampling, seed=0)[1]
                    best = min(best, time.perf_counter() - start)
            finally:
                review_decoding.CACHED_LINES = True
            runs[name] = (best, generations)
        row: dict[str, Any] = {}
        for name, (seconds, generations) in runs.items():
            tokens = sum(len(g.completion_ids) for g in generations)
            row[name] = {
                "seconds": round(seconds, 3),
                "decision_tokens": tokens,
                "tokens_per_s": round(tokens / seconds, 1),
            }
        for name in ("native_lines", "native"):
            row[f"ratio_tokens_per_s_{name}"] = round(
                row[name]["tokens_per_s"] / row["transformers"]["tokens_per_s"], 2
            )
        if label == "greedy":
            texts = [g.text for g in runs["transformers"][1]]
            for name in ("native_lines", "native"):
                same = sum(a == b.text for a, b in zip(texts, runs[name][1], strict=True))
                row[f"identical_outputs_{name}"] = f"{same}/{len(texts)}"
        result[label] = row
        print("review", label, json.dumps(row), flush=True)
    return result


# The GRPO step's configurations: before this engine and the prefix-shared log-probs, with the engine only, and both.
STEP_SETUPS = {
    "transformers": ("transformers", False),
    "native_unshared": ("native", False),
    "native": ("native", True),
}


def grpo_step_time(profile: str, engine: str, steps: int, shared_prefix: bool) -> dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _, trainer = build_trainer(profile, engine, steps, Path(tmp), shared_prefix)
        timer = PhaseTimer()
        undo = instrument(timer)
        start = time.perf_counter()
        try:
            trainer.train()
        finally:
            total = time.perf_counter() - start
            for restore in undo:
                restore()
    phases = {k: round(v, 3) for k, v in timer.totals.items()}
    return {
        "engine": engine,
        "shared_prefix": shared_prefix,
        "steps": steps,
        "total_s": round(total, 3),
        "step_s": round(total / steps, 3),
        "phases_s": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--grpo-steps", type=int, default=2, help="0 skips the GRPO step timing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_rollout.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_profile(args.profile)
    record: dict[str, Any] = {
        "command": "python benchmarks/bench_rollout.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1min_at_start": round(os.getloadavg()[0], 2),
            "torch_threads": args.threads,
            "torch": torch.__version__,
        },
        "rollout": rollout_speed(cfg, args.batch, args.max_new_tokens, args.repeats),
        "review_rollout": review_speed(cfg, args.batch, args.repeats),
    }
    if args.grpo_steps > 0 and (sft_manager_dir(profile_paths(cfg)) / "config.json").is_file():
        steps = {
            name: grpo_step_time(args.profile, engine, args.grpo_steps, shared)
            for name, (engine, shared) in STEP_SETUPS.items()
        }
        steps["ratio_step_time"] = round(steps["transformers"]["step_s"] / steps["native"]["step_s"], 2)
        steps["ratio_step_time_engine_only"] = round(
            steps["transformers"]["step_s"] / steps["native_unshared"]["step_s"], 2
        )
        record["grpo_step"] = steps
        print("grpo_step", json.dumps(steps), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"tokens/s ratio (greedy): {record['rollout']['greedy']['ratio_tokens_per_s']}x", end="")
    review = record["review_rollout"].get("greedy")
    if review:
        print(f"; review steps (greedy): {review['ratio_tokens_per_s_native']}x", end="")
    if "grpo_step" in record:
        print(f"; GRPO step-time ratio: {record['grpo_step']['ratio_step_time']}x")
    else:
        print()
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
