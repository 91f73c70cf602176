#!/usr/bin/env bash
# The GPU check in one bounded run (see benchmarks/gpu_check.py and docs/gpu.md):
#   benchmarks/gpu_check.sh [--cpu-dry-run] [--out DIR] [--budget SECONDS] [--wheels DIR]
# On a GPU machine: installs the carried wheels (.whl/), runs the gpu tests, benchmarks the Qwen3-0.6B
# architecture, runs the paper-smoke notebooks 01-04 with the manager on CUDA, then Qwen3-4B if time remains.
# --cpu-dry-run: the same stages on the CPU with toy sizes. Writes gpu_check.json, gpu_check.log and
# gpu_tests.xml under --out (default $OUT, else a new temporary folder). Python: $PYTHON, else .venv's, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [[ -z $PY ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec "$PY" benchmarks/gpu_check.py "$@"
