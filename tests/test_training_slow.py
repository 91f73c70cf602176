"""Real GRPO runs in subprocesses: a run killed mid-training resumes to the same results; two processes train.

Both use a tiny profile (a few synthetic instances, a ~100k-parameter manager cold-started by SFT for
a few dozen steps, rollouts at temperature 0.5 so some operations are valid and advantages are not all
zero) and the real CLI, ``python -m finemem_lib.training.cli``.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from finemem_lib.infra.config import load_profile, repo_root

pytestmark = pytest.mark.slow

ROOT = repo_root()
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
# Per-step numbers that must agree between an uninterrupted run and a killed-and-resumed one.
COMPARED = [
    "loss",
    "reward",
    "rewards/global",
    "rewards/chunk",
    "format_rate",
    "memory/tokens",
    "advantages/abs_mean",
    "kl",
    "heldout/qa",
    "heldout/memory_tokens",
]


def tiny_profile(tmp: Path, sft_model: str | None) -> dict:
    cfg = load_profile("smoke")
    cfg["name"] = "tiny"
    cfg["data"]["synthetic"].update(
        {"train_instances": 2, "test_instances": 1, "chunks_per_instance": 3, "sentences_per_chunk": 4}
    )
    cfg["manager"].update(
        {
            "offline": {
                "vocab_size": 700,
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 32,
                "max_position_embeddings": 1024,
            },
            "batch_size": 16,
            "sampling": {"temperature": 0.5, "top_p": 1.0, "top_k": 0, "max_new_tokens": 40},
        }
    )
    cfg["sft"].update({"epochs": 8, "batch_size": 4, "learning_rate": 5.0e-3, "num_threads": 1})
    cfg["rollout"] = {"num_generations": 2, "question_ratio_train": 0.5, "question_ratio_eval": 1.0}
    cfg["training"] = {
        "variants": ["finemem"],
        "seeds": [0],
        "sft_model": sft_model,
        "instances_per_step": 2,
        "micro_batch_size": 6,
        "learning_rate": 1.0e-3,
        "kl_beta": 0.001,
        "max_steps": 4,
        "save_steps": 1,
        "save_total_limit": 3,
        "num_threads": 1,
        "heldout": {"every": 2, "max_instances": 2},
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cfg


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny profile file and its SFT start (trained once for the module)."""
    from finemem_lib.agents.sft import train_sft_manager
    from finemem_lib.data.synthetic import build_synthetic

    tmp = tmp_path_factory.mktemp("tiny")
    sft_dir = tmp / "sft"
    cfg = tiny_profile(tmp, str(sft_dir))
    train_sft_manager(cfg, build_synthetic(cfg["data"], 0)["train"], sft_dir)
    return tmp / "tiny.yaml"


def cli(profile: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "finemem_lib.training.cli",
        "--profile",
        str(profile),
        "--results-dir",
        str(out / "results"),
        "--data-dir",
        str(out / "data"),
        *extra,
    ]


def run_dir(out: Path) -> Path:
    return out / "results" / "runs" / "03_tiny_finemem_s0"


def checkpoint_dir(out: Path) -> Path:
    return out / "data" / "tiny" / "grpo" / "tiny_finemem_s0"


def start_and_kill(profile: Path, out: Path, step: int = 2) -> None:
    """Start a run and SIGKILL it as soon as checkpoint ``step`` is complete (mid-way through the next step)."""
    proc = subprocess.Popen(
        cli(profile, out),
        cwd=ROOT,
        env=ENV,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = checkpoint_dir(out) / f"checkpoint-{step}" / "trainer_state.json"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # mid-step: rollouts, loss or checkpoint writing
    proc.wait()
    assert not (checkpoint_dir(out) / "final").exists()


def test_checkpoints_of_another_configuration_are_not_resumed(tiny, tmp_path):
    start_and_kill(tiny, tmp_path)
    done = subprocess.run(
        cli(tiny, tmp_path, "--set", "learning_rate=0.002"), cwd=ROOT, env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "another config" in done.stderr
    record = pd.read_json(run_dir(tmp_path) / "run.json", typ="series")
    assert record["status"] == "finished" and record["resumed_from"] is None


def test_a_killed_run_resumes_to_the_same_results(tiny, tmp_path):
    ref, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    subprocess.run(cli(tiny, ref, "--keep-checkpoints"), cwd=ROOT, env=ENV, check=True, capture_output=True)

    start_and_kill(tiny, killed)

    resumed = subprocess.run(cli(tiny, killed), cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resum" in resumed.stderr.lower()

    record = pd.read_json(run_dir(killed) / "run.json", typ="series")
    assert record["status"] == "finished" and record["steps"] == 4 and "checkpoint-" in record["resumed_from"]
    a = pd.read_csv(run_dir(ref) / "history.csv").set_index("step")
    b = pd.read_csv(run_dir(killed) / "history.csv").set_index("step")
    columns = [c for c in COMPARED if c in a.columns]
    assert a["advantages/abs_mean"].max() > 0, "degenerate test: no advantage signal"
    pd.testing.assert_frame_equal(a[columns], b[columns], check_exact=False, rtol=1e-5, atol=1e-7)
    wa = load_file(checkpoint_dir(ref) / "final" / "model.safetensors")
    wb = load_file(checkpoint_dir(killed) / "final" / "model.safetensors")
    start = load_file(Path(record["sft_model"]) / "model.safetensors")
    assert any(not torch.equal(wa[k], start[k]) for k in wa), "the model did not change: nothing was tested"
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_two_steps(tiny, tmp_path):
    """accelerate launch with two CPU processes (torchrun launcher + gloo, see configs/accelerate/cpu_2proc.yaml;
    accelerate's --cpu flag would start a single process)."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    command = [
        accelerate,
        "launch",
        "--config_file",
        str(ROOT / "configs/accelerate/cpu_2proc.yaml"),
        "--num_processes",
        "2",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "finemem_lib.training.cli",
        "--profile",
        str(tiny),
        "--results-dir",
        str(tmp_path / "results"),
        "--data-dir",
        str(tmp_path / "data"),
        "--set",
        "max_steps=2",
    ]
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    record = pd.read_json(run_dir(tmp_path) / "run.json", typ="series")
    assert record["status"] == "finished" and record["processes"] == 2 and record["steps"] == 2
    assert record["grpo_args"]["instances_per_device"] == 1  # 2 instances per step over 2 processes
    history = pd.read_csv(run_dir(tmp_path) / "history.csv")
    steps = history.dropna(subset=["loss"])
    assert list(steps["step"]) == [1, 2]
    # means over both processes' samples: 1 instance x G=2 x T=3 step samples on each
    assert (steps["samples/per_process"] == 6).all()
    assert (checkpoint_dir(tmp_path) / "final" / "model.safetensors").is_file()
