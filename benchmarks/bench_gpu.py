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

vLLM rows are skipped, with the reason recorded, when vLLM is not installed or the device is not CUDA.
``--device cpu --models qwen3-tiny`` runs the same code on a CPU in seconds (``benchmarks/gpu_check.sh
--cpu-dry-run`` does); its figures say nothing about a GPU.

Writes benchmarks/results/bench_gpu.json (or ``--out``). Usage:
    python benchmarks/bench_gpu.py [--models qwen3-0.6b qwen3-4b] [--peak-tflops 989] [--skip-vllm]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import platform
import shlex
import sys
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
    # the same layer types at toy sizes: the dry run of the GPU check on a CPU
    "qwen3-tiny": {
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 1024,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
    },
}
# Dense bf16 peak of the cards this is run on (vendor datasheets, SXM parts), for MFU when --peak-tflops is not given.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}


def build(name: str, device: str, folder: Path | None = None):
    """A random-weight Qwen3 of the named architecture in bf16 on ``device``; saved to ``folder`` if given (vLLM)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**ARCHITECTURES[name])
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: seconds on a GPU, minutes for 4B on a CPU
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder)
        _save_tokenizer_stub(folder, config.vocab_size)
    return model.eval()


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


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> tuple[float, Any]:
    _synchronize(device)
    start = time.perf_counter()
    out = fn()
    _synchronize(device)
    return time.perf_counter() - start, out


def _peak_memory_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def rollout_transformers(model, batch: list[list[int]], new_tokens: int) -> dict[str, float | None]:
    device = model.device
    ids = torch.tensor(batch, device=device)
    _reset_peak_memory(device)
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
            ),
            device,
        )
    return _rollout_row(seconds, len(batch) * new_tokens, device)


def rollout_native(model, batch: list[list[int]], new_tokens: int) -> dict[str, float | None]:
    from finemem_lib.agents.decoding import IncrementalDecoder

    device = model.device
    decoder = IncrementalDecoder(model, stop_ids=[model.config.vocab_size + 1])  # never sampled: full length
    _reset_peak_memory(device)
    seconds, _ = _timed(lambda: decoder.decode(batch, new_tokens, temperature=1.0), device)
    return _rollout_row(seconds, len(batch) * new_tokens, device)


def _rollout_row(seconds: float, tokens: int, device: torch.device) -> dict[str, float | None]:
    return {
        "seconds": round(seconds, 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "peak_memory_gib": _peak_memory_gib(device),
    }


def rollout_vllm(folder: Path, batch: list[list[int]], new_tokens: int, memory: float) -> dict[str, float]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(folder), gpu_memory_utilization=memory, max_model_len=len(batch[0]) + new_tokens, seed=0)
    params = SamplingParams(temperature=1.0, max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True, logprobs=0)
    inputs = [{"prompt_token_ids": p} for p in batch]
    llm.generate(inputs[:2], params, use_tqdm=False)  # warm-up (graph capture)
    seconds, _ = _timed(lambda: llm.generate(inputs, params, use_tqdm=False), torch.device("cuda"))
    return {
        "seconds": round(seconds, 3),
        "tokens": len(batch) * new_tokens,
        "tokens_per_s": round(len(batch) * new_tokens / seconds, 1),
    }


def vllm_skip_reason(device: torch.device, skip: bool) -> str | None:
    """Why the vLLM row is not measured (None: it is)."""
    if skip:
        return "--skip-vllm"
    if device.type != "cuda":
        return f"vLLM needs a CUDA device, not {device.type}"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed"
    return None


def optimizer_step(
    model, samples: int, length: int, micro_batch: int, peak_tflops: float | None
) -> dict[str, float | int | None]:
    """One AdamW step over ``samples`` sequences of ``length`` tokens (timed after a warm-up step)."""
    device = model.device
    model.train()
    model.gradient_checkpointing_enable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=device.type == "cuda")
    vocab = model.config.vocab_size
    micro_batch = max(1, min(micro_batch, samples))
    parts = -(-samples // micro_batch)

    def step() -> None:
        for start in range(0, samples, micro_batch):
            ids = torch.randint(2, vocab, (min(micro_batch, samples - start), length), device=device)
            loss = model(input_ids=ids, labels=ids).loss / parts
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (optimizer state allocated)
    _reset_peak_memory(device)
    seconds, _ = _timed(step, device)
    parameters = sum(p.numel() for p in model.parameters())
    flops = 6 * parameters * samples * length
    model.gradient_checkpointing_disable()
    model.eval()
    optimizer.state.clear()
    return {
        "seconds": round(seconds, 3),
        "tokens": samples * length,
        "tokens_per_s": round(samples * length / seconds, 1),
        "peak_memory_gib": _peak_memory_gib(device),
        "mfu": round(flops / seconds / (peak_tflops * 1e12), 4) if peak_tflops else None,
    }


def environment(device: torch.device) -> dict[str, Any]:
    """The software and the device the figures were measured with."""
    import transformers

    info: dict[str, Any] = {
        "device": device.type,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=torch.cuda.get_device_name(device),
            capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
        )
    return info


def default_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops for card, tflops in PEAK_TFLOPS.items() if card in name), None)


def benchmark(name: str, args: argparse.Namespace, device: torch.device, peak: float | None) -> dict[str, Any]:
    """Every figure of one architecture."""
    skip_vllm = vllm_skip_reason(device, args.skip_vllm)
    folder = None if skip_vllm else args.workdir / name
    model = build(name, str(device), folder)
    batch = [
        p for p in prompts(args.prompts, args.prompt_tokens, model.config.vocab_size) for _ in range(args.generations)
    ]
    row: dict[str, Any] = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "sequences": len(batch),
        "prompt_tokens": args.prompt_tokens,
        "completion_tokens": args.completion_tokens,
        "rollout": {},
    }
    row["rollout"]["transformers"] = rollout_transformers(model, batch, args.completion_tokens)
    row["rollout"]["native"] = rollout_native(model, batch, args.completion_tokens)
    row["native_speedup"] = round(
        row["rollout"]["native"]["tokens_per_s"] / row["rollout"]["transformers"]["tokens_per_s"], 2
    )
    row["optimizer_step"] = optimizer_step(
        model, len(batch), args.prompt_tokens + args.completion_tokens, args.micro_batch, peak
    )
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if skip_vllm:
        row["rollout"]["vllm"] = {"skipped": skip_vllm}
    else:
        row["rollout"]["vllm"] = rollout_vllm(folder, batch, args.completion_tokens, args.vllm_memory)
        gc.collect()
        torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["qwen3-0.6b", "qwen3-4b"], choices=list(ARCHITECTURES))
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a dry run of the code)")
    parser.add_argument("--prompts", type=int, default=8, help="distinct prompts (x G completions)")
    parser.add_argument("--generations", type=int, default=8, help="G")
    parser.add_argument("--prompt-tokens", type=int, default=2048)
    parser.add_argument("--completion-tokens", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: H100/H200 989)")
    parser.add_argument("--vllm-memory", type=float, default=0.5)
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/finemem_bench_gpu"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_gpu.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU (none found); --device cpu is a dry run of the code")
    peak = args.peak_tflops or default_peak_tflops(device)
    record: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/bench_gpu.py", *(sys.argv[1:] if argv is None else argv)]),
        "environment": environment(device),
        "peak_tflops": peak,
        "models": {},
    }
    for name in args.models:
        record["models"][name] = row = benchmark(name, args, device, peak)
        print(name, json.dumps(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")  # after each model: a later failure keeps it
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
