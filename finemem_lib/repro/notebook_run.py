"""Execute one notebook with papermill, as ``./reproduce.sh`` does: quiet, and without a false alarm at the end.

``python -m finemem_lib.repro.notebook_run IN.ipynb OUT.ipynb --cwd ROOT -p profile smoke -p reuse auto``

jupyter_client interrupts a kernel before asking it to shut down, so ipykernel logs
"KeyboardInterrupt caught in kernel" after every notebook, even one that ran to the end.
:class:`QuietShutdownKernelManager` skips that interrupt during shutdown only (an interrupt on a cell
timeout still happens). The kernel runs over IPC (no "TCP without encryption" warning) and inherits
``FINEMEM_PROGRESS=0`` (no progress bars in executed notebooks). Values given with ``-p`` are parsed as YAML
(``-p results_dir null``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from jupyter_client.manager import AsyncKernelManager

from finemem_lib.infra.progress import ENV as PROGRESS_ENV
from finemem_lib.infra.quiet import kernel_config


class QuietShutdownKernelManager(AsyncKernelManager):
    """A kernel manager that shuts the kernel down with a shutdown request alone (no SIGINT first)."""

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finemem_lib.repro.notebook_run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("notebook")
    parser.add_argument("output")
    parser.add_argument("--cwd", default=None)
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)
    import papermill
    from papermill.exceptions import PapermillExecutionError

    os.environ.setdefault(PROGRESS_ENV, "0")  # the kernel inherits these: no bars in executed notebooks
    os.environ.setdefault("TQDM_DISABLE", "1")
    parameters = {name: yaml.safe_load(value) for name, value in args.p}
    try:
        papermill.execute_notebook(  # papermill records these paths in the notebook: keep them relative
            _relative(args.notebook),
            _relative(args.output),
            parameters=parameters,
            kernel_name=args.kernel,
            cwd=args.cwd,
            progress_bar=False,
            kernel_manager_class=f"{__name__}.QuietShutdownKernelManager",
            config=kernel_config(),
        )
    except PapermillExecutionError as exc:
        print(f"{args.notebook}: cell {exc.exec_count} raised {exc.ename}: {exc.evalue}", file=sys.stderr)
        return 1
    return 0


def _relative(path: str) -> str:
    """``path`` relative to the working folder (the project root under ``./reproduce.sh``) when it lies inside it."""
    resolved, here = Path(path).resolve(), Path.cwd().resolve()
    return os.path.relpath(resolved, here) if resolved.is_relative_to(here) else path


if __name__ == "__main__":
    sys.exit(main())
