"""Bit-reproducible training and evaluation on one machine: fixed torch threads, deterministic kernels, seeds.

A profile's ``runtime`` section sets the CPU thread count (``threads``) and whether torch must use
deterministic algorithms (``deterministic``). Floating-point sums depend on how work is split over
threads, so the thread count is part of what makes two runs identical: it is fixed here (not taken
from the load of the machine) and recorded in every run log and SFT manager.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def runtime_threads(cfg: Mapping[str, Any], section: str | None = None) -> int | None:
    """Threads for a step: ``<section>.num_threads`` when set, else ``runtime.threads`` (None: not fixed)."""
    if section:
        value = (cfg.get(section) or {}).get("num_threads")
        if value:
            return int(value)
    value = (cfg.get("runtime") or {}).get("threads")
    return int(value) if value else None


def configure(
    cfg: Mapping[str, Any], seed: int | None = None, section: str | None = None, threads: int | None = None
) -> dict[str, Any]:
    """Fix threads, deterministic kernels and (when given) every RNG seed; returns what was set, for run logs.

    ``threads`` (when given), else ``<section>.num_threads``, else ``runtime.threads`` sets torch's thread count.
    """
    runtime = cfg.get("runtime") or {}
    threads = threads or runtime_threads(cfg, section)
    if threads:
        torch.set_num_threads(threads)
    deterministic = bool(runtime.get("deterministic", True))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    if seed is not None:
        seed_everything(seed)
    return state(seed)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def state(seed: int | None = None) -> dict[str, Any]:
    """The settings that decide whether two runs on one machine give identical numbers."""
    return {
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "seed": seed,
    }
