"""The shared start of a profile's command line: arguments, logging, the profile, its folders, the command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import ProfilePaths, profile_paths, repo_relative

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class ProfileCommand:
    """What a profile's command line starts from: its parsed arguments, profile, folders and command text."""

    args: argparse.Namespace
    profile: dict[str, Any]
    paths: ProfilePaths
    command: str


def start_profile_command(
    parser: argparse.ArgumentParser, module: str, argv: Sequence[str] | None = None, relative_args: bool = True
) -> ProfileCommand:
    """Parse ``argv`` (``--profile``, ``--results-dir``, ``--data-dir`` are expected), log at INFO, load the profile.

    The command is ``python -m <module> <argv>`` as the run logs record it; with ``relative_args`` an
    argument that is a path inside the project is written relative to it.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    profile = load_profile(args.profile)
    given = list(argv) if argv is not None else sys.argv[1:]
    shown = [repo_relative(a) or a for a in given] if relative_args else given
    command = " ".join(["python", "-m", module, *shown])
    return ProfileCommand(args, profile, profile_paths(profile, args.results_dir, args.data_dir), command)
