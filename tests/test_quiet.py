"""Executed notebooks stay readable: no per-call bm25s logging, no progress bars without a terminal."""

from __future__ import annotations

import logging
import os

from finemem_lib.core.retrieval import BM25Index
from finemem_lib.infra import quiet


def test_building_an_index_logs_nothing_even_at_debug(caplog):
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            BM25Index([("a", "the cat sat"), ("b", "a dog ran")]).search("cat", k=1)
    assert not [r for r in caplog.records if r.name.startswith("bm25s")]


def test_progress_bars_only_for_a_terminal(monkeypatch):
    from finemem_lib.infra import progress

    class Pipe:
        def isatty(self):
            return False

    for name in ("CI", "PYTEST_CURRENT_TEST", quiet.PROGRESS_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(progress.sys, "stderr", Pipe())
    monkeypatch.setattr(progress, "_parent_is_papermill", lambda: False)
    assert progress.progress_enabled() is False
    monkeypatch.setenv(quiet.PROGRESS_ENV, "1")
    assert progress.progress_enabled() is True
    monkeypatch.setenv(quiet.PROGRESS_ENV, "0")
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        monkeypatch.delenv(name, raising=False)
    assert quiet.configure() is False
    assert quiet.os.environ["TQDM_DISABLE"] == "1"


def test_tqdm_is_off_in_a_process_without_progress():
    """tqdm reads TQDM_DISABLE when it is imported: importing finemem_lib first must set it in time."""
    import subprocess
    import sys

    code = "import finemem_lib; from tqdm import tqdm; print(tqdm(range(3)).disable)"
    env = {**os.environ, quiet.PROGRESS_ENV: "0"}
    env.pop("TQDM_DISABLE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
