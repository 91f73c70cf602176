"""Silence the messages a newcomer sees in every run that say nothing about the run.

Called once when :mod:`finemem_lib` is imported:

- tqdm's "IProgress not found" warning (a Jupyter kernel without ipywidgets: the bars fall back to text);
- transformers' ``is_gradient_checkpointing`` deprecation, raised by the TRL 1.16 helper the GRPO trainer
  calls (``trl.models.utils.disable_gradient_checkpointing``) under transformers 5;
- bm25s's per-index "Building index from tokens" debug lines (bm25s sets its logger to DEBUG when it is
  imported, so :mod:`finemem_lib.retrieval` sets it back right after importing it);
- the Hugging Face progress bars ("Loading weights", "Tokenizing train dataset", "Writing model shards")
  where progress bars are off (papermill, pytest, CI; see :mod:`finemem_lib.progress`).

:func:`kernel_config` launches notebook kernels over IPC instead of unencrypted TCP, which is what
ipykernel's "Kernel is running over TCP without encryption" warning asks for.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from finemem_lib.progress import progress_enabled


def quiet_third_party() -> None:
    """Install the filters above (idempotent)."""
    warnings.filterwarnings("ignore", message="IProgress not found", category=Warning)
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    if not progress_enabled():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        if "transformers" in sys.modules:  # imported before finemem_lib: the environment came too late
            sys.modules["transformers"].utils.logging.disable_progress_bar()
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()


def kernel_config() -> Any:
    """A traitlets config for papermill/nbclient that starts kernels over IPC (a local socket, no TCP port)."""
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    return config
