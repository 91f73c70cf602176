"""Progress bars (tqdm) on the long loops, quiet where nobody watches them.

On by default in a terminal and in an interactive Jupyter kernel; off under papermill, pytest and CI
(``CI`` set), so executed notebooks and logs stay clean. ``FINEMEM_PROGRESS=1`` forces the bars on,
``FINEMEM_PROGRESS=0`` off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

# tqdm is imported on first use, after finemem_lib.infra.quiet has set TQDM_DISABLE where bars are off
if TYPE_CHECKING:
    from tqdm import tqdm

T = TypeVar("T")
ENV = "FINEMEM_PROGRESS"


def _parent_is_papermill() -> bool:
    """Whether this process was started by papermill (a papermill kernel's parent runs papermill)."""
    try:
        cmdline = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return False
    return b"papermill" in cmdline or b"notebook_run" in cmdline


def _in_kernel() -> bool:
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_enabled() -> bool:
    """Whether progress bars are shown (see the module docstring for the rule)."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False
    if forced in ("1", "true", "yes", "on"):
        return True
    if os.environ.get("CI") or os.environ.get("PYTEST_CURRENT_TEST") or _parent_is_papermill():
        return False
    return _in_kernel() or sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: int | None = None, **kwargs: Any) -> Iterable[T]:
    """``iterable`` wrapped in a tqdm bar when :func:`progress_enabled`, else returned as is."""
    if not progress_enabled():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True, **{"leave": False, **kwargs})


def progress_bar(total: int, desc: str, **kwargs: Any) -> tqdm:
    """A manual tqdm bar (``.update(n)``, ``.close()``), disabled when :func:`progress_enabled` is false."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, disable=not progress_enabled(), dynamic_ncols=True, **{"leave": False, **kwargs}
    )
