"""The wheels a GPU machine needs beyond its CUDA image: the list, and a helper that downloads them.

The CUDA image (Python 3.12, torch with CUDA, transformers, accelerate, pandas, pyarrow, matplotlib, seaborn, ...)
lacks TRL, datasets, bm25s, papermill, the notebook kernel and the OpenAI client. The list of what to carry is
the dependency closure of :data:`ROOTS` evaluated for CPython 3.12 on x86-64 Linux, less what the image already
has (:data:`IMAGE_PACKAGES`), each pinned to its version in ``requirements/cpu.lock``. Dependencies are read
from the metadata of the environment that runs this (``./reproduce.sh`` installs the lock into ``.venv``).

    python benchmarks/gpu_wheels.py check              # is requirements/gpu-wheels.txt up to date?
    python benchmarks/gpu_wheels.py write              # rewrite it
    python benchmarks/gpu_wheels.py fetch [--dest .whl] [--dry-run]
                                                       # download exactly those wheels (needs PyPI)
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "cpu.lock"
WHEEL_LIST = ROOT / "requirements" / "gpu-wheels.txt"
DEFAULT_DEST = ROOT / ".whl"  # git-ignored

# What the GPU path imports that the image lacks: training (TRL, datasets), retrieval (bm25s), the notebooks
# (papermill and the kernel), the OpenAI-compatible reasoner client and the summary metric (ROUGE).
ROOTS = ("trl", "datasets", "bm25s", "papermill", "ipykernel", "openai", "rouge-score")

# The CUDA image's Python packages (its package list as read on a machine running it).
_IMAGE_LIST = """
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
    charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
    cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
    flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
    huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
    jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
    linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
    mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
    numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
    nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
    nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
    onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
    orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
    propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
    pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning
    pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
    sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
    tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers
    toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
    triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
    xxhash yarl zipp"""
IMAGE_PACKAGES = frozenset(_IMAGE_LIST.split())

# The target interpreter: CPython 3.12 on x86-64 Linux (the markers a dependency is evaluated with).
TARGET = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "extra": "",
}
# glibc versions a manylinux wheel may name (pip matches each tag exactly); the image's glibc is newer than all.
MANYLINUX = (5, 12, 17, 24, 27, 28, 31, 34, 35, 39)
# Published as source only: built here into a (pure-Python) wheel with ``pip wheel``.
SOURCE_ONLY = frozenset({"rouge-score"})


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """``name -> version`` of a ``name==version`` requirements file (comments and blank lines skipped)."""
    pins: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not version.strip():
            raise ValueError(f"{path.name}:{number}: expected name==version, got {line!r}")
        pins[normalize(name.strip())] = version.strip()
    return pins


def installed_requirements(name: str) -> list[str]:
    """``Requires-Dist`` of an installed distribution (the one the lock put into this environment)."""
    try:
        return list(metadata.distribution(name).requires or [])
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{name} is not installed here: run ./reproduce.sh test once (it installs the lock)") from None


def closure(
    roots: Iterable[str],
    requirements_of: Callable[[str], list[str]] = installed_requirements,
    present: frozenset[str] = IMAGE_PACKAGES,
) -> list[str]:
    """Sorted names of ``roots`` and everything they need on :data:`TARGET`, less the ``present`` packages."""
    wanted: set[str] = set()
    todo = [normalize(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in wanted or name in present:
            continue
        wanted.add(name)
        for line in requirements_of(name):
            requirement = Requirement(line)
            if requirement.marker is not None and not Marker(str(requirement.marker)).evaluate(TARGET):
                continue
            todo.append(normalize(requirement.name))
    return sorted(wanted)


def pinned(names: Iterable[str], lock: dict[str, str]) -> dict[str, str]:
    """``name -> version`` from the lock; a name the lock lacks is an error naming all of them."""
    missing = sorted(n for n in names if n not in lock)
    if missing:
        raise SystemExit(f"not in {LOCK.name}: {', '.join(missing)} (refresh it with ./reproduce.sh lock)")
    return {n: lock[n] for n in sorted(names)}


def render(pins: dict[str, str]) -> str:
    """The checked-in list's text."""
    header = [
        "# Wheels a GPU machine needs beyond its CUDA image (Python 3.12, x86-64 Linux), pinned from cpu.lock.",
        "# Generated by: python benchmarks/gpu_wheels.py write   (fetch them with: ... fetch; see docs/gpu.md)",
    ]
    return "\n".join([*header, *(f"{n}=={v}" for n, v in pins.items())]) + "\n"


def wanted_pins(lock_path: Path = LOCK) -> dict[str, str]:
    return pinned(closure(ROOTS), read_lock(lock_path))


def download_commands(pins: dict[str, str], dest: Path, python: str = sys.executable) -> list[list[str]]:
    """The pip commands that put exactly ``pins`` into ``dest`` as wheels for CPython 3.12 manylinux x86-64."""
    binary = [f"{n}=={v}" for n, v in pins.items() if n not in SOURCE_ONLY]
    source = [f"{n}=={v}" for n, v in pins.items() if n in SOURCE_ONLY]
    commands = []
    if binary:
        platforms = [a for n in MANYLINUX for a in ("--platform", _manylinux_tag(n))]
        commands.append(
            [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
             "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none", *platforms,
             "--dest", str(dest), *binary]
        )  # fmt: skip
    if source:
        commands.append([python, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dest), *source])
    return commands


def _manylinux_tag(glibc_minor: int) -> str:
    legacy = {5: "manylinux1_x86_64", 12: "manylinux2010_x86_64"}
    return legacy.get(glibc_minor, f"manylinux_2_{glibc_minor}_x86_64")


def wheel_names(dest: Path) -> dict[str, str]:
    """``name -> version`` of the wheels in ``dest``."""
    found = {}
    for wheel in dest.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        found[normalize(name)] = version
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="exit 1 if requirements/gpu-wheels.txt is not what the lock gives")
    sub.add_parser("write", help="rewrite requirements/gpu-wheels.txt")
    fetch = sub.add_parser("fetch", help="download the listed wheels (needs PyPI)")
    fetch.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    fetch.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    args = parser.parse_args(argv)
    if args.command == "check":
        expected = render(wanted_pins())
        if not WHEEL_LIST.is_file() or WHEEL_LIST.read_text() != expected:
            print(f"{WHEEL_LIST.name} is stale: python benchmarks/gpu_wheels.py write", file=sys.stderr)
            return 1
        print(f"{WHEEL_LIST.name}: {len(read_lock(WHEEL_LIST))} wheels, up to date")
        return 0
    if args.command == "write":
        WHEEL_LIST.write_text(render(wanted_pins()))
        print(f"wrote {WHEEL_LIST.relative_to(ROOT)}")
        return 0
    pins = read_lock(WHEEL_LIST)
    commands = download_commands(pins, args.dest)
    if args.dry_run:
        print("\n".join(shlex.join(c) for c in commands))
        return 0
    args.dest.mkdir(parents=True, exist_ok=True)
    for command in commands:
        subprocess.run(command, check=True)
    found = wheel_names(args.dest)
    wrong = sorted(f"{n}=={v}" for n, v in pins.items() if found.get(n) != v)
    extra = sorted(set(found) - set(pins))
    if wrong or extra:
        print(f"{args.dest}: missing {wrong or 'none'}; not listed {extra or 'none'}", file=sys.stderr)
        return 1
    size = sum(w.stat().st_size for w in args.dest.glob("*.whl")) / 2**20
    print(f"{len(found)} wheels in {args.dest} ({size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
