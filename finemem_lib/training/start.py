"""Where every GRPO run of a profile starts: its data and its start model (the profile's SFT manager).

The SFT manager (``<paths.data>/models/sft``, shared with notebook 02) is reused only when its identity
matches what this profile would train now: the SFT configuration (seed, manager, memory, sft and
runtime sections), the start model (the offline model is built from the configuration; a pretrained
one is hashed by content) and the training data's content hash. Otherwise it is trained again, and
the log says why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finemem_lib.agents.policy import MANAGER_META_FILE
from finemem_lib.agents.sft import OFFLINE, train_sft_manager
from finemem_lib.data.instance import Instance
from finemem_lib.data.prepared import load_prepared, prepared_splits
from finemem_lib.data.synthetic import SyntheticConfig, build_synthetic, synthetic_instance
from finemem_lib.infra.atomic import CorruptFileError, read_json
from finemem_lib.infra.config import repo_root
from finemem_lib.infra.identity import check_reuse, identity_changes, run_identity
from finemem_lib.infra.paths import ProfilePaths, repo_relative, sft_manager_dir
from finemem_lib.training.config import num_processes

logger = logging.getLogger(__name__)


def load_training_data(cfg: Mapping[str, Any], paths: ProfilePaths) -> dict[str, list[Instance]]:
    """``{"train", "test"}``: the prepared data of notebook 01 when present, else the synthetic benchmark built here."""
    if {"train", "test"} <= set(prepared_splits(paths.data)):
        return {split: load_prepared(paths.data, split) for split in ("train", "test")}
    data = cfg.get("data", {})
    if data.get("kind", "synthetic") != "synthetic":
        return {split: load_prepared(paths.data, split) for split in ("train", "test")}  # says to run notebook 01
    splits = build_synthetic(data, cfg.get("seed", 0))
    return {"train": splits["train"], "test": splits["test"]}


def start_model(cfg: Mapping[str, Any], paths: ProfilePaths, reuse_sft: str = "auto") -> str | Path:
    """The model every GRPO run of a profile starts from.

    ``training.sft_model`` when set (a folder, relative to the project root; e.g. the ``full`` profile
    points at the default profile's SFT manager); otherwise the profile's SFT manager
    (:func:`ensure_sft_manager`: reused when its identity matches this profile and
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


# ---------------------------------------------------------------------------- the SFT manager
SFT_SECTIONS = ("manager", "memory", "sft", "runtime")


def sft_identity(cfg: Mapping[str, Any], train: list[Any]) -> dict[str, Any]:
    """The SFT manager's identity: its configuration, seed, start model and training data (content hashes)."""
    config = {section: cfg.get(section) for section in SFT_SECTIONS}
    source = (cfg.get("manager") or {}).get("model", OFFLINE)
    seed = int(cfg.get("seed", 0))
    start_hash = "offline-from-config" if source == OFFLINE else None
    return run_identity(config, seed, source, {"train": train}, start_model_hash=start_hash)


def sft_reuse_decision(folder: Path, identity: Mapping[str, Any], reuse: str = "auto") -> tuple[bool, str]:
    """Whether the SFT manager in ``folder`` can be reused, and why (one log line)."""
    check_reuse(reuse)
    where = repo_relative(folder)
    if reuse == "never":
        return False, f"training the SFT manager into {where}: retraining forced (reuse='never')"
    try:
        meta = read_json(folder / MANAGER_META_FILE)
    except FileNotFoundError:
        return False, f"training the SFT manager into {where}: none there yet"
    except CorruptFileError as exc:
        return False, f"training the SFT manager again: {exc}"
    changes = identity_changes(meta.get("identity"), identity)
    if not changes:
        return True, f"reusing the SFT manager in {where} (same config, seed, start model and data)"
    if reuse == "always":
        return True, f"reusing the SFT manager in {where} (forced; it differs: {'; '.join(changes)})"
    return False, f"retraining the SFT manager in {where} because " + "; ".join(changes)


def ensure_sft_manager(cfg: Mapping[str, Any], paths: ProfilePaths, reuse: str = "auto") -> Path:
    """The profile's SFT manager folder, trained on the prepared train split unless a matching one is there.

    ``reuse``: ``"auto"`` (reuse only an identical one), ``"always"`` (any saved one), ``"never"`` (retrain).
    Load it with :func:`finemem_lib.agents.policy.load_manager`.
    """
    folder = sft_manager_dir(paths)
    train = load_prepared(paths.data, "train")
    identity = sft_identity(cfg, train)
    ok, why = sft_reuse_decision(folder, identity, reuse)
    logger.info(why)
    if not ok:
        train_sft_manager(cfg, sft_instances(cfg, train), folder, identity=identity)
    return folder


def sft_instances(cfg: Mapping[str, Any], train: Sequence[Instance]) -> list[Instance]:
    """The instances the SFT teacher is replayed on: the train split, plus ``sft.extra_instances`` per source.

    Teacher episodes cost nothing on the synthetic benchmark, so the cold start may see more text than RL
    trains on: the extra instances continue the train split's numbering (``synth_factoid/32``, ...; people
    from the train surnames, never the test ones) and are never rolled out by GRPO. Only for
    ``data.kind: synthetic``; the hub profiles have no generator to draw from and must leave it at 0.
    """
    extra = int((cfg.get("sft") or {}).get("extra_instances", 0) or 0)
    if extra <= 0:
        return list(train)
    data = cfg.get("data") or {}
    if data.get("kind", "synthetic") != "synthetic":
        raise ValueError(
            "sft.extra_instances needs data.kind: synthetic (teacher episodes are drawn from its generator)"
        )
    synth = SyntheticConfig.from_mapping(data)
    seed = int(cfg.get("seed", 0))
    more = [
        synthetic_instance(source, "train", synth.train_instances + index, synth, seed)
        for source in synth.sources
        for index in range(extra)
    ]
    return [*train, *more]
