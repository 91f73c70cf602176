"""No progress-bar noise where nobody watches: executed notebooks, CI logs, redirected output.

When standard error is not a terminal (a papermill kernel, a pipe, a file) or ``FINEMEM_PROGRESS=0``,
tqdm bars of the Hugging Face libraries and TRL are turned off through their documented switches
(``HF_HUB_DISABLE_PROGRESS_BARS``, ``HF_DATASETS_DISABLE_PROGRESS_BARS``, ``TQDM_DISABLE``), and tqdm's
"IProgress not found" warning (tqdm.auto inside a kernel without ipywidgets) is silenced.
``FINEMEM_PROGRESS=1`` keeps the bars everywhere. Called once when :mod:`finemem_lib` is imported.
"""

from __future__ import annotations

import os
import sys
import warnings

PROGRESS_ENV = "FINEMEM_PROGRESS"
_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")


def progress_wanted() -> bool:
    """Progress bars only for a person at a terminal, unless ``FINEMEM_PROGRESS`` says otherwise."""
    choice = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if choice in ("0", "false", "no", "off"):
        return False
    if choice in ("1", "true", "yes", "on"):
        return True
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def configure() -> bool:
    """Turn progress bars off when they are not wanted (before the libraries read the switches); returns the choice."""
    wanted = progress_wanted()
    if not wanted:
        for name in _SWITCHES:
            os.environ.setdefault(name, "1")
        warnings.filterwarnings("ignore", message="IProgress not found")
        # a deprecation inside TRL's trainer, once per run: nothing a reader of the outputs can act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        _disable_loaded()
    return wanted


def _disable_loaded() -> None:
    """Libraries already imported read their switch at import time: tell them directly."""
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
