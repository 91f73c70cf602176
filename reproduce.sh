#!/usr/bin/env bash
# Reproduce the Fine-Mem experiments, or run the tests.
#
#   ./reproduce.sh                       bootstrap .venv, execute every notebook with the default profile
#   ./reproduce.sh --profile smoke       ... with another profile (smoke | default | paper)
#   ./reproduce.sh --only 02             ... only notebook 02
#   ./reproduce.sh test [pytest args]    bootstrap .venv, run the tests offline
#
# Environment: PYTHON (interpreter used to create .venv, default python3),
#              TORCH_SPEC (default torch==2.13.0: the CPU wheel here, a CUDA build on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

MODE=run
PROFILE=default
ONLY=""
if [[ "${1:-}" == "test" ]]; then
    MODE=test
    shift
fi
if [[ $MODE == run ]]; then
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --profile) PROFILE=${2:?--profile needs a value}; shift 2 ;;
            --only) ONLY=${2:?--only needs a notebook number}; shift 2 ;;
            -h|--help) usage; exit 0 ;;
            *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
        esac
    done
    case "$PROFILE" in smoke|default|paper) ;; *) echo "unknown profile: $PROFILE (smoke|default|paper)" >&2; exit 2 ;; esac
fi

bootstrap() {
    local python=${PYTHON:-python3}
    local torch_spec=${TORCH_SPEC:-torch==2.13.0}
    if [[ ! -x .venv/bin/python ]]; then
        echo "==> creating .venv with $python"
        "$python" -m venv .venv
    fi
    local stamp_file=.venv/.finemem-installed
    local stamp
    stamp="$(cat pyproject.toml) $torch_spec"
    stamp=$(printf '%s' "$stamp" | sha256sum | cut -d' ' -f1)
    if [[ ! -f $stamp_file || $(cat "$stamp_file") != "$stamp" ]]; then
        echo "==> installing $torch_spec and the package into .venv"
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet "$torch_spec"
        .venv/bin/python -m pip install --quiet -e ".[dev]"
        echo "$stamp" > "$stamp_file"
    fi
}

run_tests() {
    export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
    exec .venv/bin/python -m pytest "$@"
}

run_notebooks() {
    export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
    local out_dir
    out_dir=$(.venv/bin/python -c "from finemem_lib.config import load_profile; from finemem_lib.paths import profile_paths; print(profile_paths(load_profile('$PROFILE')).results / 'notebooks')")
    mkdir -p "$out_dir"
    local found=0
    for nb in notebooks/[0-9][0-9]_*.ipynb; do
        [[ -e $nb ]] || continue
        local name
        name=$(basename "$nb")
        if [[ -n $ONLY && ${name%%_*} != "$ONLY" ]]; then
            continue
        fi
        found=1
        local out="$out_dir/$name"
        echo "==> $name (profile $PROFILE)"
        if ! .venv/bin/python -m finemem_lib.run_notebook "$nb" "$out" -k python3 -p profile "$PROFILE" --cwd "$ROOT"; then
            echo "FAILED: $name; the executed notebook is at $out" >&2
            exit 1
        fi
    done
    if [[ $found == 0 ]]; then
        echo "no notebook matched${ONLY:+ --only $ONLY}" >&2
        exit 1
    fi
    .venv/bin/python -m finemem_lib.results_index "$(dirname "$out_dir")" >/dev/null
    echo "==> done; executed notebooks in $out_dir; index of the results in $(dirname "$out_dir")/README.md"
}

bootstrap
if [[ $MODE == test ]]; then
    run_tests "$@"
else
    run_notebooks
fi
