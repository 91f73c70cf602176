"""The machine a run ran on, for its log: the CPU model, the architecture and the CPU kernels torch picked.

Floating-point results are reproducible on one machine (``finemem_lib.infra.determinism``); on another CPU
the last bits can differ, and the CPU model is what tells two run logs apart.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
_MODEL_KEYS = ("model name", "Model", "Hardware", "cpu model", "Processor")  # x86, ARM boards, MIPS, older ARM


def cpu_model_from_cpuinfo(text: str) -> str | None:
    """The first CPU model line of a ``/proc/cpuinfo`` text, else None."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip(), value.strip())
    return next((fields[key] for key in _MODEL_KEYS if key in fields), None)


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows, else ``"unknown"``."""
    try:
        found = cpu_model_from_cpuinfo(CPUINFO.read_text(errors="replace"))
    except OSError:
        found = None
    return found or platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """``cpu_model``, ``machine`` (the architecture) and ``torch_cpu_capability`` (the SIMD kernels torch uses)."""
    info: dict[str, Any] = {"cpu_model": cpu_model(), "machine": platform.machine()}
    try:
        import torch

        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError, RuntimeError):
        info["torch_cpu_capability"] = None
    return info
