"""Artifacts shared between notebooks, built once per profile and reused (the SFT manager)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finemem_lib.agents.policy import MANAGER_META_FILE
from finemem_lib.agents.sft import train_sft_manager
from finemem_lib.data.prepared import load_prepared
from finemem_lib.paths import ProfilePaths

logger = logging.getLogger(__name__)


def sft_manager_dir(paths: ProfilePaths) -> Path:
    """Where a profile's SFT manager lives."""
    return paths.data / "models" / "sft"


def ensure_sft_manager(cfg: Mapping[str, Any], paths: ProfilePaths, retrain: bool = False) -> Path:
    """The profile's SFT manager folder, trained on the prepared train split first if it is missing.

    Load it with :func:`finemem_lib.agents.policy.load_manager`.
    """
    folder = sft_manager_dir(paths)
    if retrain or not (folder / MANAGER_META_FILE).is_file():
        logger.info("training the SFT manager into %s", folder)
        train_sft_manager(cfg, load_prepared(paths.data, "train"), folder)
    return folder
