"""One-command GPU benchmark of the manager's rollouts and optimizer step (needs CUDA; vLLM for the vLLM rows).

For each architecture (Qwen3-0.6B and Qwen3-4B, built from their configs with random weights, bf16):

- rollout tokens/s of transformers ``generate``, the native engine and vLLM (colocated ``LLM``,
  ``gpu_memory_utilization`` from ``--vllm-memory``) on ``--prompts`` prompts x G = ``--generations``
  completions of ``--completion-tokens`` tokens (the stop token is disabled, so every completion has that length),
  prompts of ``--prompt-tokens`` random tokens (the paper's manager prompt budget is 4096, completions 2048;
  the defaults are cut to what one GPU holds next to the training state);
- one optimizer step (AdamW, bf16 autocast off: weights in bf16, as ``bf16: true`` trains) on G x prompts
  samples of prompt + completion tokens, micro-batch ``--micro-batch``, gradient checkpointing on:
  wall time, peak memory and MFU = 6 x parameters x tokens / (step time x ``--peak-tflops``).

Writes benchmarks/results/bench_gpu.json. Usage:
    python benchmarks/bench_gpu.py [--models qwen3-0.6b qwen3-4b] [--peak-tflops 989] [--skip-vllm]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

# Qwen3 dense configs (config.json of Qwen/Qwen3-0.6B and Qwen/Qwen3-4B), so nothing is downloaded.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "qwen3-0.6b": {
        "vocab_size": 151936,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 40960,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
    },
    "qwen3-4b": {
        "vocab_size": 151936,
        "hidden_size": 2560,
        "intermediate_size": 9728,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 40960,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
    },
}


def build(name: str, folder: Path):
    """A random-weight Qwen3 of the named architecture in bf16 on the GPU, also saved to ``folder`` (for vLLM)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**ARCHITECTURES[name])
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    _save_tokenizer_stub(folder, config.vocab_size)
    return model.cuda()


def _save_tokenizer_stub(folder: Path, vocab_size: int) -> None:
    """A word-level tokenizer over the model's vocabulary: vLLM loads one; prompts are given as token ids."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size)}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")), eos_token="t1", pad_token="t0"
    )
    tokenizer.save_pretrained(folder)


def prompts(count: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    shared = torch.randint(2, vocab, (length // 2,), generator=generator).tolist()  # a shared system prompt
    return [
        shared + torch.randint(2, vocab, (length - len(shared),), generator=generator).tolist() for _ in range(count)
    ]


def _timed(fn) -> tuple[float, Any]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, out


def rollout_transformers(model, batch: list[list[int]], new_tokens: int) -> dict[str, float]:
    ids = torch.tensor(batch, device="cuda")
    with torch.no_grad():
        seconds, _ = _timed(
            lambda: model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=1.0,
                top_k=0,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                pad_token_id=0,
            )
        )
    return {"seconds": round(seconds, 3), "tokens_per_s": round(len(batch) * new_tokens / seconds, 1)}


def rollout_native(model, batch: list[list[int]], new_tokens: int) -> dict[str, float]:
    from finemem_lib.agents.decoding import IncrementalDecoder

    decoder = IncrementalDecoder(model, stop_ids=[model.config.vocab_size + 1])  # never sampled: full length
    seconds, _ = _timed(lambda: decoder.decode(batch, new_tokens, temperature=1.0))
    return {"seconds": round(seconds, 3), "tokens_per_s": round(len(batch) * new_tokens / seconds, 1)}


def rollout_vllm(folder: Path, batch: list[list[int]], new_tokens: int, memory: float) -> dict[str, float]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(folder), gpu_memory_utilization=memory, max_model_len=len(batch[0]) + new_tokens, seed=0)
    params = SamplingParams(temperature=1.0, max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True, logprobs=0)
    inputs = [{"prompt_token_ids": p} for p in batch]
    llm.generate(inputs[:2], params, use_tqdm=False)  # warm-up (graph capture)
    seconds, _ = _timed(lambda: llm.generate(inputs, params, use_tqdm=False))
    return {"seconds": round(seconds, 3), "tokens_per_s": round(len(batch) * new_tokens / seconds, 1)}


def optimizer_step(model, samples: int, length: int, micro_batch: int, peak_tflops: float) -> dict[str, float]:
    model.train()
    model.gradient_checkpointing_enable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
    vocab = model.config.vocab_size
    torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        for _ in range(0, samples, micro_batch):
            ids = torch.randint(2, vocab, (micro_batch, length), device="cuda")
            loss = model(input_ids=ids, labels=ids).loss / max(1, samples // micro_batch)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (optimizer state allocated)
    seconds, _ = _timed(step)
    parameters = sum(p.numel() for p in model.parameters())
    flops = 6 * parameters * samples * length
    model.gradient_checkpointing_disable()
    model.eval()
    optimizer.state.clear()
    return {
        "seconds": round(seconds, 3),
        "tokens": samples * length,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "mfu": round(flops / seconds / (peak_tflops * 1e12), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    parser.add_argument("--prompts", type=int, default=8, help="distinct prompts (x G completions)")
    parser.add_argument("--generations", type=int, default=8, help="G")
    parser.add_argument("--prompt-tokens", type=int, default=2048)
    parser.add_argument("--completion-tokens", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100 SXM: 989)")
    parser.add_argument("--vllm-memory", type=float, default=0.5)
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/finemem_bench_gpu"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_gpu.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU (none found); the CPU benchmark is bench_rollout.py")

    record: dict[str, Any] = {
        "command": "python benchmarks/bench_gpu.py " + " ".join(f"--{k}={v}" for k, v in vars(args).items()),
        "gpu": torch.cuda.get_device_name(0),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "models": {},
    }
    for name in args.models:
        folder = args.workdir / name
        model = build(name, folder)
        batch = [
            p
            for p in prompts(args.prompts, args.prompt_tokens, model.config.vocab_size)
            for _ in range(args.generations)
        ]
        row: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters()), "rollout": {}}
        row["rollout"]["transformers"] = rollout_transformers(model, batch, args.completion_tokens)
        row["rollout"]["native"] = rollout_native(model, batch, args.completion_tokens)
        row["optimizer_step"] = optimizer_step(
            model, len(batch), args.prompt_tokens + args.completion_tokens, args.micro_batch, args.peak_tflops
        )
        model.cpu()
        del model
        gc.collect()
        torch.cuda.empty_cache()
        if not args.skip_vllm:
            row["rollout"]["vllm"] = rollout_vllm(folder, batch, args.completion_tokens, args.vllm_memory)
            gc.collect()
            torch.cuda.empty_cache()
        record["models"][name] = row
        print(name, json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
