"""Run identity: a finished run (or SFT manager) is reused only when config, seed, start weights and data all match."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.identity import data_hash, files_hash, identity_changes, model_hash, run_identity
from finemem_lib.infra.paths import from_repo, profile_paths, repo_relative, run_dirs, run_name
from finemem_lib.training.run import RUN_LOG, reusable_run
from finemem_lib.training.start import sft_identity, sft_reuse_decision


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "sft"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights-v1")
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "finemem_manager.json").write_text('{"sft": {"train_wall_s": 1.0}}')
    return folder


@pytest.fixture
def splits():
    cfg = load_profile("smoke")
    return build_synthetic(cfg["data"], 0)


def test_model_hash_follows_the_weights_not_the_training_log(model_dir):
    before = model_hash(model_dir)
    (model_dir / "finemem_manager.json").write_text('{"sft": {"train_wall_s": 99.0}}')
    assert model_hash(model_dir) == before, "wall times in the manager's log are not part of the weights"
    (model_dir / "model.safetensors").write_bytes(b"weights-v2")
    assert model_hash(model_dir) != before


def test_files_hash_sees_a_renamed_file(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x")
    before = files_hash(tmp_path)
    (tmp_path / "a.bin").rename(tmp_path / "b.bin")
    assert files_hash(tmp_path) != before


def test_data_hash_changes_with_one_chunk(splits):
    import dataclasses

    before = data_hash(splits)
    first = splits["train"][0]
    changed = dataclasses.replace(first, chunks=(first.chunks[0] + " extra", *first.chunks[1:]))
    assert data_hash({**splits, "train": [changed, *splits["train"][1:]]}) != before
    assert data_hash(dict(reversed(list(splits.items())))) == before, "split order must not matter"


def test_identity_changes_name_the_part_that_differs(model_dir, splits):
    a = run_identity({"lr": 1}, 0, model_dir, splits)
    assert identity_changes(a, run_identity({"lr": 1}, 0, model_dir, splits)) == []
    (model_dir / "model.safetensors").write_bytes(b"other")
    b = run_identity({"lr": 1}, 0, model_dir, splits)
    [reason] = identity_changes(a, b)
    assert "start model" in reason and a["start_model"] in reason and b["start_model"] in reason
    assert any("seed" in r for r in identity_changes(a, run_identity({"lr": 1}, 1, model_dir, splits)))
    assert identity_changes(None, a), "a run without an identity is never taken as the same run"


def _finished_run(paths, cfg, variant, seed, identity):
    run_dir, _ = run_dirs(paths, run_name(cfg, variant, seed))
    run_dir.mkdir(parents=True)
    record = {
        "run": run_name(cfg, variant, seed),
        "variant": variant,
        "seed": seed,
        "status": "finished",
        "wall_s": 1.0,
        "identity": identity,
        "model_dir": "data/x/final",
    }
    (run_dir / RUN_LOG).write_text(json.dumps(record))
    pd.DataFrame([{"step": 0, "heldout/qa": 0.5}]).to_csv(run_dir / "history.csv", index=False)
    return run_dir


def test_a_finished_run_from_other_start_weights_is_retrained(tmp_path, model_dir, splits):
    cfg = load_profile("smoke")
    paths = profile_paths(cfg, tmp_path / "results", tmp_path / "data")
    old = run_identity({"c": 1}, 0, model_dir, splits)
    _finished_run(paths, cfg, "or_only", 0, old)
    assert reusable_run(paths, cfg, "or_only", 0, old)[0] is not None
    (model_dir / "model.safetensors").write_bytes(b"a new SFT start")
    new = run_identity({"c": 1}, 0, model_dir, splits)
    done, why = reusable_run(paths, cfg, "or_only", 0, new)
    assert done is None and why.startswith("retraining smoke_or_only_s0 because the start model's weights changed")
    forced, why = reusable_run(paths, cfg, "or_only", 0, new, reuse="always")
    assert forced is not None and "forced" in why and "start model" in why
    assert reusable_run(paths, cfg, "or_only", 0, old, reuse="never")[0] is None
    with pytest.raises(ValueError, match="reuse must be one of"):
        reusable_run(paths, cfg, "or_only", 0, old, reuse="sometimes")


def test_a_run_log_stores_repo_relative_paths_and_reads_them_back(tmp_path, model_dir, splits):
    cfg = load_profile("smoke")
    paths = profile_paths(cfg, tmp_path / "results", tmp_path / "data")
    identity = run_identity({"c": 1}, 0, model_dir, splits)
    _finished_run(paths, cfg, "finemem", 0, identity)
    done, _ = reusable_run(paths, cfg, "finemem", 0, identity)
    assert done.model_dir == from_repo("data/x/final") and done.model_dir.is_absolute()
    assert repo_relative(from_repo("data/default/models/sft")) == "data/default/models/sft"
    assert repo_relative(tmp_path) == str(tmp_path), "a path outside the project stays absolute"
    assert repo_relative("Qwen/Qwen3-4B") == "Qwen/Qwen3-4B"


def test_sft_manager_is_retrained_when_the_data_changes(tmp_path, splits, caplog):
    cfg = load_profile("smoke")
    folder = tmp_path / "sft"
    folder.mkdir()
    identity = sft_identity(cfg, splits["train"])
    (folder / "finemem_manager.json").write_text(json.dumps({"identity": identity}))
    assert sft_reuse_decision(folder, identity) == (True, sft_reuse_decision(folder, identity)[1])
    other = sft_identity(cfg, splits["train"][:-1])
    ok, why = sft_reuse_decision(folder, other)
    assert not ok and "the data changed" in why
    assert sft_reuse_decision(folder, other, "always")[0]
    assert not sft_reuse_decision(folder, identity, "never")[0]
    changed_cfg = {**cfg, "sft": {**cfg["sft"], "epochs": 1}}
    assert "configuration" in sft_reuse_decision(folder, sft_identity(changed_cfg, splits["train"]))[1]
    (folder / "finemem_manager.json").write_text('{"identity": ')  # torn
    ok, why = sft_reuse_decision(folder, identity)
    assert not ok and "finemem_manager.json" in why


def test_only_the_default_profile_owns_the_top_of_results():
    assert profile_paths(load_profile("default"), create=False).results == from_repo("results")
    for name in ("smoke", "paper", "full"):
        assert profile_paths(load_profile(name), create=False).results == from_repo(f"results/{name}")


def test_a_study_logs_why_it_reuses_or_retrains(tmp_path, model_dir, splits, caplog, monkeypatch):
    from finemem_lib.training import loop, runner
    from finemem_lib.training.config import training_settings
    from finemem_lib.training.run import identity_config

    cfg = load_profile("smoke")
    paths = profile_paths(cfg, tmp_path / "results", tmp_path / "data")
    settings = training_settings(cfg, variant="or_only")
    identity = run_identity(identity_config(cfg, settings, "or_only"), 0, model_dir, splits)
    _finished_run(paths, cfg, "or_only", 0, identity)
    trained = []
    monkeypatch.setattr(loop, "train_manager", lambda *a, **k: trained.append(a[2]) or "trained")
    monkeypatch.setattr(loop, "build_reasoner", lambda *a: None)
    with caplog.at_level(logging.INFO, logger="finemem_lib.training.loop"):
        results = runner.run_study(
            cfg, paths, variants=["or_only", "finemem"], seeds=[0], data=splits, sft_model=model_dir
        )
    assert trained == ["finemem"] and results[0].variant == "or_only"
    assert "reusing finished run smoke_or_only_s0 (same config, seed, start weights and data)" in caplog.text
    assert "training smoke_finemem_s0: no finished run yet" in caplog.text
