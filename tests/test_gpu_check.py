"""The GPU check's parts on a CPU: the wheel list and its download commands, the stage runner, the record,
and (slow) ``benchmarks/gpu_check.sh --cpu-dry-run`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finemem_lib.agents.policy import DEVICE_ENV, load_manager
from tests.test_policy import INSTANCE
from tests.tiny import tiny_policy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_gpu  # noqa: E402
import gpu_check  # noqa: E402
import gpu_wheels  # noqa: E402


# ---------------------------------------------------------------------------- the wheel list
def test_the_wheel_list_is_the_closure_pinned_from_the_lock():
    assert gpu_wheels.WHEEL_LIST.read_text() == gpu_wheels.render(gpu_wheels.wanted_pins()), (
        "requirements/gpu-wheels.txt is stale: python benchmarks/gpu_wheels.py write"
    )
    pins, lock = gpu_wheels.read_lock(gpu_wheels.WHEEL_LIST), gpu_wheels.read_lock()
    assert {"trl", "datasets", "bm25s", "papermill", "ipykernel", "openai", "rouge-score"} <= set(pins)
    assert all(lock[name] == version for name, version in pins.items())
    assert not set(pins) & gpu_wheels.IMAGE_PACKAGES  # nothing the image has is carried
    assert {"torch", "transformers", "accelerate", "pandas", "pyarrow"} <= gpu_wheels.IMAGE_PACKAGES


def test_closure_follows_python_3_12_markers_and_stops_at_the_image():
    requires = {
        "app": ["lib-a>=1", "old-only; python_version < '3.11'", "new-only; python_version == '3.12'",
                "win-only; sys_platform == 'win32'", "extra-dep; extra == 'docs'", "Image_Pkg"],
        "lib-a": ["lib_b"],
        "lib-b": [],
        "new-only": [],
        "image-pkg": ["never-followed"],
    }  # fmt: skip
    names = gpu_wheels.closure(["app"], requires.__getitem__, present=frozenset({"image-pkg"}))
    assert names == ["app", "lib-a", "lib-b", "new-only"]


def test_pins_come_from_the_lock_and_a_missing_one_is_named(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text("# comment\nFoo_Bar==1.2\n\nbaz==3.0  # pinned\n")
    assert gpu_wheels.read_lock(lock) == {"foo-bar": "1.2", "baz": "3.0"}
    assert gpu_wheels.pinned(["baz"], gpu_wheels.read_lock(lock)) == {"baz": "3.0"}
    with pytest.raises(SystemExit, match="qux"):
        gpu_wheels.pinned(["baz", "qux"], gpu_wheels.read_lock(lock))
    lock.write_text("foo>=1\n")
    with pytest.raises(ValueError, match=r"x.lock:1: expected name==version"):
        gpu_wheels.read_lock(lock)


def test_download_commands_ask_for_python_3_12_manylinux_wheels_only(tmp_path):
    pins = {"trl": "1.16.0", "pyzmq": "27.3.0", "rouge-score": "0.1.2"}
    binary, source = gpu_wheels.download_commands(pins, tmp_path / "w", python="py")
    assert binary[:4] == ["py", "-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:"} <= set(binary)
    assert binary[binary.index("--python-version") + 1] == "3.12"
    platforms = {binary[i + 1] for i, arg in enumerate(binary) if arg == "--platform"}
    assert {"manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux1_x86_64"} <= platforms
    assert binary[binary.index("--dest") + 1] == str(tmp_path / "w")
    assert binary[-2:] == ["trl==1.16.0", "pyzmq==27.3.0"]
    assert source == ["py", "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(tmp_path / "w"), "rouge-score==0.1.2"]


def test_fetch_dry_run_prints_the_commands_and_downloads_nothing(tmp_path, capsys):
    assert gpu_wheels.main(["fetch", "--dest", str(tmp_path / "w"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "pip download" in lines[0] and "pip wheel" in lines[1]
    assert "trl==" in lines[0] and "rouge-score==0.1.2" in lines[1]
    assert not (tmp_path / "w").exists()


# ---------------------------------------------------------------------------- running stages
def _gone_or_zombie(pid: int, grace_s: float = 10.0) -> bool:
    """True once ``pid`` has exited (at most a zombie left to reap); a SIGKILLed process on a busy machine
    can still read as running for a moment, so its state is polled for up to ``grace_s`` seconds."""
    state = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + grace_s
    while True:
        try:
            if state.read_text().split()[2] == "Z":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_a_stage_past_its_limit_is_stopped_with_its_children(tmp_path):
    log = tmp_path / "log"
    child = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {child}; echo started; wait"
    entry = gpu_check.run_command(["bash", "-c", script], 1, log)
    assert entry["status"] == "timeout" and entry["returncode"] != 0
    assert "started" in log.read_text() and "stopped at its limit" in log.read_text()
    pid = int(child.read_text())
    assert _gone_or_zombie(pid), f"the stage's child {pid} outlived its stage"
    assert gpu_check.run_command(["bash", "-c", "exit 3"], 10, log)["status"] == "failed"
    assert gpu_check.run_command(["true"], 10, log)["status"] == "ok"


def test_junit_summary_counts_and_names_failures(tmp_path):
    xml = tmp_path / "t.xml"
    xml.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="1" skipped="1">'
        '<testcase classname="tests.test_gpu" name="a"/>'
        '<testcase classname="tests.test_gpu" name="b"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_gpu" name="c"><error message="y"/></testcase>'
        '<testcase classname="tests.test_gpu" name="d"><skipped/></testcase>'
        "</testsuite></testsuites>"
    )
    summary = gpu_check.junit_summary(xml)
    assert summary == {
        "passed": 1,
        "failed": 1,
        "errors": 1,
        "skipped": 1,
        "failing": ["tests.test_gpu::b", "tests.test_gpu::c"],
    }
    assert gpu_check.junit_summary(tmp_path / "none.xml") == {}


def test_the_plans_cover_the_gpu_path():
    gpu = {s["name"]: s for s in gpu_check.stage_plan(dry_run=False)}
    assert list(gpu) == ["environment", "wheels", "gpu_tests", "bench_qwen3-0.6b", "notebooks", "bench_qwen3-4b"]
    assert gpu["bench_qwen3-4b"]["needs"] > 0  # only if time remains
    assert gpu_check.GPU_BUDGET_S <= 8 * 60 - 30  # each stage's limit is cut to what is left of the budget
    dry = {s["name"]: s for s in gpu_check.stage_plan(dry_run=True)}
    assert "bench_qwen3-4b" not in dry
    assert dry["bench_qwen3-tiny"]["bench"][:2] == ["--device", "cpu"]
    assert gpu_check.NOTEBOOKS == ("01", "02", "03", "04")


def test_missing_wheels_fail_the_stage_and_the_rest_still_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "missing_packages", lambda pins: ["trl"])
    monkeypatch.setattr(
        gpu_check, "stage_plan", lambda dry: [{"name": "wheels", "limit": 5}, {"name": "bench_x", "limit": 5}]
    )
    monkeypatch.setattr(gpu_check, "stage_command", lambda stage, args, work, out: ["true"])
    code = gpu_check.main(["--cpu-dry-run", "--out", str(tmp_path), "--wheels", str(tmp_path / "none")])
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 1 and record["ok"] is False
    assert record["stages"]["wheels"]["status"] == "failed"
    assert "no wheel folder" in record["stages"]["wheels"]["reason"]
    assert record["stages"]["bench_x"]["status"] == "ok"


def test_an_exhausted_budget_skips_stages_and_still_writes_the_record(tmp_path):
    assert gpu_check.main(["--cpu-dry-run", "--out", str(tmp_path), "--budget", "0"]) == 0
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert record["mode"] == "cpu-dry-run"
    assert {s["status"] for s in record["stages"].values()} == {"skipped"}
    assert record["figures"]["device"] == "cpu"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json", "gpu_check.log"]


def test_figures_flatten_the_benchmark_and_test_results():
    bench = {
        "models": {
            "qwen3-0.6b": {
                "rollout": {"transformers": {"tokens_per_s": 100.0}, "native": {"tokens_per_s": 250.0}},
                "optimizer_step": {"seconds": 2.5, "peak_memory_gib": 30.1, "mfu": 0.31},
            }
        }
    }
    record = {
        "stages": {
            "environment": {"result": {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130", "torch_cuda": "13.0"}},
            "gpu_tests": {"result": {"passed": 9, "failed": 0, "errors": 0, "skipped": 0}},
            "bench_qwen3-0.6b": {"result": bench},
            "notebooks": {"result": {"notebooks": {"01_data_prep": {"status": "ok", "seconds": 9.0}}}},
        }
    }
    flat = gpu_check.figures(record)
    assert flat["device"] == "NVIDIA H100 80GB HBM3" and flat["cuda"] == "13.0"
    assert flat["gpu_tests_passed"] == 9
    assert flat["qwen3-0.6b/generate_tokens_per_s"] == 100.0 and flat["qwen3-0.6b/native_tokens_per_s"] == 250.0
    assert flat["qwen3-0.6b/step_s"] == 2.5 and flat["qwen3-0.6b/mfu"] == 0.31
    assert flat["notebook/01_data_prep_s"] == 9.0


def test_bench_skips_vllm_with_its_reason():
    import torch

    assert "CUDA" in bench_gpu.vllm_skip_reason(torch.device("cpu"), skip=False)
    assert bench_gpu.vllm_skip_reason(torch.device("cuda"), skip=True) == "--skip-vllm"
    assert bench_gpu.default_peak_tflops(torch.device("cpu")) is None


def test_a_loaded_manager_goes_to_the_device_the_environment_names(tmp_path, monkeypatch):
    folder = tiny_policy([INSTANCE]).save_pretrained(tmp_path / "manager")
    assert load_manager(folder).device.type == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "meta")  # a device every machine has
    assert load_manager(folder).device.type == "meta"
    assert load_manager(folder, device="cpu").device.type == "cpu"  # an explicit device wins


# ---------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_cpu_dry_run_end_to_end(tmp_path):
    """``benchmarks/gpu_check.sh --cpu-dry-run``: every stage runs on the CPU and the record has the GPU run's shape."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    done = subprocess.run(
        [str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_tests.xml"]
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert record["mode"] == "cpu-dry-run" and record["ok"] is True
    stages = record["stages"]
    assert stages["environment"]["result"]["packages"]["trl"]
    tests = stages["gpu_tests"]["result"]
    assert tests["passed"] >= 9 and tests["failed"] == tests["errors"] == tests["skipped"] == 0
    row = stages["bench_qwen3-tiny"]["result"]["models"]["qwen3-tiny"]
    assert row["rollout"]["native"]["tokens_per_s"] > 0 and row["rollout"]["transformers"]["tokens_per_s"] > 0
    assert row["optimizer_step"]["seconds"] > 0 and "skipped" in row["rollout"]["vllm"]
    notebooks = stages["notebooks"]["result"]
    assert notebooks["manager_device"] == "cpu"
    assert [n[:2] for n, r in notebooks["notebooks"].items() if r["status"] == "ok"] == ["01", "02", "03", "04"]
    assert {"01_data_summary.csv", "04_memalpha.csv"} <= set(notebooks["tables"])
    assert all(run["status"] == "finished" and run["steps"] == 2 for run in notebooks["grpo_runs"].values())
    figures = record["figures"]
    assert figures["qwen3-tiny/native_tokens_per_s"] == row["rollout"]["native"]["tokens_per_s"]
    assert "==> notebooks" in (tmp_path / "gpu_check.log").read_text()
