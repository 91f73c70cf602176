"""SFT cold start of the memory manager on the imperfect teacher's traces, and its held-out check.

:func:`build_sft_examples` replays the teacher through a Memory so that every example's prompt shows
the memory view the manager would see at that step; the completion is the teacher's tool calls.
Examples are TRL conversational prompt-completion rows (loss on the completion only).
:func:`train_sft_manager` trains the offline tokenizer and model (or loads a given causal LM) and
fine-tunes it with TRL's ``SFTTrainer``, batching examples of similar length together
(``train_sampling_strategy="group_by_length"``). :func:`evaluate_format` runs the manager on
held-out instances and measures what RL needs: parsable, executable operations (greedy) and varied,
mostly valid samples at temperature 1.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from finemem_lib.agents import prompts
from finemem_lib.agents.offline_model import build_offline_model, count_parameters, tokenizer_corpus, train_tokenizer
from finemem_lib.agents.policy import MANAGER_META_FILE, ManagerPolicy, SamplingParams, id_style_for, load_manager
from finemem_lib.agents.sft_loss import decision_weighted_loss
from finemem_lib.agents.teacher import TeacherConfig, replay_teacher
from finemem_lib.core.memory import Memory, OpKind
from finemem_lib.core.ops import format_score, operation_to_call, parse_operations, render_tool_calls, tool_schemas
from finemem_lib.data.instance import Instance
from finemem_lib.infra import determinism
from finemem_lib.infra.machine import machine_info
from finemem_lib.infra.paths import repo_relative
from finemem_lib.infra.progress import progress_enabled

logger = logging.getLogger(__name__)

__all__ = [
    "build_sft_examples",
    "evaluate_format",
    "free_cpu_threads",
    "load_manager",
    "sft_stats",
    "train_sft_manager",
]

OFFLINE = "offline"


# ---------------------------------------------------------------------------- dataset
def assistant_tool_message(
    ops: Sequence[Any], style: str, sentences: Sequence[str] = (), hints: Sequence[Any] | None = None
) -> dict[str, Any]:
    """An assistant message whose ``tool_calls`` are the operations (arguments as JSON strings,
    so a dataset table never adds null-valued keys of other calls); in the ``review`` style, the review of
    the chunk's ``sentences`` as the message's text."""
    if style == "review":
        return {"role": "assistant", "content": render_tool_calls(ops, style, sentences, hints)}
    calls = []
    for op in ops:
        call = operation_to_call(op, style)
        calls.append(
            {
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)},
            }
        )
    return {"role": "assistant", "content": "", "tool_calls": calls}


def build_sft_examples(
    instances: Sequence[Instance],
    teacher: TeacherConfig | None = None,
    style: str = "extractive",
    view_k: int = 5,
    id_style: str | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    view_order: str = "recency",
    view_related: int = 0,
    replays: int = 1,
    numbering: str = "before",
    review_hints: bool = False,
) -> list[dict[str, Any]]:
    """One prompt-completion example per chunk step of every instance, from the teacher's replay.

    The prompts show the manager's view (``view_k`` recent items in ``view_order`` plus ``view_related``
    items related to the chunk, as :class:`~finemem_lib.agents.policy.ManagerPolicy` shows them).
    ``id_style`` defaults to the op style's (short ids for extractive, hex for content);
    ``chat_template_kwargs`` (e.g. Qwen3's ``enable_thinking``) are passed to the chat template by TRL.
    ``replays`` > 1 replays the teacher that many times per instance with seeds ``seed, seed + 1, ...`` (other
    coin flips on the same text: more examples of what to keep, the same positions). ``review_hints``: the
    review lines show each sentence's hinted item, and the teacher updates only the item a line shows.
    """
    extra = {"chat_template_kwargs": dict(chat_template_kwargs)} if chat_template_kwargs else {}
    tools = json.dumps(tool_schemas(style))
    id_style = id_style or id_style_for(style)
    examples = []
    teacher = teacher or TeacherConfig()
    if replays < 1:
        raise ValueError(f"sft.teacher_replays must be >= 1, got {replays}")
    for instance in instances:
        steps = [
            step
            for r in range(replays)
            for step in replay_teacher(
                instance,
                replace(teacher, seed=teacher.seed + r),
                view_k,
                id_style,
                style,
                view_order,
                view_related,
                hints=review_hints and style == "review",
            )
        ]
        for step in steps:
            examples.append(
                {
                    "prompt": prompts.build_messages(
                        step.chunk, step.view, style, sentences=step.sentences, numbering=numbering
                    ),
                    "completion": [assistant_tool_message(step.ops, style, step.sentences, step.hints)],
                    "tools": tools,
                    **extra,
                }
            )
    return examples


# ---------------------------------------------------------------------------- training
def _section(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = cfg.get(name) or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"profile section {name!r} must be a mapping, got {type(value).__name__}")
    return dict(value)


def policy_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    manager, memory = _section(cfg, "manager"), _section(cfg, "memory")
    return {
        "style": memory.get("op_style", "extractive"),
        "view_k": int(memory.get("view_k", 5)),
        "max_prompt_tokens": int(manager.get("max_prompt_tokens", 4096)),
        "batch_size": int(manager.get("batch_size", 16)),
        "chat_template_kwargs": dict(manager.get("chat_template_kwargs") or {}),
        "view_order": str(memory.get("view_order", "recency")),
        "engine": str(manager.get("engine", "native")),
        "compile": str(manager.get("compile", "off")),
        "view_related": int(memory.get("view_related", 0)),
        "numbering": str(memory.get("sentence_numbers", "before")),
        "restate": str(memory.get("restate", "harness")),
        "review_hints": bool(memory.get("review_hints", False)),
    }


def _initial_model(cfg: Mapping[str, Any], train_instances: Sequence[Instance], style: str) -> tuple[Any, Any]:
    """The model to fine-tune: the offline Qwen3 (tokenizer trained here) or a pretrained causal LM."""
    manager = _section(cfg, "manager")
    source = manager.get("model", OFFLINE)
    if source == OFFLINE:
        sizes = dict(manager.get("offline") or {})
        vocab_size = int(sizes.pop("vocab_size", 2048))
        tokenizer = train_tokenizer(tokenizer_corpus(train_instances, styles=(style,)), vocab_size=vocab_size)
        return build_offline_model(tokenizer, sizes, seed=int(cfg.get("seed", 0))), tokenizer
    policy = load_manager(source)
    return policy.model, policy.tokenizer


def free_cpu_threads() -> int:
    """CPU threads worth using now: the cores not already busy (1-minute load average), at least 1.

    On a shared machine, more torch threads than free cores makes training slower, not faster.
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, round(cores - busy)))


def _sft_args(sft: Mapping[str, Any], work_dir: str | Path, seed: int):
    from trl import SFTConfig

    on_gpu = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(work_dir),
        num_train_epochs=float(sft.get("epochs", 3)),
        max_steps=int(sft.get("max_steps", -1)),
        per_device_train_batch_size=int(sft.get("batch_size", 8)),
        gradient_accumulation_steps=int(sft.get("grad_accum", 1)),
        learning_rate=float(sft.get("learning_rate", 2e-3)),
        lr_scheduler_type=str(sft.get("lr_scheduler", "cosine")),
        warmup_steps=float(sft.get("warmup", 0.05)),
        weight_decay=float(sft.get("weight_decay", 0.0)),
        max_length=int(sft.get("max_length", 1024)),
        completion_only_loss=not bool(sft.get("prompt_loss", False)),
        train_sampling_strategy="group_by_length",
        activation_checkpointing=bool(sft.get("activation_checkpointing", False)),
        bf16=bool(sft.get("bf16", False)) and on_gpu,
        use_cpu=not on_gpu,
        logging_steps=int(sft.get("logging_steps", 10)),
        save_strategy="no",
        report_to="none",
        disable_tqdm=not progress_enabled(),
        seed=seed,
        data_seed=seed,
    )


def train_sft_manager(
    cfg: Mapping[str, Any],
    train_instances: Sequence[Instance],
    out_dir: str | Path,
    identity: Mapping[str, Any] | None = None,
) -> Path:
    """Cold-start the manager by SFT on the teacher's traces; returns the saved model folder.

    Reads ``memory.op_style``/``memory.view_k``, ``manager`` (model and sizes) and ``sft`` (teacher
    knobs, epochs, batch size, learning rate, ...) from the profile. The folder holds the model, the
    tokenizer and ``finemem_manager.json`` (policy settings and training stats: wall time, examples,
    tokens, parameters, loss curve), the ``identity`` it was trained for (see
    :func:`finemem_lib.training.start.sft_identity`) and the thread/determinism settings; load it with
    :func:`load_manager`. Threads: ``sft.num_threads``, else ``runtime.threads``, else the free cores.
    """
    from datasets import Dataset
    from trl import SFTTrainer

    if not train_instances:
        raise ValueError("train_sft_manager needs at least one training instance")
    out_dir = Path(out_dir)
    sft = _section(cfg, "sft")
    seed = int(cfg.get("seed", 0))
    settings = policy_settings(cfg)
    threads = determinism.runtime_threads(cfg, "sft") or free_cpu_threads()
    previous_threads = torch.get_num_threads()
    runtime = determinism.configure(cfg, seed, threads=threads)
    try:
        started = time.perf_counter()
        teacher = TeacherConfig.from_mapping(sft.get("teacher"))
        model, tokenizer = _initial_model(cfg, train_instances, settings["style"])
        examples = build_sft_examples(
            train_instances,
            teacher,
            settings["style"],
            settings["view_k"],
            chat_template_kwargs=settings["chat_template_kwargs"],
            view_order=settings["view_order"],
            view_related=settings["view_related"],
            replays=int(sft.get("teacher_replays", 1)),
            numbering=settings["numbering"],
            review_hints=settings["review_hints"],
        )
        with tempfile.TemporaryDirectory(prefix="finemem-sft-") as work_dir:
            weight = float(sft.get("decision_weight", 1.0))
            loss = decision_weighted_loss(tokenizer, weight, settings["style"]) if weight != 1.0 else None
            trainer = SFTTrainer(
                model=model,
                args=_sft_args(sft, work_dir, seed),
                train_dataset=Dataset.from_list(examples),
                processing_class=tokenizer,
                compute_loss_func=loss,
            )
            train_started, cpu_started = time.perf_counter(), time.process_time()
            trainer.train()
            finished, cpu_finished = time.perf_counter(), time.process_time()
    finally:
        torch.set_num_threads(previous_threads)
    prepared = trainer.train_dataset
    lengths = [len(ids) for ids in prepared["input_ids"]]
    n_loss_tokens = sum(sum(label != -100 for label in labels) for labels in prepared["labels"])
    max_length = int(sft.get("max_length", 1024))
    n_truncated = sum(length >= max_length for length in lengths)
    if n_truncated:
        logger.warning("%d SFT examples were cut at sft.max_length=%d; raise it", n_truncated, max_length)
    stats = {
        "examples": len(examples),
        "examples_trained": len(lengths),
        "examples_truncated": n_truncated,
        "tokens_per_epoch": sum(lengths),
        "max_example_tokens": max(lengths, default=0),
        "completion_tokens_per_epoch": n_loss_tokens,
        "parameters": count_parameters(model),
        "epochs": float(sft.get("epochs", 3)),
        "steps": trainer.state.global_step,
        "train_wall_s": round(finished - train_started, 2),
        "total_wall_s": round(finished - started, 2),
        "train_cpu_s": round(cpu_finished - cpu_started, 2),
        "threads": threads,
        "teacher": vars(teacher),
        "loss_curve": [
            {"step": entry["step"], "loss": entry["loss"]} for entry in trainer.state.log_history if "loss" in entry
        ],
    }
    policy = ManagerPolicy(model, tokenizer, **settings)
    extra = {"sft": stats, "model_source": _section(cfg, "manager").get("model"), "runtime": runtime}
    extra["machine"] = machine_info()
    if identity is not None:
        extra["identity"] = dict(identity)
    policy.save_pretrained(out_dir, extra=extra)
    summary = {k: v for k, v in stats.items() if k not in ("loss_curve", "teacher")}
    logger.info("SFT manager saved to %s (%s)", repo_relative(out_dir), summary)
    return out_dir


def sft_stats(path: str | Path) -> dict[str, Any]:
    """The training stats saved next to an SFT model."""
    meta_path = Path(path) / MANAGER_META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"no {MANAGER_META_FILE} in {path}; was the model saved by train_sft_manager?")
    return json.loads(meta_path.read_text()).get("sft", {})


# ---------------------------------------------------------------------------- evaluation
def _call_stats(text: str, style: str, memory: Memory, sentences: Sequence[str]) -> dict[str, Any]:
    """Parse one completion and check it against the memory and chunk without changing the memory."""
    parsed = parse_operations(text, style)
    ops = parsed.operations
    with_sentence = [op for op in ops if op.sentence is not None]
    with_id = [op for op in ops if op.kind in (OpKind.UPDATE, OpKind.DELETE)]
    return {
        "parsed": parsed,
        "parse_ok": parsed.n_emitted > 0 and parsed.n_valid == parsed.n_emitted,
        "n_sentence_ops": len(with_sentence),
        "n_sentence_ok": sum(1 <= op.sentence <= len(sentences) for op in with_sentence),
        "n_id_ops": len(with_id),
        "n_id_ok": sum(op.item_id in memory for op in with_id),
        "kinds": Counter(op.kind.value for op in ops),
    }


def _rate(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def evaluate_format(
    policy: ManagerPolicy,
    instances: Sequence[Instance],
    n_samples: int = 8,
    max_prompts: int = 48,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Held-out check of a manager.

    Greedy episodes (the manager's own ops applied to its memory, instances batched step by step)
    give: ``parse_rate`` (completions whose calls all parse), ``format_rate`` (mean r_fmt),
    ``sentence_valid_rate`` (sentence numbers inside the chunk), ``id_valid_rate`` (UPDATE/DELETE
    ids present in memory), ``finished_rate`` (stopped before the token limit) and, when the
    synthetic metadata is there, the share of stored sentences that are facts/updates/examples and
    the share of those the manager stored. Then ``n_samples`` completions at ``temperature`` for up
    to ``max_prompts`` of those steps give ``t1_valid_rate`` (r_fmt == 1) and ``t1_distinct``
    (distinct completions / samples, averaged over prompts).
    """
    greedy = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    id_style = id_style_for(policy.style)
    memories = [Memory(id_style=id_style, seed=seed) for _ in instances]
    records: list[dict[str, Any]] = []
    stored_roles: Counter[str] = Counter()
    useful_total = 0
    for step in range(max((inst.num_chunks for inst in instances), default=0)):
        active = [i for i, inst in enumerate(instances) if step < inst.num_chunks]
        chunks = [instances[i].chunks[step] for i in active]
        steps, generations = policy.act(chunks, [memories[i] for i in active], greedy, seed=seed)
        for i, prompt, generation in zip(active, steps, generations, strict=True):
            memory, sentences = memories[i], prompt.sentences or prompts.chunk_sentences(chunks[active.index(i)])
            snapshot = memory.snapshot()
            stats = _call_stats(generation.text, policy.style, memory, sentences)
            results = memory.apply_all(stats["parsed"].operations, step, sentences)
            stats["format"] = format_score(stats["parsed"], results)
            stats["finished"] = generation.finished
            records.append({**stats, "prompt": prompt, "snapshot": snapshot, "sentences": sentences})
            roles = _sentence_roles(instances[i], step)
            if roles:
                useful_total += sum(role in ("fact", "update", "example") for role in roles)
                for op, result in zip(stats["parsed"].operations, results, strict=True):
                    if result.ok and op.sentence is not None and 1 <= op.sentence <= len(roles):
                        stored_roles[roles[op.sentence - 1]] += 1
    report = _greedy_report(records, stored_roles, useful_total)
    report.update(_sampling_report(policy, records, n_samples, max_prompts, temperature, max_new_tokens, seed))
    return report


def _sentence_roles(instance: Instance, step: int) -> list[str]:
    meta = instance.metadata.get("sentences") if isinstance(instance.metadata, Mapping) else None
    if not isinstance(meta, list) or step >= len(meta):
        return []
    return [str(m.get("role")) for m in meta[step]]


def _greedy_report(records: list[dict[str, Any]], stored_roles: Counter[str], useful_total: int) -> dict[str, Any]:
    kinds: Counter[str] = Counter()
    for record in records:
        kinds.update(record["kinds"])
    n_stored = sum(stored_roles.values())
    useful_stored = sum(stored_roles[r] for r in ("fact", "update", "example"))
    return {
        "steps": len(records),
        "parse_rate": _rate(sum(r["parse_ok"] for r in records), len(records)),
        "format_rate": _rate(sum(r["format"] for r in records), len(records)),
        "sentence_valid_rate": _rate(
            sum(r["n_sentence_ok"] for r in records), sum(r["n_sentence_ops"] for r in records)
        ),
        "id_valid_rate": _rate(sum(r["n_id_ok"] for r in records), sum(r["n_id_ops"] for r in records)),
        "finished_rate": _rate(sum(r["finished"] for r in records), len(records)),
        "ops_per_step": _rate(sum(kinds.values()), len(records)),
        "op_kinds": dict(kinds),
        "stored_useful_precision": _rate(useful_stored, n_stored),
        "stored_useful_recall": _rate(useful_stored, useful_total),
    }


def _sampling_report(
    policy: ManagerPolicy,
    records: list[dict[str, Any]],
    n_samples: int,
    max_prompts: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
) -> dict[str, Any]:
    if n_samples < 1 or max_prompts < 1 or not records:
        return {}
    stride = max(1, len(records) // max_prompts)
    chosen = records[::stride][:max_prompts]
    prompt_ids = [record["prompt"].ids for record in chosen for _ in range(n_samples)]
    sampling = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens)
    generations = policy.generate(prompt_ids, sampling, seed=seed + 1)
    memory = Memory(id_style=id_style_for(policy.style))
    valid, distinct = [], []
    for index, record in enumerate(chosen):
        texts = [g.text for g in generations[index * n_samples : (index + 1) * n_samples]]
        distinct.append(len(set(texts)) / n_samples)
        for text in texts:
            memory.restore(record["snapshot"])
            parsed = parse_operations(text, policy.style)
            results = memory.apply_all(parsed.operations, 0, record["sentences"])
            valid.append(format_score(parsed, results) == 1.0)
    return {
        "t1_prompts": len(chosen),
        "t1_samples": len(valid),
        "t1_valid_rate": _rate(sum(valid), len(valid)),
        "t1_distinct": _rate(sum(distinct), len(distinct)),
        "t1_temperature": temperature,
    }
