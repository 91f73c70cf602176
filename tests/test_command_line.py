"""The shared start of a profile's command line: the profile, its folders and the command the logs record."""

from __future__ import annotations

import argparse

import pytest

from finemem_lib.infra.command_line import start_profile_command
from finemem_lib.infra.config import repo_root


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--profile", default="smoke")
    p.add_argument("--results-dir", default=None)
    p.add_argument("--data-dir", default=None)
    return p


def test_the_profile_its_folders_and_a_relative_command(tmp_path):
    inside = repo_root() / "configs" / "smoke.yaml"
    given = ["--profile", str(inside), "--results-dir", str(tmp_path), "--data-dir", str(tmp_path / "data")]
    start = start_profile_command(parser(), "pkg.mod", given)
    assert start.profile["name"] == "smoke"
    assert start.paths.results == tmp_path
    assert start.command == " ".join(["python -m pkg.mod --profile configs/smoke.yaml", *given[2:]])


def test_arguments_kept_as_given_when_asked(tmp_path):
    inside = str(repo_root() / "configs" / "smoke.yaml")
    given = ["--profile", inside, "--results-dir", str(tmp_path), "--data-dir", str(tmp_path)]
    start = start_profile_command(parser(), "pkg.mod", given, relative_args=False)
    assert start.command == "python -m pkg.mod " + " ".join(given)


def test_a_bad_argument_stops_with_the_parser_error():
    with pytest.raises(SystemExit):
        start_profile_command(parser(), "pkg.mod", ["--nope"])
