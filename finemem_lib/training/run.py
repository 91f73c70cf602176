"""One GRPO run from a profile: the trainer built, trained from the start model, its run log written.

Where things go (``paths = profile_paths(cfg)``):

- Checkpoints and the final manager of a run: ``<paths.data>/grpo/<run>/`` (``checkpoint-N/``, ``final/``).
- Run log: ``<paths.runs>/<prefix>_<run>/run.json`` (provenance, settings, wall time, held-out before/after)
  and ``history.csv`` (TRL's log history: reward components, format rate, memory length, loss,
  KL, held-out QA per step), where ``<run> = <profile>_<variant>_s<seed>`` and ``<prefix>`` names the
  notebook that owns the log (03; 05 for the study).

A finished run is reused only when its identity matches: configuration, seed, the content hash of the
start model's weights and the content hash of the data (:func:`reusable_run`; ``reuse="never"`` or
``"always"`` forces either).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from finemem_lib.agents.policy import MANAGER_META_FILE, load_manager
from finemem_lib.agents.reasoner import Reasoner
from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.agents.sft import policy_settings as profile_policy_settings
from finemem_lib.core.tokens import token_counter_from_config
from finemem_lib.data.instance import Instance
from finemem_lib.infra import atomic, determinism
from finemem_lib.infra.atomic import CorruptFileError, read_json, write_json
from finemem_lib.infra.identity import check_reuse, identity_changes, run_identity
from finemem_lib.infra.paths import FINAL_MODEL, ProfilePaths, from_repo, repo_relative, run_dirs, run_name
from finemem_lib.infra.provenance import provenance
from finemem_lib.training.checkpoints import (
    checkpoints,
    last_complete_checkpoint,
    prepare_output_dir,
    remove_checkpoints,
)
from finemem_lib.training.config import TrainingSettings, grpo_config, run_rollout_settings, training_settings
from finemem_lib.training.grpo import StepCreditGRPOTrainer
from finemem_lib.training.start import heldout_subset
from finemem_lib.training.vllm_rollout import vllm_grpo_args

logger = logging.getLogger(__name__)

RUN_LOG = "run.json"
HISTORY = "history.csv"


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
                remove_checkpoints(checkpoints(output_dir))
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
    record = read_json(run_dir / RUN_LOG, rebuild="train the run again (its checkpoints resume it)")
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
    check_reuse(reuse)
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
