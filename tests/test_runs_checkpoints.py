"""Checkpoints: verified before resuming, a fallback to the previous good one, no deletion on a torn identity,
a failed run logged as failed, and checkpoints removed only after the run log says finished."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths
from finemem_lib.training import run as runner
from finemem_lib.training.checkpoints import (
    RUN_IDENTITY,
    checkpoint_problem,
    last_complete_checkpoint,
    prepare_output_dir,
)
from finemem_lib.training.run import RUN_LOG

IDENTITY = {"config": "c", "seed": 0, "start_model": "m", "data": "d", "hash": "h1"}


def make_checkpoint(output_dir: Path, step: int) -> Path:
    folder = output_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(folder / "model.safetensors"))
    torch.save({"state": {0: torch.ones(16)}}, folder / "optimizer.pt")
    torch.save({"last_epoch": step}, folder / "scheduler.pt")
    torch.save({"cpu": torch.get_rng_state()}, folder / "rng_state.pth")
    return folder


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_complete_checkpoint_passes(tmp_path):
    assert checkpoint_problem(make_checkpoint(tmp_path, 4)) is None


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "rng_state.pth", "scheduler.pt"])
def test_a_half_written_file_is_caught(tmp_path, name):
    checkpoint = make_checkpoint(tmp_path, 4)
    truncate(checkpoint / name)
    problem = checkpoint_problem(checkpoint)
    assert problem and problem.startswith(name)


def test_missing_optimizer_and_torn_state_are_caught(tmp_path):
    checkpoint = make_checkpoint(tmp_path, 4)
    (checkpoint / "trainer_state.json").write_text('{"global_')
    assert "trainer_state.json" in checkpoint_problem(checkpoint)
    other = make_checkpoint(tmp_path, 8)
    (other / "optimizer.pt").unlink()
    assert checkpoint_problem(other) == "optimizer.pt missing"


def test_falls_back_to_the_previous_good_checkpoint_and_says_which(tmp_path, caplog):
    make_checkpoint(tmp_path, 4)
    newest = make_checkpoint(tmp_path, 8)
    truncate(newest / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        assert last_complete_checkpoint(tmp_path).name == "checkpoint-4"
    assert (
        "checkpoint-8" in caplog.text
        and "model.safetensors" in caplog.text
        and "falling back to checkpoint-4" in (caplog.text)
    )


def test_resume_keeps_the_good_checkpoint_and_drops_the_damaged_newer_one(tmp_path):
    out = tmp_path / "run"
    make_checkpoint(out, 4)
    truncate(make_checkpoint(out, 8) / "optimizer.pt")
    (out / RUN_IDENTITY).write_text(json.dumps(IDENTITY))
    assert prepare_output_dir(out, IDENTITY, resume=True, name="r").name == "checkpoint-4"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]


def test_a_torn_identity_file_never_deletes_checkpoints(tmp_path, caplog):
    out = tmp_path / "run"
    make_checkpoint(out, 4)
    (out / RUN_IDENTITY).write_text('{"config": "c", "se')  # killed mid-write by an older version
    with caplog.at_level(logging.WARNING):
        assert prepare_output_dir(out, IDENTITY, resume=True, name="r") is None
    [aside] = list(tmp_path.glob("run.unverified-*"))
    assert (aside / "checkpoint-4" / "model.safetensors").is_file(), "the checkpoints were moved, not deleted"
    assert "moved to" in caplog.text and "not deleted" in caplog.text
    assert json.loads((out / RUN_IDENTITY).read_text()) == IDENTITY


def test_checkpoints_of_another_readable_identity_are_removed(tmp_path):
    out = tmp_path / "run"
    make_checkpoint(out, 4)
    (out / RUN_IDENTITY).write_text(json.dumps({**IDENTITY, "seed": 1, "hash": "h2"}))
    assert prepare_output_dir(out, IDENTITY, resume=True, name="r") is None
    assert not list(out.glob("checkpoint-*"))


class FakeTrainer:
    """Stands in for StepCreditGRPOTrainer: what train_manager calls, no model."""

    def __init__(self, output_dir: Path, fail: bool, seen: list):
        self.output_dir, self.fail, self.seen = output_dir, fail, seen
        self.accelerator = SimpleNamespace(is_main_process=True, num_processes=1, wait_for_everyone=lambda: None)
        self.args = SimpleNamespace(to_dict=lambda: dict.fromkeys(runner._LOGGED_ARGS, 0))
        self.state = SimpleNamespace(log_history=[{"step": 0, "heldout/qa": 0.5}], global_step=2)
        self.policy_settings = {}

    def train(self, resume_from_checkpoint=None):
        make_checkpoint(self.output_dir, 2)
        if self.fail:
            raise RuntimeError("boom at step 2")

    def save_model(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    cfg = load_profile("smoke")
    paths = profile_paths(cfg, tmp_path / "results", tmp_path / "data")
    seen: list = []

    def build(cfg, settings, seed, train, test, sft_model, output_dir, reasoner, fail=False):
        return FakeTrainer(output_dir, monkeypatch.fail, seen)

    monkeypatch.setattr(runner, "_build_trainer", build)
    identity = {**IDENTITY}

    def run(fail: bool):
        monkeypatch.fail = fail
        return runner.train_manager(
            cfg, paths, "or_only", 0, {"train": [], "test": []}, tmp_path / "sft", identity=identity
        )

    return paths, run, seen


def test_a_failed_run_is_logged_as_failed(fake_run):
    paths, run, _ = fake_run
    with pytest.raises(RuntimeError, match="boom"):
        run(fail=True)
    record = json.loads((paths.runs / "03_smoke_or_only_s0" / RUN_LOG).read_text())
    assert record["status"] == "failed" and "boom at step 2" in record["error"]
    assert list((paths.data / "grpo" / "smoke_or_only_s0").glob("checkpoint-*")), "a failed run keeps its checkpoints"


def test_checkpoints_go_only_after_the_log_says_finished(fake_run, monkeypatch):
    paths, run, _ = fake_run
    statuses = []
    remove = runner.remove_checkpoints

    def spy(found):
        statuses.append(json.loads((paths.runs / "03_smoke_or_only_s0" / RUN_LOG).read_text())["status"])
        remove(found)

    monkeypatch.setattr(runner, "remove_checkpoints", spy)
    result = run(fail=False)
    assert statuses == ["finished"]
    assert not list((paths.data / "grpo" / "smoke_or_only_s0").glob("checkpoint-*"))
    record = json.loads((result.run_dir / RUN_LOG).read_text())
    assert record["model_dir"] == str(result.model_dir), "outside the project the path stays absolute"
    assert record["runtime"]["torch_threads"] == 1 and record["runtime"]["deterministic_algorithms"] is True
