"""One GRPO run, and a study of variants x seeds, from a profile: data, SFT start, trainer, run logs.

Where things go (``paths = profile_paths(cfg)``):

- Start: the profile's SFT manager (``<paths.data>/models/sft``, shared with notebook 02), see :func:`start_model`.
- Checkpoints and the final manager of a run: ``<paths.data>/grpo/<run>/`` (``checkpoint-N/``, ``final/``).
- Run log: ``<paths.runs>/03_<run>/run.json`` (provenance, settings, wall time, held-out before/after)
  and ``history.csv`` (TRL's log history: reward components, format rate, memory length, loss,
  KL, held-out QA per step), where ``<run> = <profile>_<variant>_s<seed>``.

A finished run is reused only when its identity matches: configuration, seed, the content hash of the
start model's weights and the content hash of the data (:func:`reusable_run`; ``reuse="never"`` or
``"always"`` forces either). A run whose output folder holds checkpoints of the same identity resumes
from the newest one that loads (:func:`checkpoint_problem`), falling back to an older one.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from finemem_lib.agents.policy import MANAGER_META_FILE, load_manager
from finemem_lib.agents.reasoner import Reasoner, build_reasoner
from finemem_lib.agents.sft import policy_settings as profile_policy_settings
from finemem_lib.core.tokens import token_counter_from_config
from finemem_lib.data.instance import Instance
from finemem_lib.infra import atomic, determinism
from finemem_lib.infra.atomic import CorruptFileError
from finemem_lib.infra.config import repo_root
from finemem_lib.infra.paths import ProfilePaths, from_repo, repo_relative
from finemem_lib.repro.pipeline import ensure_sft_manager, sft_manager_dir
from finemem_lib.training.config import (
    TrainingSettings,
    grpo_config,
    num_processes,
    run_rollout_settings,
    training_settings,
)
from finemem_lib.training.grpo import StepCreditGRPOTrainer
from finemem_lib.training.runs import (
    data_hash,
    identity_changes,
    model_hash,
    provenance,
    read_json,
    run_identity,
    write_json,
)
from finemem_lib.training.vllm_rollout import vllm_grpo_args

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


def start_model(cfg: Mapping[str, Any], paths: ProfilePaths, reuse_sft: str = "auto") -> str | Path:
    """The model every GRPO run of a profile starts from.

    ``training.sft_model`` when set (a folder, relative to the project root; e.g. the ``full`` profile
    points at the default profile's SFT manager); otherwise the profile's SFT manager
    (:func:`finemem_lib.repro.pipeline.ensure_sft_manager`: reused when its identity matches this profile and
    data, trained otherwise, per ``reuse_sft``) when ``sft.enabled``; otherwise ``manager.model``
    itself (the paper trains Qwen3-4B by RL directly).
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
    if num_processes() > 1:
        if not (folder / MANAGER_META_FILE).is_file():
            raise RuntimeError(
                f"no SFT manager at {folder}; train it once in a single process (notebook 02 or 03, or the training "
                "CLI without accelerate) before a multi-process launch"
            )
        return folder
    return ensure_sft_manager(cfg, paths, reuse=reuse_sft)


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
REQUIRED_CHECKPOINT_FILES = ("trainer_state.json",)  # + model weights and optimizer state (below)
_TORCH_FILES = (".pt", ".pth", ".bin")


def _checkpoint_step(path: Path) -> int | None:
    step = path.name.removeprefix("checkpoint-")
    return int(step) if path.name.startswith("checkpoint-") and step.isdigit() and path.is_dir() else None


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The ``checkpoint-N`` folders of a run, newest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if _checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: _checkpoint_step(p) or 0, reverse=True)


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is unusable: a header that does not parse, or a size other than it declares."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len <= 0 or 8 + header_len > size:
                return f"truncated ({size} bytes, header of {header_len})"
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError) as exc:
        return f"unreadable header ({exc})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    expected = 8 + header_len + max(ends, default=0)
    return None if size == expected else f"truncated ({size} of {expected} bytes)"


def _torch_file_problem(path: Path) -> str | None:
    """Why a ``torch.save`` file is unusable (it is a zip archive: a torn one has no directory or a bad CRC)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        return f"not a complete torch archive ({exc})"
    return f"corrupt member {bad}" if bad else None


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """Why a checkpoint cannot be resumed from; None when its state, weights, optimizer and RNG files all load.

    A DeepSpeed checkpoint keeps weights and optimizer in ``global_step*/`` (its own format, not checked here).
    """
    checkpoint = Path(checkpoint)
    for name in REQUIRED_CHECKPOINT_FILES:
        if not (checkpoint / name).is_file():
            return f"{name} missing"
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError) as exc:
        return f"trainer_state.json unreadable ({exc})"
    files = sorted(p for p in checkpoint.iterdir() if p.is_file())
    deepspeed = any(p.is_dir() for p in checkpoint.glob("global_step*"))
    if not deepspeed:
        if not any(p.suffix == ".safetensors" or p.name.startswith("pytorch_model") for p in files):
            return "no model weights"
        if not (checkpoint / "optimizer.pt").is_file():
            return "optimizer.pt missing"
    for path in files:
        if path.suffix == ".safetensors":
            problem = _safetensors_problem(path)
        elif path.suffix in _TORCH_FILES:
            problem = _torch_file_problem(path)
        else:
            continue
        if problem:
            return f"{path.name}: {problem}"
    return None


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest ``checkpoint-N`` whose files all load; damaged newer ones are named in the log and skipped."""
    damaged = []
    for checkpoint in checkpoints(output_dir):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            if damaged:
                logger.warning(
                    "%s cannot be resumed from (%s); falling back to %s",
                    ", ".join(d for d, _ in damaged),
                    "; ".join(f"{d}: {why}" for d, why in damaged),
                    checkpoint.name,
                )
            return checkpoint
        damaged.append((checkpoint.name, problem))
    if damaged:
        logger.warning("no checkpoint can be resumed from (%s)", "; ".join(f"{d}: {why}" for d, why in damaged))
    return None


def _read_identity(output_dir: Path) -> dict[str, Any] | None:
    """The identity stored next to a run's checkpoints; None when there is none; CorruptFileError when torn."""
    try:
        stored = read_json(output_dir / RUN_IDENTITY)
    except FileNotFoundError:
        return None
    if not isinstance(stored, dict):
        raise CorruptFileError(f"{output_dir / RUN_IDENTITY} does not hold a JSON object")
    return stored


def _set_aside(output_dir: Path, found: Sequence[Path], why: str) -> Path:
    """Move checkpoints whose run cannot be confirmed next to the output folder (never deleted); returns where."""
    aside = output_dir.with_name(f"{output_dir.name}.unverified-{time.strftime('%Y%m%dT%H%M%S')}")
    aside.mkdir(parents=True, exist_ok=True)
    for checkpoint in found:
        shutil.move(str(checkpoint), str(aside / checkpoint.name))
    logger.warning("%s; its checkpoints were moved to %s (not deleted); starting afresh", why, aside)
    return aside


def prepare_output_dir(output_dir: Path, identity: Mapping[str, Any], resume: bool, name: str) -> Path | None:
    """The checkpoint to resume from (None: start afresh), after clearing what cannot be used; writes the identity.

    A readable identity of another run: its checkpoints are removed. An unreadable (torn) or missing identity:
    the checkpoints are moved aside, not deleted. Damaged checkpoints newer than the last good one are removed.
    """
    found = checkpoints(output_dir)
    checkpoint = None
    if found:
        try:
            stored = _read_identity(output_dir)
        except CorruptFileError as exc:
            _set_aside(output_dir, found, f"run {name}: {exc}")
        else:
            if stored is None:
                _set_aside(output_dir, found, f"run {name}: {output_dir / RUN_IDENTITY} is missing")
            elif stored.get("hash") != identity["hash"]:
                reasons = "; ".join(identity_changes(stored, identity))
                logger.warning(
                    "run %s: checkpoints in %s are from another configuration, seed, start or data (%s); removing them",
                    name,
                    output_dir,
                    reasons,
                )
                _remove_checkpoints(found)
            elif not resume:
                logger.info("run %s: not resuming (resume=False); removing its checkpoints", name)
                _remove_checkpoints(found)
            else:
                checkpoint = last_complete_checkpoint(output_dir)
                keep = _checkpoint_step(checkpoint) if checkpoint else -1
                _remove_checkpoints([c for c in found if (_checkpoint_step(c) or 0) > keep])
    write_json(output_dir / RUN_IDENTITY, identity)
    return checkpoint


def _remove_checkpoints(found: Sequence[Path]) -> None:
    for checkpoint in found:
        logger.debug("removing %s", checkpoint)
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


# Training settings that change how a quantity is computed, not its value: not part of a run's identity.
LAYOUT_KEYS = ("shared_prefix",)


def identity_config(cfg: Mapping[str, Any], settings: TrainingSettings, variant: str) -> list[Any]:
    """The part of the configuration a run's numbers depend on (not where files go or which other runs exist).

    ``training.shared_prefix`` is left out: it changes how the log-probs are computed, not what they
    are (equal within float rounding), so runs trained with it on or off stand for each other.
    """
    core = {k: v for k, v in cfg.items() if k not in ("name", "paths")}
    core["training"] = {
        k: v for k, v in (cfg.get("training") or {}).items() if k not in ("variants", "seeds", *LAYOUT_KEYS)
    }
    return [core, {k: v for k, v in settings.to_dict().items() if k not in LAYOUT_KEYS}, variant]


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
    identity: Mapping[str, Any] | None = None,
    log_prefix: str = "03",
    **overrides: Any,
) -> RunResult:
    """Train the manager from ``sft_model`` with one reward variant and seed; write its run log.

    ``overrides`` replace ``training:`` keys (e.g. ``max_steps=2``). With ``resume`` the run goes on
    from the last checkpoint in its output folder that loads and belongs to the same run identity
    (config, seed, start weights, data; computed here unless ``identity`` is given). A run that raises
    is logged with ``status: "failed"`` and the error; checkpoints are removed only once the run log says
    ``finished`` (and kept with ``keep_checkpoints``).
    """
    settings = training_settings(cfg, variant=variant, **overrides)
    name = run_name(cfg, variant, seed)
    run_dir, output_dir = run_dirs(paths, name, log_prefix)
    train, test = list(data["train"]), list(data["test"])
    identity = dict(identity or run_identity(identity_config(cfg, settings, variant), seed, sft_model, data))
    previous_threads = torch.get_num_threads()
    record: dict[str, Any] = {}
    trainer = None
    try:
        runtime = determinism.configure(cfg, seed, section="training", threads=settings.num_threads)
        trainer = _build_trainer(cfg, settings, seed, train, test, sft_model, output_dir, reasoner)
        checkpoint = None
        if trainer.accelerator.is_main_process:
            checkpoint = prepare_output_dir(output_dir, identity, resume, name)
        trainer.accelerator.wait_for_everyone()
        if not trainer.accelerator.is_main_process and resume:
            checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint:
            logger.info("run %s: resuming from %s", name, repo_relative(checkpoint))
        record = provenance(
            cfg,
            seed,
            run=name,
            variant=variant,
            settings=settings.to_dict(),
            grpo_args={k: trainer.args.to_dict()[k] for k in _LOGGED_ARGS},
            sft_model=repo_relative(sft_model),
            identity=identity,
            runtime=runtime,
            resumed_from=repo_relative(checkpoint) if checkpoint else None,
            processes=trainer.accelerator.num_processes,
            status="running",
        )
        if trainer.accelerator.is_main_process:
            write_json(run_dir / RUN_LOG, record)
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        wall = time.perf_counter() - started
        history = trainer.state.log_history
        heldout = _heldout_rows(history)
        model_dir = output_dir / FINAL_MODEL
        trainer.save_model(str(model_dir))
        if trainer.accelerator.is_main_process:
            meta = {"policy": trainer.policy_settings, "grpo": {"run": name, "variant": variant, "seed": seed}}
            write_json(model_dir / MANAGER_META_FILE, meta)
            atomic.write_csv(pd.DataFrame(history), run_dir / HISTORY, index=False)
            record.update(
                status="finished",
                wall_s=round(wall, 2),
                steps=trainer.state.global_step,
                model_dir=repo_relative(model_dir),
                heldout_initial=_strip(heldout[0]) if heldout else {},
                heldout_final=_strip(heldout[-1]) if heldout else {},
                finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            write_json(run_dir / RUN_LOG, record)
            if not keep_checkpoints:  # only now that the log says finished
                _remove_checkpoints(checkpoints(output_dir))
    except BaseException as exc:
        if record and (trainer is None or trainer.accelerator.is_main_process):
            record.update(
                status="failed",
                error=f"{type(exc).__name__}: {str(exc)[:500]}",
                failed_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            write_json(run_dir / RUN_LOG, record)
            logger.error("run %s failed (%s); its log says so: %s", name, record["error"], repo_relative(run_dir))
        raise
    finally:
        torch.set_num_threads(previous_threads)
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
    args = grpo_config(
        settings, train_settings, str(output_dir), seed, [inst.num_chunks for inst in train], **vllm_grpo_args(cfg)
    )
    return StepCreditGRPOTrainer(
        policy,
        args,
        train,
        reasoner or build_reasoner(cfg.get("reasoner")),
        train_settings,
        heldout_instances=heldout_subset(test, settings.heldout.max_instances),
        heldout_settings=eval_settings,
        heldout_every=settings.heldout.every,
        token_counter=token_counter_from_config(cfg, policy.tokenizer),
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
        model_dir=from_repo(record.get("model_dir") or ""),
        wall_s=float(record["wall_s"]),
        history=pd.read_csv(run_dir / HISTORY),
        heldout_initial=record.get("heldout_initial", {}),
        heldout_final=record.get("heldout_final", {}),
    )


REUSE_MODES = ("auto", "always", "never")


def reusable_run(
    paths: ProfilePaths,
    cfg: Mapping[str, Any],
    variant: str,
    seed: int,
    identity: Mapping[str, Any],
    reuse: str = "auto",
    log_prefix: str = "03",
) -> tuple[RunResult | None, str]:
    """The finished run of (variant, seed) to reuse, or None, with the reason either way (for the log).

    ``reuse="auto"``: only when its identity (config, seed, start weights, data) is this one;
    ``"always"``: any finished run (the differences are named); ``"never"``: always retrain.
    """
    if reuse not in REUSE_MODES:
        raise ValueError(f"reuse must be one of {REUSE_MODES}, got {reuse!r}")
    name = run_name(cfg, variant, seed)
    run_dir, _ = run_dirs(paths, name, log_prefix)
    if reuse == "never":
        return None, f"training {name}: retraining forced (reuse='never')"
    try:
        record = read_json(run_dir / RUN_LOG)
    except FileNotFoundError:
        return None, f"training {name}: no finished run yet"
    except CorruptFileError as exc:
        return None, f"training {name}: its run log is unreadable ({exc})"
    if record.get("status") != "finished":
        return None, f"training {name}: the logged run has status {record.get('status')!r}"
    changes = identity_changes(record.get("identity"), identity)
    if changes and reuse == "auto":
        return None, f"retraining {name} because " + "; ".join(changes)
    if changes:
        return load_run(run_dir), f"reusing finished run {name} (forced; it differs: {'; '.join(changes)})"
    return load_run(run_dir), f"reusing finished run {name} (same config, seed, start weights and data)"


# ---------------------------------------------------------------------------- a study
def run_study(
    cfg: Mapping[str, Any],
    paths: ProfilePaths,
    variants: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    data: Mapping[str, Sequence[Instance]] | None = None,
    sft_model: str | Path | None = None,
    reuse: str = "auto",
    resume: bool = True,
    keep_checkpoints: bool = False,
    **overrides: Any,
) -> list[RunResult]:
    """Train every (variant, seed) from the same SFT start; finished runs are reused per ``reuse``.

    See :func:`reusable_run`; each decision (reused, or retrained and why) is logged at INFO.
    """
    settings = training_settings(cfg)
    data = data or load_training_data(cfg, paths)
    sft_model = sft_model or start_model(cfg, paths)
    start_hash, data_digest = model_hash(sft_model), data_hash(data)
    reasoner = build_reasoner(cfg.get("reasoner"))
    results = []
    for variant in variants or settings.variants:
        run_settings = training_settings(cfg, variant=variant, **overrides)
        for seed in seeds if seeds is not None else settings.seeds:
            identity = run_identity(
                identity_config(cfg, run_settings, variant), seed, sft_model, data, start_hash, data_digest
            )
            done, why = reusable_run(paths, cfg, variant, seed, identity, reuse)
            logger.info(why)
            if done is not None:
                results.append(done)
                continue
            results.append(
                train_manager(
                    cfg,
                    paths,
                    variant,
                    seed,
                    data,
                    sft_model,
                    reasoner,
                    resume,
                    keep_checkpoints,
                    identity=identity,
                    **overrides,
                )
            )
    return results


TIMING_COLUMNS = ("wall_s", "step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second")


def heldout_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """One row per run: held-out global QA, memory length and format rate before and after training.

    Wall times are in the run logs, not here: tables hold only what a rerun reproduces exactly.
    """
    rows = []
    for r in results:
        row = {"variant": r.variant, "seed": r.seed}
        for when, scores in (("initial", r.heldout_initial), ("final", r.heldout_final)):
            for key in ("qa", "memory_tokens", "format_rate", "chunk_qa"):
                row[f"{key}_{when}"] = scores.get(key)
        rows.append(row)
    return pd.DataFrame(rows)


def curves_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """Long table of the per-step training log of every run (one row per logged step; timings left out)."""
    frames = []
    for r in results:
        frame = r.history.drop(columns=[c for c in TIMING_COLUMNS if c in r.history.columns])
        frame.insert(0, "seed", r.seed)
        frame.insert(0, "variant", r.variant)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_study_report(
    cfg: Mapping[str, Any], paths: ProfilePaths, results: Sequence[RunResult], command: str | None = None
) -> dict[str, str]:
    """Tables, figures and a study log (command, runs, versions, revision) of some runs, named ``03_<profile>_*``.

    Every file is written atomically; the study log stores paths relative to the project root.
    """
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
    atomic.write_csv(table, files["heldout_table"], index=False)
    atomic.write_csv(curves, files["curves_table"], index=False)
    plt.close(plot_learning_curves(curves, path=files["curves_figure"]))  # saved; notebooks show the files
    plt.close(plot_heldout(table, path=files["heldout_figure"]))
    study = provenance(
        cfg,
        seed=int(cfg.get("seed", 0)),
        command=command or f"python -m finemem_lib.training.cli --profile {name} --report",
        runs=[
            {
                "run": r.name,
                "variant": r.variant,
                "seed": r.seed,
                "wall_s": round(r.wall_s, 1),
                "log": repo_relative(r.run_dir),
            }
            for r in results
        ],
        total_run_wall_s=round(sum(r.wall_s for r in results), 1),
        outputs={k: repo_relative(v) for k, v in files.items() if k != "study_log"},
    )
    write_json(files["study_log"], study)
    return {k: str(v) for k, v in files.items()}
