"""Train planned runs in order from one start, reusing finished ones: the loop of notebook 03 and of the study.

Every run of a profile starts from the same data and start model (:class:`RunStart`, hashed once).
For each planned run, :func:`train_runs` computes its identity, reuses a finished run of that identity
(:func:`finemem_lib.training.run.reusable_run`, per ``reuse``) or trains it, and yields it. Study
processes given the same plan share it run by run (``claims``: a marker held while a run is trained).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finemem_lib.agents.reasoner import Reasoner
from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.data.instance import Instance
from finemem_lib.infra.identity import data_hash, model_hash, run_identity
from finemem_lib.infra.paths import ProfilePaths, run_name
from finemem_lib.training.config import training_settings
from finemem_lib.training.plan import PlannedRun
from finemem_lib.training.run import RunResult, identity_config, reusable_run, train_manager
from finemem_lib.training.start import load_training_data, start_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStart:
    """What every run of a profile shares: its data, its start model (and their content hashes), the reasoner."""

    data: Mapping[str, Sequence[Instance]]
    sft_model: str | Path
    start_hash: str
    data_digest: str
    reasoner: Reasoner


def prepare_start(
    profile: Mapping[str, Any],
    paths: ProfilePaths,
    data: Mapping[str, Sequence[Instance]] | None = None,
    sft_model: str | Path | None = None,
) -> RunStart:
    """The profile's data and start model (loaded, or trained once: :func:`finemem_lib.training.start.start_model`)."""
    data = data or load_training_data(profile, paths)
    sft_model = sft_model or start_model(profile, paths)
    return RunStart(data, sft_model, model_hash(sft_model), data_hash(data), build_reasoner(profile.get("reasoner")))


RunHook = Callable[[PlannedRun, Mapping[str, Any], str, RunResult, bool], None]


def train_runs(
    profile: Mapping[str, Any],
    runs: Sequence[PlannedRun],
    paths: ProfilePaths,
    start: RunStart,
    reuse: str = "auto",
    resume: bool = True,
    keep_checkpoints: bool = False,
    log_prefix: str = "03",
    stop_at: dt.datetime | None = None,
    claims: bool = False,
    before_run: Callable[[PlannedRun, Mapping[str, Any]], None] | None = None,
    after_run: RunHook | None = None,
    **overrides: Any,
) -> Iterator[tuple[PlannedRun, str, RunResult]]:
    """Yield ``(planned, run name, result)`` per run, in order: a reused finished run or one trained now.

    ``overrides`` replace ``training:`` keys of every run; ``stop_at`` (UTC): no run is launched after it
    (the same call later resumes); ``claims``: skip a run another live process is training. Hooks:
    ``before_run(planned, cfg)`` first; ``after_run(planned, cfg, name, result, trained)`` while the run
    is still claimed. Each decision (reused, or trained and why) is logged at INFO.
    """
    for planned in runs:
        cfg = planned.config(profile)
        if before_run is not None:
            before_run(planned, cfg)
        name = run_name(cfg, planned.variant, planned.seed)
        settings = training_settings(cfg, variant=planned.variant, **overrides)
        identity = run_identity(
            identity_config(cfg, settings, planned.variant),
            planned.seed,
            start.sft_model,
            start.data,
            start.start_hash,
            start.data_digest,
        )
        marker = claim(paths.runs / f".claim-{log_prefix}_{name}") if claims else contextlib.nullcontext(True)
        with marker as mine:
            if not mine:
                logger.info("skipping %s: another study process is training it", planned.label)
                continue
            result, why = reusable_run(paths, cfg, planned.variant, planned.seed, identity, reuse, log_prefix)
            logger.info(why)
            trained = result is None
            if trained:
                if stop_at is not None and dt.datetime.now(dt.timezone.utc) >= stop_at:
                    logger.info("stop time reached: not launching %s (the same command resumes it)", planned.label)
                    return
                logger.info("training %s (%s)", name, planned.label)
                result = train_manager(
                    cfg,
                    paths,
                    planned.variant,
                    planned.seed,
                    start.data,
                    start.sft_model,
                    start.reasoner,
                    resume,
                    keep_checkpoints,
                    identity=identity,
                    log_prefix=log_prefix,
                    **overrides,
                )
            if after_run is not None:
                after_run(planned, cfg, name, result, trained)
        yield planned, name, result


@contextlib.contextmanager
def claim(marker: Path) -> Iterator[bool]:
    """Hold ``marker`` while a run is trained, so two study processes given the same plan share it run by run.

    Yields False when a live process holds it (the caller skips the run); a marker left by a dead process
    is taken over. The marker is removed on exit.
    """
    marker.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(marker.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and _alive(holder):
                yield False
                return
            marker.unlink(missing_ok=True)  # left by a process that died
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        try:
            yield True
        finally:
            marker.unlink(missing_ok=True)
        return
    yield False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
