"""The GPU check: every stage of the GPU path in one bounded run, figures and logs written as it goes.

Stages, in order, each a subprocess with its own time limit (a failed or timed-out stage is recorded and the
next one runs; the whole run stops starting stages at ``--budget`` seconds):

1. ``environment``: python, torch and its CUDA, the device, the packages' versions, ``nvidia-smi``;
2. ``wheels``: installs requirements/gpu-wheels.txt from the wheel folder (``pip install --no-index``), skipped
   when every listed package is already installed; ``pip check`` is recorded;
3. ``gpu_tests``: ``pytest -m gpu`` (tests/test_gpu.py);
4. ``bench_qwen3-0.6b``: benchmarks/bench_gpu.py for the Qwen3-0.6B architecture;
5. ``notebooks``: notebooks 01-04 under the ``paper-smoke`` profile (schema-exact data stand-ins, a random-weight
   Qwen3, the scripted OpenAI-compatible server on 127.0.0.1), the manager on the device;
6. ``bench_qwen3-4b``: the same benchmark for Qwen3-4B, only when enough of the budget remains.

``--cpu-dry-run`` runs the same stages on the CPU with toy sizes (the gpu tests with FINEMEM_GPU_TESTS_ON_CPU=1,
the benchmark for a toy Qwen3, no 4B). Output, under ``--out`` (default ``$OUT``, else a new temporary
folder): gpu_check.json (every figure), gpu_check.log (every stage's output), gpu_tests.xml (JUnit).
Exit status 0 when no stage failed.

    benchmarks/gpu_check.sh [--cpu-dry-run] [--out DIR] [--budget S] [--wheels DIR]
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WHEEL_LIST = ROOT / "requirements" / "gpu-wheels.txt"
NOTEBOOKS = ("01", "02", "03", "04")
PACKAGES = ("torch", "transformers", "accelerate", "trl", "datasets", "bm25s", "papermill", "ipykernel", "openai")
LOG_LIMIT = 12 * 2**20  # gpu_check.log is cut to its last 12 MiB
# No stage starts after the budget, and none runs past it: the GPU run fits an 8-minute device call.
GPU_BUDGET_S, DRY_RUN_BUDGET_S = 450.0, 1500.0


def stage_plan(dry_run: bool) -> list[dict[str, Any]]:
    """The stages: name, time limit (s), and for the optional 4B benchmark the budget it needs left to start."""
    if dry_run:
        bench = ["--device", "cpu", "--models", "qwen3-tiny", "--prompts", "2", "--generations", "2"]
        bench += ["--prompt-tokens", "32", "--completion-tokens", "8", "--micro-batch", "2"]
        return [
            {"name": "environment", "limit": 60},
            {"name": "wheels", "limit": 120},
            {"name": "gpu_tests", "limit": 240},
            {"name": "bench_qwen3-tiny", "limit": 120, "bench": bench},
            {"name": "notebooks", "limit": 600},
        ]
    return [
        {"name": "environment", "limit": 60},
        {"name": "wheels", "limit": 120},
        {"name": "gpu_tests", "limit": 150},
        {"name": "bench_qwen3-0.6b", "limit": 150, "bench": ["--models", "qwen3-0.6b"]},
        {"name": "notebooks", "limit": 210},
        {"name": "bench_qwen3-4b", "limit": 150, "bench": ["--models", "qwen3-4b", "--micro-batch", "4"], "needs": 120},
    ]


# ---------------------------------------------------------------------------- running one stage
def run_command(command: Sequence[str], limit: float, log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command`` (output appended to ``log``) for at most ``limit`` seconds; its whole process group is
    ended at the limit. Returns status (ok / failed / timeout), return code and seconds."""
    started = time.perf_counter()
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        process = subprocess.Popen(
            list(command), cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=max(1.0, limit))
            status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
            status = "timeout"
            sink.write(f"\n[gpu_check] stopped at its limit of {limit:.0f} s\n")
    return {"status": status, "returncode": code, "seconds": round(time.perf_counter() - started, 1)}


def missing_packages(pins: dict[str, str]) -> list[str]:
    """The listed packages not installed in this interpreter (any version counts as installed)."""
    missing = []
    for name in pins:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def read_pins(path: Path = WHEEL_LIST) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip()] = version.strip()
    return pins


def wheel_install_command(python: str, wheels: Path) -> list[str]:
    """Install exactly the listed wheels from the folder, nothing from an index."""
    return [python, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", str(wheels),
            "--no-cache-dir", "--disable-pip-version-check", "-r", str(WHEEL_LIST)]  # fmt: skip


def junit_summary(path: Path) -> dict[str, Any]:
    """passed / failed / errors / skipped counts and the failing tests' names of a JUnit XML file."""
    if not path.is_file():
        return {}
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    failing = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return {
        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
        "failing": failing,
    }


# ---------------------------------------------------------------------------- the environment stage
def describe_environment() -> dict[str, Any]:
    """Python, torch and its CUDA, the device and the packages' versions (run in a subprocess)."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "packages": {name: _version(name) for name in PACKAGES},
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_count=torch.cuda.device_count(),
            capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cudnn=torch.backends.cudnn.version(),
        )
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        info["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
    return info


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------- the notebooks stage
def run_notebooks(workdir: Path, out_json: Path, device: str, numbers: Sequence[str] = NOTEBOOKS) -> int:
    """Notebooks ``numbers`` under paper-smoke in ``workdir``; the record is rewritten after each notebook."""
    from finemem_lib.agents.scripted_llm import ScriptedLLMServer
    from finemem_lib.data.schema_fixtures import write_hub_fixture

    fixture = write_hub_fixture(workdir / "hub")
    results, data, executed = workdir / "results", workdir / "data", workdir / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"profile": "paper-smoke", "manager_device": device, "notebooks": {}}
    failed = False
    with ScriptedLLMServer(max_seconds=1800) as server:
        env = {
            **os.environ,
            **server.environment(),
            "FINEMEM_HUB_DIR": str(fixture.root),
            "FINEMEM_MANAGER_DEVICE": device,
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "MPLBACKEND": "Agg",
            "TOKENIZERS_PARALLELISM": "false",
        }
        for number in numbers:
            notebook = next((ROOT / "notebooks").glob(f"{number}_*.ipynb"))
            command = [sys.executable, "-m", "finemem_lib.repro.notebook_run", str(notebook)]
            command += [str(executed / notebook.name), "--cwd", str(ROOT), "-p", "profile", "paper-smoke"]
            command += ["-p", "results_dir", str(results), "-p", "data_dir", str(data)]
            started = time.perf_counter()
            code = subprocess.run(command, env=env, cwd=ROOT).returncode
            record["notebooks"][notebook.stem] = {
                "status": "ok" if code == 0 else "failed",
                "seconds": round(time.perf_counter() - started, 1),
            }
            failed = failed or code != 0
            record["tables"] = sorted(p.name for p in (results / "tables").glob("*.csv"))
            record["grpo_runs"] = _grpo_runs(results)
            out_json.write_text(json.dumps(record, indent=2))
            if code != 0:
                break  # each notebook reads what the previous ones wrote
    return 1 if failed else 0


def _grpo_runs(results: Path) -> dict[str, Any]:
    """Status, steps, wall time and device of each GRPO run the training notebook wrote."""
    runs = {}
    for path in sorted(results.glob("runs/*/run.json")):
        run = json.loads(path.read_text())
        host = run.get("host") or {}
        runs[path.parent.name] = {
            "status": run.get("status"),
            "steps": run.get("steps"),
            "wall_s": run.get("wall_s"),
            "gpu": host.get("gpu"),
            "cuda": host.get("cuda"),
        }
    return runs


# ---------------------------------------------------------------------------- the whole run
def stage_command(stage: dict[str, Any], args: argparse.Namespace, work: Path, out: Path) -> list[str] | None:
    """The subprocess of a stage (None: run in this process)."""
    python, me = sys.executable, str(Path(__file__).resolve())
    name = stage["name"]
    if name == "environment":
        return [python, me, "environment", str(work / "environment.json")]
    if name == "wheels":
        return wheel_install_command(python, args.wheels)
    if name == "gpu_tests":
        return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests/test_gpu.py",
                f"--junitxml={out / 'gpu_tests.xml'}"]  # fmt: skip
    if name == "notebooks":
        device = "cpu" if args.cpu_dry_run else "cuda"
        return [python, me, "notebooks", str(work / "notebooks"), str(work / "notebooks.json"), "--device", device]
    return [python, "benchmarks/bench_gpu.py", *stage["bench"], "--skip-vllm", "--workdir", str(work / "bench"),
            "--out", str(work / f"{name}.json")]  # fmt: skip


def stage_result(stage: dict[str, Any], work: Path, out: Path) -> dict[str, Any]:
    """What a finished (or stopped) stage left behind."""
    name = stage["name"]
    if name == "environment":
        return _read_json(work / "environment.json")
    if name == "gpu_tests":
        return junit_summary(out / "gpu_tests.xml")
    if name == "notebooks":
        return _read_json(work / "notebooks.json")
    if name.startswith("bench_"):
        return _read_json(work / f"{name}.json")
    return {}


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def figures(record: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers, flat: device, test counts, tokens/s, step time, peak memory, MFU, notebooks."""
    stages = record["stages"]
    env = stages.get("environment", {}).get("result", {})
    flat: dict[str, Any] = {"device": env.get("gpu") or "cpu", "torch": env.get("torch"), "cuda": env.get("torch_cuda")}
    tests = stages.get("gpu_tests", {}).get("result", {})
    flat.update({f"gpu_tests_{k}": tests.get(k) for k in ("passed", "failed", "errors", "skipped")})
    for stage in stages.values():
        for model, row in (stage.get("result", {}).get("models") or {}).items():
            rollout, step = row.get("rollout", {}), row.get("optimizer_step", {})
            flat[f"{model}/generate_tokens_per_s"] = rollout.get("transformers", {}).get("tokens_per_s")
            flat[f"{model}/native_tokens_per_s"] = rollout.get("native", {}).get("tokens_per_s")
            flat[f"{model}/step_s"] = step.get("seconds")
            flat[f"{model}/step_peak_memory_gib"] = step.get("peak_memory_gib")
            flat[f"{model}/mfu"] = step.get("mfu")
    notebooks = stages.get("notebooks", {}).get("result", {}).get("notebooks", {})
    flat.update({f"notebook/{nb}_s": row["seconds"] for nb, row in notebooks.items() if row["status"] == "ok"})
    return flat


def run_all(args: argparse.Namespace) -> int:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "gpu_check.log"
    log.write_text("")
    work = Path(tempfile.mkdtemp(prefix="finemem-gpu-check-"))
    start = time.perf_counter()
    mode = "cpu-dry-run" if args.cpu_dry_run else "gpu"
    record: dict[str, Any] = {
        "mode": mode,
        "command": " ".join(["benchmarks/gpu_check.sh", *args.argv]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "budget_s": args.budget,
        "stages": {},
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    if args.cpu_dry_run:
        env["FINEMEM_GPU_TESTS_ON_CPU"] = "1"
    for stage in stage_plan(args.cpu_dry_run):
        name = stage["name"]
        left = args.budget - (time.perf_counter() - start)
        entry: dict[str, Any]
        if left < stage.get("needs", 10):
            entry = {"status": "skipped", "reason": f"{left:.0f} s of the budget left"}
        elif name == "wheels" and not (missing := missing_packages(read_pins())):
            entry = {"status": "skipped", "reason": "every listed package is installed"}
        elif name == "wheels" and not args.wheels.is_dir():
            entry = {"status": "failed", "reason": f"no wheel folder {args.wheels}", "missing": missing}
        else:
            with log.open("a") as sink:
                sink.write(f"\n==> {name} (limit {min(stage['limit'], left):.0f} s)\n")
            entry = run_command(stage_command(stage, args, work, out), min(stage["limit"], left), log, env)
            if name == "wheels":
                check = [sys.executable, "-m", "pip", "check"]
                done = subprocess.run(check, capture_output=True, text=True, env=env, timeout=60)
                entry["pip_check"] = (done.stdout + done.stderr).strip().splitlines()
        entry["result"] = stage_result(stage, work, out)
        if name == "environment" and not args.cpu_dry_run and not entry["result"].get("cuda_available"):
            entry.update(status="failed", reason="torch sees no CUDA device (--cpu-dry-run runs on a CPU)")
        record["stages"][name] = entry
        record["figures"] = figures(record)
        record["wall_s"] = round(time.perf_counter() - start, 1)
        (out / "gpu_check.json").write_text(json.dumps(record, indent=2) + "\n")  # after each stage
        print(f"[gpu_check] {name}: {entry['status']} ({entry.get('seconds', 0)} s)", flush=True)
        if entry["status"] == "failed" and name == "environment":
            break  # nothing else can run
    _trim(log)
    record["ok"] = all(s["status"] in ("ok", "skipped") for s in record["stages"].values())
    (out / "gpu_check.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(record["figures"], indent=1))
    print(f"[gpu_check] {'ok' if record['ok'] else 'FAILED'}; record and logs in {out}")
    return 0 if record["ok"] else 1


def _trim(log: Path) -> None:
    if log.stat().st_size > LOG_LIMIT:
        with log.open("rb") as source:
            source.seek(-LOG_LIMIT, os.SEEK_END)
            tail = source.read()
        log.write_bytes(b"[gpu_check] log cut to its last 12 MiB\n" + tail)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["environment"]:
        Path(argv[1]).write_text(json.dumps(describe_environment(), indent=2))
        return 0
    if argv[:1] == ["notebooks"]:
        parser = argparse.ArgumentParser(prog="gpu_check.py notebooks")
        parser.add_argument("workdir", type=Path)
        parser.add_argument("out_json", type=Path)
        parser.add_argument("--device", default="cuda")
        sub = parser.parse_args(argv[1:])
        return run_notebooks(sub.workdir, sub.out_json, sub.device)
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="the same stages on the CPU with toy sizes")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: $OUT, else a temporary one)")
    parser.add_argument("--budget", type=float, default=None, help="seconds (default 450; dry run 1500)")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="folder of the carried wheels")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.budget is None:
        args.budget = DRY_RUN_BUDGET_S if args.cpu_dry_run else GPU_BUDGET_S
    if args.out is None:
        args.out = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    return run_all(args)


if __name__ == "__main__":
    raise SystemExit(main())
