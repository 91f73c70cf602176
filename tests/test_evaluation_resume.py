"""A real evaluation process killed with SIGKILL mid-run resumes with no lost and no duplicated record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from finemem_lib.data.prepared import save_prepared
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.evaluation.records import read_records
from finemem_lib.evaluation.runner import run_evaluation
from finemem_lib.infra.config import load_profile, repo_root
from finemem_lib.infra.paths import profile_paths

METHODS = ["long_context", "rag_bm25", "store_everything", "closed_book"]


def _profile(tmp_path: Path) -> Path:
    """The smoke profile with a bigger offline MemoryAgentBench, so that the run lasts a few seconds."""
    cfg = load_profile("smoke")
    cfg["evaluation"]["mab_synthetic"] = {"instances": 8, "context_sentences": 120, "chunk_size": 64, "questions": 4}
    path = tmp_path / "profiles" / "smoke.yaml"  # same name: the profile's folders stay <dir>/smoke
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(cfg))
    return path


def _complete_records(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        out += read_records(path)[1]
    return out


def _key(r: dict) -> tuple:
    return (r["benchmark"], r["method"], r["instance_id"], r["q"])


@pytest.mark.slow
def test_killed_evaluation_resumes_without_loss_or_duplicates(tmp_path):
    profile = _profile(tmp_path)
    cfg = load_profile(profile)
    data_dir, results_dir = tmp_path / "data", tmp_path / "results"
    paths = profile_paths(cfg, results_dir, data_dir)
    save_prepared(build_synthetic(cfg["data"], cfg["seed"]), paths.data)
    command = [
        sys.executable,
        "-m",
        "finemem_lib.evaluation",
        "--profile",
        str(profile),
        "--methods",
        *METHODS,
        "--data-dir",
        str(data_dir),
        "--results-dir",
        str(results_dir),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(repo_root()), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    eval_dir = paths.results / "eval"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if len(_complete_records(eval_dir)) >= 5:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the evaluation finished before it could be killed; make the run longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = _complete_records(eval_dir)
    assert before, "nothing was recorded before the kill"

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _complete_records(eval_dir)
    keys = [_key(r) for r in after]
    assert len(keys) == len(set(keys)), "duplicated records"
    assert {_key(r) for r in before} <= set(keys), "records written before the kill were lost"
    for path in eval_dir.glob("*.jsonl"):  # every line parses: no torn line left behind
        [json.loads(line) for line in path.read_text().splitlines()]

    fresh_paths = profile_paths(cfg, tmp_path / "fresh", data_dir)
    fresh = run_evaluation(cfg, fresh_paths, methods=METHODS, progress=False)
    assert set(keys) == {_key(r) for r in fresh.to_dict("records")}, "the resumed run is not complete"
    by_key = {_key(r): (r["prediction"], r["score"]) for r in after}
    assert all(by_key[_key(r)] == (r["prediction"], r["score"]) for r in fresh.to_dict("records"))
