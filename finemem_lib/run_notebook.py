"""Execute a notebook with papermill, its kernel over IPC (no TCP-without-encryption warning), no progress bars.

    python -m finemem_lib.run_notebook notebooks/02_reward_design.ipynb out.ipynb -p profile smoke --cwd .

The same arguments as ``papermill INPUT OUTPUT -p NAME VALUE --cwd DIR -k KERNEL`` for what the project uses;
parameter values are read as YAML (``-p instance_index 2`` is an int).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import yaml

from finemem_lib.progress import ENV as PROGRESS_ENV
from finemem_lib.quiet import kernel_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finemem_lib.run_notebook", description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--cwd", default=None)
    parser.add_argument("-k", "--kernel", default="python3")
    args = parser.parse_args(argv)
    import papermill as pm

    os.environ.setdefault(PROGRESS_ENV, "0")  # the kernel inherits it: no progress bars in executed notebooks

    parameters = {name: yaml.safe_load(value) for name, value in args.parameter}
    try:
        pm.execute_notebook(
            args.input,
            args.output,
            parameters=parameters,
            cwd=args.cwd,
            kernel_name=args.kernel,
            progress_bar=False,
            config=kernel_config(),
        )
    except pm.PapermillExecutionError as exc:
        print(f"{args.input} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
