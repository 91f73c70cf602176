"""No noise where nobody watches: executed notebooks, CI logs, redirected output.

Called once when :mod:`finemem_lib` is imported. Where progress bars are off (see
:func:`finemem_lib.infra.progress.progress_enabled`: papermill, pytest, CI, a pipe, or ``FINEMEM_PROGRESS=0``),
the bars of the Hugging Face libraries and TRL are turned off through their documented switches
(``HF_HUB_DISABLE_PROGRESS_BARS``, ``HF_DATASETS_DISABLE_PROGRESS_BARS``, ``TQDM_DISABLE``). Always silenced:

- tqdm's "IProgress not found" warning (a Jupyter kernel without ipywidgets: the bars fall back to text);
- transformers' ``is_gradient_checkpointing`` deprecation, raised by the TRL 1.16 helper the GRPO trainer
  calls (``trl.models.utils.disable_gradient_checkpointing``) under transformers 5;
- bm25s's per-index "Building index from tokens" debug lines (bm25s sets its logger to DEBUG when it is
  imported, so :mod:`finemem_lib.core.retrieval` sets it back right after importing it).

:func:`kernel_config` launches notebook kernels over IPC instead of unencrypted TCP, which is what
ipykernel's "Kernel is running over TCP without encryption" warning asks for.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from finemem_lib.infra.progress import ENV as PROGRESS_ENV
from finemem_lib.infra.progress import progress_enabled

_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")

__all__ = ["PROGRESS_ENV", "configure", "kernel_config"]


def configure() -> bool:
    """Install the filters above (idempotent) and switch bars off when unwanted; returns whether bars are on."""
    warnings.filterwarnings("ignore", message="IProgress not found", category=Warning)
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
    wanted = progress_enabled()
    if not wanted:
        for name in _SWITCHES:
            os.environ.setdefault(name, "1")
        _disable_loaded()
    return wanted


def _disable_loaded() -> None:
    """Libraries imported before finemem_lib read their switch at import time: tell them directly."""
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()


def kernel_config() -> Any:
    """A traitlets config for papermill/nbclient that starts kernels over IPC (a local socket, no TCP port)."""
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    return config
