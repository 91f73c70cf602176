"""Artifacts shared between notebooks, built once per profile and reused (the SFT manager).

The SFT manager is reused only when its identity matches what this profile would train now: the SFT
configuration (seed, manager, memory, sft and runtime sections), the start model (the offline model is
built from the configuration; a pretrained one is hashed by content) and the training data's content
hash. Otherwise it is trained again, and the log says why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finemem_lib.agents.policy import MANAGER_META_FILE
from finemem_lib.agents.sft import OFFLINE, train_sft_manager
from finemem_lib.data.prepared import load_prepared
from finemem_lib.infra.atomic import CorruptFileError, read_json
from finemem_lib.infra.identity import identity_changes, run_identity
from finemem_lib.infra.paths import ProfilePaths, repo_relative

logger = logging.getLogger(__name__)

REUSE_MODES = ("auto", "always", "never")
SFT_SECTIONS = ("manager", "memory", "sft", "runtime")


def sft_manager_dir(paths: ProfilePaths) -> Path:
    """Where a profile's SFT manager lives."""
    return paths.data / "models" / "sft"


def sft_identity(cfg: Mapping[str, Any], train: list[Any]) -> dict[str, Any]:
    """The SFT manager's identity: its configuration, seed, start model and training data (content hashes)."""
    config = {section: cfg.get(section) for section in SFT_SECTIONS}
    source = (cfg.get("manager") or {}).get("model", OFFLINE)
    seed = int(cfg.get("seed", 0))
    start_hash = "offline-from-config" if source == OFFLINE else None
    return run_identity(config, seed, source, {"train": train}, start_model_hash=start_hash)


def sft_reuse_decision(folder: Path, identity: Mapping[str, Any], reuse: str = "auto") -> tuple[bool, str]:
    """Whether the SFT manager in ``folder`` can be reused, and why (one log line)."""
    if reuse not in REUSE_MODES:
        raise ValueError(f"reuse must be one of {REUSE_MODES}, got {reuse!r}")
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
        train_sft_manager(cfg, train, folder, identity=identity)
    return folder
