"""A credit scheme trained end to end with the real command line (``finemem train --variant gigpo``)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.test_training_slow import ENV, ROOT, tiny_profile

pytestmark = pytest.mark.slow


def test_finemem_train_runs_a_credit_scheme(tmp_path):
    from finemem_lib.agents.sft import train_sft_manager
    from finemem_lib.data.synthetic import build_synthetic

    cfg = tiny_profile(tmp_path, str(tmp_path / "sft"))
    cfg["sft"]["epochs"] = 16  # a start that emits some valid operations when sampled: GiGPO's turn score varies
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    train_sft_manager(cfg, build_synthetic(cfg["data"], 0)["train"], tmp_path / "sft")
    command = [sys.executable, "-m", "finemem_lib.cli", "train", "--profile", str(tmp_path / "tiny.yaml"),
               "--variant", "gigpo", "--results-dir", str(tmp_path / "results"), "--data-dir", str(tmp_path / "data"),
               "--report"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "results" / "runs" / "03_tiny_gigpo_s0"
    record = pd.read_json(run / "run.json", typ="series")
    assert record["status"] == "finished" and record["variant"] == "gigpo" and record["steps"] == 4
    history = pd.read_csv(run / "history.csv")
    history = history[history["advantages/abs_mean"].notna()]  # the training rows (not the held-out-only ones)
    assert len(history) == 4 and history["advantages/abs_mean"].max() > 0, "no advantage signal: nothing was trained"
    assert np.isfinite(history["diag/spread/total"]).all() and np.isfinite(history["diag/spread/format"]).all()
    assert history["diag/spread/chunk"].eq(0).all()  # GiGPO's faithful turn score reads no chunk QA
    assert "gigpo" in done.stdout  # the held-out table names the run's variant
    assert list((tmp_path / "results" / "figures").glob("03_tiny_*.png")), "the report drew no figure"
