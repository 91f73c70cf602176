"""Committed results name files relative to the project, never by this machine's absolute paths."""

from __future__ import annotations

import re
from pathlib import Path

from finemem_lib.infra.config import repo_root
from finemem_lib.repro.notebook_run import _relative

TEXT_SUFFIXES = {".json", ".jsonl", ".ipynb", ".csv", ".md", ".html"}
# the project folder itself, or the usual homes of a checkout or a scratch folder on any machine
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|tmp|home|root|Users|mnt|scratch)/")


def test_no_committed_result_holds_the_project_folder_as_an_absolute_path():
    root = repo_root()
    offenders = [
        path.relative_to(root).as_posix()
        for path in (root / "results").rglob("*")
        if path.suffix in TEXT_SUFFIXES
        and (f"{root.as_posix()}/" in (text := path.read_text(errors="replace")) or MACHINE_PATH.search(text))
    ]
    assert offenders == []


def test_the_notebook_runner_records_paths_relative_to_where_it_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notebooks").mkdir()
    assert _relative(str(tmp_path / "notebooks" / "a.ipynb")) == str(Path("notebooks") / "a.ipynb")
    assert _relative("/elsewhere/b.ipynb") == "/elsewhere/b.ipynb"
