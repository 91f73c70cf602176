"""One GRPO run, and a study of variants x seeds, from a profile: data, SFT start, trainer, run logs.

Where things go (``paths = profile_paths(cfg)``):

- Start: the profile's SFT manager (``<paths.data>/models/sft``, shared with notebook 02), see :func:`start_model`.
- Checkpoints and the final manager of a run: ``<paths.data>/grpo/<run>/`` (``checkpoint-N/``, ``final/``).
- Run log: ``<paths.runs>/03_<run>/run.json`` (provenance, settings, wall time, held-out before/after)
  and ``history.csv`` (TRL's log history: reward components, format rate, memory length, loss,
  KL, held-out QA per step), where ``<run> = <profile>_<variant>_s<seed>``.

A run whose output folder holds a checkpoint resumes from the last complete one.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from finemem_lib.agents.policy import MANAGER_META_FILE, load_manager
from finemem_lib.agents.reasoner import Reasoner, build_reasoner
from finemem_lib.agents.sft import policy_settings as profile_policy_settings
from finemem_lib.config import repo_root
from finemem_lib.data.instance import Instance
from finemem_lib.paths import ProfilePaths
from finemem_lib.pipeline import ensure_sft_manager, sft_manager_dir
from finemem_lib.training.config import (
    TrainingSettings,
    grpo_config,
    num_processes,
    run_rollout_settings,
    training_settings,
)
from finemem_lib.training.grpo import StepCreditGRPOTrainer
from finemem_lib.training.runs import config_hash, provenance, read_json, write_json

logger = logging.getLogger(__name__)

RUN_LOG = "run.json"
HISTORY = "history.csv"
FINAL_MODEL = "final"
RUN_IDENTITY = "finemem_run.json"  # in the checkpoint folder: which configuration its checkpoints belong to


@dataclass
class RunResult:
    """A finished run: its history and held-out scores before and after training."""

    name: str
    variant: str
    seed: int
    run_dir: Path
    model_dir: Path
    wall_s: float
    history: pd.DataFrame
    heldout_initial: dict[str, float] = field(default_factory=dict)
    heldout_final: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------- data and start
def load_training_data(cfg: Mapping[str, Any], paths: ProfilePaths) -> dict[str, list[Instance]]:
    """``{"train", "test"}``: the prepared data of notebook 01 when present, else the synthetic benchmark built here."""
    from finemem_lib.data.prepared import load_prepared, prepared_splits

    if {"train", "test"} <= set(prepared_splits(paths.data)):
        return {split: load_prepared(paths.data, split) for split in ("train", "test")}
    data = cfg.get("data", {})
    if data.get("kind", "synthetic") != "synthetic":
        return {split: load_prepared(paths.data, split) for split in ("train", "test")}  # says to run notebook 01
    from finemem_lib.data.synthetic import build_synthetic

    splits = build_synthetic(data, cfg.get("seed", 0))
    return {"train": splits["train"], "test": splits["test"]}


def start_model(cfg: Mapping[str, Any], paths: ProfilePaths) -> str | Path:
    """The model every GRPO run of a profile starts from.

    ``training.sft_model`` when set (a folder, relative to the project root; e.g. the ``full`` profile
    points at the default profile's SFT manager); otherwise the profile's SFT manager
    (:func:`finemem_lib.pipeline.ensure_sft_manager`, trained once if missing) when ``sft.enabled``;
    otherwise ``manager.model`` itself (the paper trains Qwen3-4B by RL directly).
    """
    configured = (cfg.get("training") or {}).get("sft_model")
    if configured:
        path = Path(configured) if Path(configured).is_absolute() else repo_root() / configured
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"training.sft_model {str(path)!r} holds no model (config.json missing): train that SFT manager first "
                "(notebooks 01-02 of the profile it belongs to) or point training.sft_model at a model folder"
            )
        return path
    if not (cfg.get("sft") or {}).get("enabled", True):
        model = (cfg.get("manager") or {}).get("model", "offline")
        if model == "offline":
            raise ValueError("sft.enabled is false: manager.model must name a pretrained model to start GRPO from")
        return model
    folder = sft_manager_dir(paths)
    if not (folder / MANAGER_META_FILE).is_file():
        if num_processes() > 1:
            raise RuntimeError(
                f"no SFT manager at {folder}; train it once in a single process (notebook 02 or 03, or the training "
                "CLI without accelerate) before a multi-process launch"
            )
        ensure_sft_manager(cfg, paths)
    return folder


def heldout_subset(instances: Sequence[Instance], limit: int | None) -> list[Instance]:
    """Up to ``limit`` instances taken round-robin over sources (all of them when ``limit`` is None)."""
    if limit is None or limit >= len(instances):
        return list(instances)
    by_source: dict[str, list[Instance]] = {}
    for instance in instances:
        by_source.setdefault(instance.source, []).append(instance)
    chosen: list[Instance] = []
    queues = [list(group) for group in by_source.values()]
    while len(chosen) < limit:
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return chosen


# ---------------------------------------------------------------------------- checkpoints
def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest ``checkpoint-N`` whose trainer state was fully written (a run killed mid-save leaves others)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    candidates = sorted(
        (p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for checkpoint in candidates:
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        return checkpoint
    return None


def _read_identity(output_dir: Path) -> dict[str, Any] | None:
    try:
        return read_json(output_dir / RUN_IDENTITY)
    except (FileNotFoundError, ValueError):
        return None


def _drop_incomplete_checkpoints(output_dir: Path, keep: Path | None) -> None:
    """Remove checkpoint folders newer than ``keep`` (half-written by a kill, or all of them when ``keep`` is None)."""
    keep_step = int(keep.name.split("-")[-1]) if keep else -1
    for checkpoint in output_dir.glob("checkpoint-*"):
        step = checkpoint.name.split("-")[-1]
        if step.isdigit() and int(step) > keep_step:
            logger.warning("removing incomplete checkpoint %s", checkpoint)
            shutil.rmtree(checkpoint, ignore_errors=True)


# ---------------------------------------------------------------------------- one run
def run_name(cfg: Mapping[str, Any], variant: str, seed: int) -> str:
    return f"{cfg.get('name', 'profile')}_{variant}_s{seed}"


def run_dirs(paths: ProfilePaths, name: str, log_prefix: str = "03") -> tuple[Path, Path]:
    """``(run log folder, checkpoint folder)`` of a run (``log_prefix``: the notebook that owns the log)."""
    return paths.runs / f"{log_prefix}_{name}", paths.data / "grpo" / name


def _heldout_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in history if "heldout/qa" in row]


def _strip(row: Mapping[str, Any]) -> dict[str, float]:
    return {k.removeprefix("heldout/"): v for k, v in row.items() if k.startswith("heldout/")}


def train_manager(
    cfg: Mapping[str, Any],
    paths: ProfilePaths,
    variant: str,
    seed: int,
    data: Mapping[str, Sequence[Instance]],
    sft_model: str | Path,
    reasoner: Reasoner | None = None,
    resume: bool = True,
    keep_checkpoints: bool = False,
    log_prefix: str = "03",
    **overrides: Any,
) -> RunResult:
    """Train the manager from ``sft_model`` with one reward variant and seed; write its run log.

    ``overrides`` replace ``training:`` keys (e.g. ``max_steps=2``). With ``resume`` the run goes on
    from the last complete checkpoint in its output folder, if any.
    """
    settings = training_settings(cfg, variant=variant, **overrides)
    name = run_name(cfg, variant, seed)
    run_dir, output_dir = run_dirs(paths, name, log_prefix)
    train, test = list(data["train"]), list(data["test"])
    previous_threads = torch.get_num_threads()
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    try:
        trainer = _build_trainer(cfg, settings, seed, train, test, sft_model, output_dir, reasoner)
        identity = {"config_hash": config_hash([cfg, settings.to_dict(), seed, str(sft_model)])}
        checkpoint = last_complete_checkpoint(output_dir) if resume else None
        if checkpoint and _read_identity(output_dir) != identity:
            logger.warning("run %s: checkpoints in %s are from another config; starting afresh", name, output_dir)
            checkpoint = None
        if trainer.accelerator.is_main_process:
            if output_dir.is_dir():
                _drop_incomplete_checkpoints(output_dir, checkpoint)
            write_json(output_dir / RUN_IDENTITY, identity)
        trainer.accelerator.wait_for_everyone()
        if checkpoint:
            logger.info("run %s: resuming from %s", name, checkpoint)
        record = provenance(
            cfg,
            seed,
            run=name,
            variant=variant,
            settings=settings.to_dict(),
            grpo_args={k: trainer.args.to_dict()[k] for k in _LOGGED_ARGS},
            sft_model=str(sft_model),
            resumed_from=str(checkpoint) if checkpoint else None,
            processes=trainer.accelerator.num_processes,
            status="running",
        )
        if trainer.accelerator.is_main_process:
            write_json(run_dir / RUN_LOG, record)
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        wall = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)
    history = trainer.state.log_history
    heldout = _heldout_rows(history)
    model_dir = output_dir / FINAL_MODEL
    trainer.save_model(str(model_dir))
    if trainer.accelerator.is_main_process:
        meta = {"policy": trainer.policy_settings, "grpo": {"run": name, "variant": variant, "seed": seed}}
        write_json(model_dir / MANAGER_META_FILE, meta)
        if not keep_checkpoints:
            for checkpoint_dir in output_dir.glob("checkpoint-*"):
                shutil.rmtree(checkpoint_dir, ignore_errors=True)
        pd.DataFrame(history).to_csv(run_dir / HISTORY, index=False)
        record.update(
            status="finished",
            wall_s=round(wall, 2),
            steps=trainer.state.global_step,
            model_dir=str(model_dir),
            heldout_initial=_strip(heldout[0]) if heldout else {},
            heldout_final=_strip(heldout[-1]) if heldout else {},
            finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        write_json(run_dir / RUN_LOG, record)
    trainer.accelerator.wait_for_everyone()
    return RunResult(
        name=name,
        variant=variant,
        seed=seed,
        run_dir=run_dir,
        model_dir=model_dir,
        wall_s=wall,
        history=pd.DataFrame(history),
        heldout_initial=_strip(heldout[0]) if heldout else {},
        heldout_final=_strip(heldout[-1]) if heldout else {},
    )


_LOGGED_ARGS = (
    "num_generations",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "instances_per_device",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "loss_type",
    "epsilon",
    "beta",
    "temperature",
    "max_completion_length",
    "num_iterations",
    "max_steps",
    "num_train_epochs",
    "save_steps",
)


def _build_trainer(
    cfg: Mapping[str, Any],
    settings: TrainingSettings,
    seed: int,
    train: list[Instance],
    test: list[Instance],
    sft_model: str | Path,
    output_dir: Path,
    reasoner: Reasoner | None,
) -> StepCreditGRPOTrainer:
    policy = load_manager(sft_model, **profile_policy_settings(cfg))  # prompt settings come from the profile
    train_settings, eval_settings = run_rollout_settings(cfg)
    args = grpo_config(settings, train_settings, str(output_dir), seed, [inst.num_chunks for inst in train])
    return StepCreditGRPOTrainer(
        policy,
        args,
        train,
        reasoner or build_reasoner(cfg.get("reasoner")),
        train_settings,
        heldout_instances=heldout_subset(test, settings.heldout.max_instances),
        heldout_settings=eval_settings,
        heldout_every=settings.heldout.every,
    )


def load_run(run_dir: str | Path) -> RunResult:
    """A finished run from its log folder."""
    run_dir = Path(run_dir)
    record = read_json(run_dir / RUN_LOG)
    if record.get("status") != "finished":
        raise ValueError(f"the run in {run_dir} has not finished (status {record.get('status')!r})")
    return RunResult(
        name=record["run"],
        variant=record["variant"],
        seed=int(record["seed"]),
        run_dir=run_dir,
        model_dir=Path(record.get("model_dir") or ""),
        wall_s=float(record["wall_s"]),
        history=pd.read_csv(run_dir / HISTORY),
        heldout_initial=record.get("heldout_initial", {}),
        heldout_final=record.get("heldout_final", {}),
    )


def finished_run(
    paths: ProfilePaths, cfg: Mapping[str, Any], variant: str, seed: int, log_prefix: str = "03"
) -> RunResult | None:
    """The finished run of (variant, seed) if its log matches this config exactly, else None."""
    run_dir, _ = run_dirs(paths, run_name(cfg, variant, seed), log_prefix)
    try:
        record = read_json(run_dir / RUN_LOG)
    except FileNotFoundError:
        return None
    if record.get("status") != "finished" or record.get("config_hash") != config_hash(cfg):
        return None
    return load_run(run_dir)


# ---------------------------------------------------------------------------- a study
def run_study(
    cfg: Mapping[str, Any],
    paths: ProfilePaths,
    variants: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    data: Mapping[str, Sequence[Instance]] | None = None,
    sft_model: str | Path | None = None,
    reuse_finished: bool = True,
    resume: bool = True,
    keep_checkpoints: bool = False,
    **overrides: Any,
) -> list[RunResult]:
    """Train every (variant, seed) from the same SFT start; finished runs with the same config are reused."""
    settings = training_settings(cfg)
    data = data or load_training_data(cfg, paths)
    sft_model = sft_model or start_model(cfg, paths)
    reasoner = build_reasoner(cfg.get("reasoner"))
    results = []
    for variant in variants or settings.variants:
        for seed in seeds if seeds is not None else settings.seeds:
            done = finished_run(paths, cfg, variant, seed) if reuse_finished and not overrides else None
            if done is not None:
                logger.info("reusing finished run %s", done.name)
                results.append(done)
                continue
            results.append(
                train_manager(
                    cfg, paths, variant, seed, data, sft_model, reasoner, resume, keep_checkpoints, **overrides
                )
            )
    return results


def heldout_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """One row per run: held-out global QA, memory length and format rate before and after training."""
    rows = []
    for r in results:
        row = {"variant": r.variant, "seed": r.seed, "wall_s": round(r.wall_s, 1)}
        for when, scores in (("initial", r.heldout_initial), ("final", r.heldout_final)):
            for key in ("qa", "memory_tokens", "format_rate", "chunk_qa"):
                row[f"{key}_{when}"] = scores.get(key)
        rows.append(row)
    return pd.DataFrame(rows)


def curves_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """Long table of the per-step training log of every run (one row per logged step)."""
    frames = []
    for r in results:
        frame = r.history.copy()
        frame.insert(0, "seed", r.seed)
        frame.insert(0, "variant", r.variant)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_study_report(
    cfg: Mapping[str, Any], paths: ProfilePaths, results: Sequence[RunResult], command: str | None = None
) -> dict[str, str]:
    """Tables, figures and a study log (command, runs, versions, revision) of some runs, named ``03_<profile>_*``."""
    import matplotlib.pyplot as plt

    from finemem_lib.training.plots import plot_heldout, plot_learning_curves

    name = cfg.get("name", "profile")
    prefix = f"03_{name}"
    table, curves = heldout_table(results), curves_table(results)
    files = {
        "heldout_table": paths.tables / f"{prefix}_heldout.csv",
        "curves_table": paths.tables / f"{prefix}_curves.csv",
        "curves_figure": paths.figures / f"{prefix}_learning_curves.png",
        "heldout_figure": paths.figures / f"{prefix}_heldout.png",
        "study_log": paths.runs / f"{prefix}_study.json",
    }
    table.to_csv(files["heldout_table"], index=False)
    curves.to_csv(files["curves_table"], index=False)
    plt.close(plot_learning_curves(curves, path=files["curves_figure"]))  # saved; notebooks show the files
    plt.close(plot_heldout(table, path=files["heldout_figure"]))
    study = provenance(
        cfg,
        seed=int(cfg.get("seed", 0)),
        command=command or f"python -m finemem_lib.training.cli --profile {name} --report",
        runs=[{"run": r.name, "variant": r.variant, "seed": r.seed, "wall_s": round(r.wall_s, 1)} for r in results],
        total_run_wall_s=round(sum(r.wall_s for r in results), 1),
        outputs={k: str(v) for k, v in files.items() if k != "study_log"},
    )
    write_json(files["study_log"], study)
    return {k: str(v) for k, v in files.items()}
