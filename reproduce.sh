#!/usr/bin/env bash
# Reproduce the Fine-Mem experiments, check that they reproduce, or run the tests.
#
#   ./reproduce.sh [--profile P] [--only N] [--reuse M]
#                       bootstrap .venv from the lock, execute the notebooks with profile P (default: default)
#   ./reproduce.sh check [--profile P] [--keep]
#                       rerun profile P into a temporary folder and compare every table with results/<P>/tables:
#                       identical, within intervals (the committed 95 % intervals) or different (exit 1)
#   ./reproduce.sh test [pytest args]    bootstrap .venv, run the tests offline
#   ./reproduce.sh lock [uv args]        refresh requirements/cpu.lock from pyproject.toml (needs PyPI)
#
#   --profile P   one of the profiles in configs/ (PROFILES below); results go to results/ for the
#                 default profile, results/<P>/ for every other one
#   --only N      one notebook: 1, 01, 2, 02, ...
#   --reuse M     finished SFT/GRPO runs: auto (reuse only identical ones: config, seed, start weights,
#                 data; the default), never (retrain), always (reuse whatever is there)
#   --keep        check: keep the temporary folder
#
# Environment: PYTHON (interpreter used to create .venv, default python3),
#              TORCH_SPEC (default torch==2.13.0: the CPU wheel here, a CUDA build on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
LOCK=requirements/cpu.lock

# a profile is configs/<name>.yaml; configs/study_*.yaml are study plans, not profiles
profiles() { for f in configs/*.yaml; do basename "$f" .yaml; done | grep -v '^study_' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'; }
usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    echo "PROFILES: $(profiles)"
}
die() { echo "reproduce.sh: $*" >&2; echo "run ./reproduce.sh --help for usage" >&2; exit 2; }
need_value() { [[ $# -ge 2 && -n $2 && $2 != --* ]] || die "$1 needs a value"; }

MODE=run
PROFILE=default
ONLY=""
REUSE=auto
KEEP=0
case "${1:-}" in
    test | check | lock | run) MODE=$1; shift ;;
esac
if [[ $MODE == run || $MODE == check ]]; then
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --profile) need_value "$@"; PROFILE=$2; shift 2 ;;
            --only) need_value "$@"; ONLY=$2; shift 2 ;;
            --reuse) need_value "$@"; REUSE=$2; shift 2 ;;
            --keep) KEEP=1; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown option: $1" ;;
        esac
    done
    [[ -f configs/$PROFILE.yaml && $PROFILE != study_* ]] || die "unknown profile: $PROFILE (profiles: $(profiles))"
    case "$REUSE" in auto | never | always) ;; *) die "--reuse must be auto, never or always, not $REUSE" ;; esac
    if [[ -n $ONLY ]]; then
        [[ $ONLY =~ ^[0-9]{1,2}$ ]] || die "--only takes a notebook number (1, 01, 2, ...), not $ONLY"
        ONLY=$(printf '%02d' "$((10#$ONLY))")
    fi
    [[ $MODE == check && -n $ONLY ]] && die "check reruns the whole profile (no --only)"
elif [[ $MODE == test && ${1:-} =~ ^(-h|--help)$ ]]; then
    usage
    exit 0
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
    stamp="$(cat pyproject.toml "$LOCK") $torch_spec"
    stamp=$(printf '%s' "$stamp" | sha256sum | cut -d' ' -f1)
    if [[ ! -f $stamp_file || $(cat "$stamp_file") != "$stamp" ]]; then
        echo "==> installing $torch_spec and the locked packages ($LOCK) into .venv"
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet "$torch_spec"
        .venv/bin/python -m pip install --quiet --no-deps -r "$LOCK"
        .venv/bin/python -m pip install --quiet --no-deps -e .
        echo "$stamp" > "$stamp_file"
    fi
}

lock() {
    # Everything but torch and its CUDA-only wheels, which TORCH_SPEC installs (CPU here, CUDA on a GPU machine).
    .venv/bin/python -m pip install --quiet "uv==$(sed -n 's/^uv==//p' "$LOCK")" 2>/dev/null || .venv/bin/python -m pip install --quiet uv
    local tmp
    tmp=$(mktemp)
    .venv/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11.7 \
        --python-platform x86_64-unknown-linux-gnu --no-annotate --no-header -o "$tmp" "$@" >/dev/null
    {
        echo "# Exact versions of the CPU set-up that ./reproduce.sh installs (pip install --no-deps -r $LOCK)."
        echo "# Generated from pyproject.toml (dependencies + dev extra) by: ./reproduce.sh lock"
        echo "# torch is not here: TORCH_SPEC (torch==2.13.0) installs it, with CUDA wheels on a GPU machine."
        grep -v -E '^(torch|triton|nvidia-|cuda-)' "$tmp"
    } > "$LOCK"
    rm -f "$tmp"
    write_environment_yml
    echo "==> wrote $LOCK ($(grep -c '==' "$LOCK") packages) and environment.yml"
}

# environment.yml: the same exact versions for conda users (pip section = torch + the lock).
write_environment_yml() {
    {
        echo "# Conda environment with the exact versions of $LOCK (written by ./reproduce.sh lock; do not edit)."
        echo "#   conda env create -f environment.yml && conda activate finemem && pip install --no-deps -e ."
        echo "name: finemem"
        echo "channels:"
        echo "  - conda-forge"
        echo "dependencies:"
        echo "  - python=3.11.7"
        echo "  - pip"
        echo "  - pip:"
        echo "      - ${TORCH_SPEC:-torch==2.13.0}"
        grep -v '^#' "$LOCK" | grep '==' | sed 's/^/      - /'
    } > environment.yml
}

run_tests() {
    export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
    exec .venv/bin/python -m pytest "$@"
}

# Fixed threads for torch's CPU kernels (the profile's runtime.threads): part of what makes reruns identical.
runtime_env() {
    export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
    local threads
    threads=$(.venv/bin/python -c "from finemem_lib.infra.config import load_profile; print((load_profile('$PROFILE').get('runtime') or {}).get('threads') or '')")
    if [[ -n $threads ]]; then
        export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
    fi
}

# run_notebooks RESULTS_DIR DATA_DIR: every notebook (or --only) into RESULTS_DIR/notebooks; the executed copy
# replaces that folder's copy only when the notebook succeeds (a failed one goes to RESULTS_DIR/failed/).
run_notebooks() {
    local results_dir=$1 data_dir=$2
    local selected=()
    for nb in notebooks/[0-9][0-9]_*.ipynb; do
        [[ -e $nb ]] || continue
        local name
        name=$(basename "$nb")
        [[ -z $ONLY || ${name%%_*} == "$ONLY" ]] && selected+=("$nb")
    done
    if [[ ${#selected[@]} == 0 ]]; then
        echo "no notebook matched${ONLY:+ --only $ONLY} (notebooks: $(cd notebooks && ls [0-9][0-9]_*.ipynb | tr '\n' ' '))" >&2
        exit 1
    fi
    local numbers=()
    for nb in "${selected[@]}"; do numbers+=("$(basename "$nb" | cut -c1-2)"); done
    .venv/bin/python -m finemem_lib.repro.preflight --profile "$PROFILE" --notebooks "${numbers[@]}" || exit 1
    local out_dir=$results_dir/notebooks failed_dir=$results_dir/failed
    mkdir -p "$out_dir"
    local params=(-p profile "$PROFILE")
    [[ $results_dir != "$PROFILE_RESULTS" ]] && params+=(-p results_dir "$results_dir" -p data_dir "$data_dir")
    for nb in "${selected[@]}"; do
        local name extra=()
        name=$(basename "$nb")
        grep -q '^reuse = ' "${nb%.ipynb}.py" 2>/dev/null && extra=(-p reuse "$REUSE")
        echo "==> $name (profile $PROFILE)"
        local partial=$out_dir/.running-$name  # renamed into place only if the notebook succeeds
        if .venv/bin/python -m finemem_lib.repro.notebook_run "$nb" "$partial" --cwd "$ROOT" "${params[@]}" "${extra[@]}"; then
            mv "$partial" "$out_dir/$name"
        else
            mkdir -p "$failed_dir"
            mv "$partial" "$failed_dir/$name" 2>/dev/null || true
            echo "FAILED: $name; the executed notebook is at $failed_dir/$name (${out_dir}/$name is unchanged)" >&2
            exit 1
        fi
    done
    .venv/bin/python -m finemem_lib.repro.results_index "$results_dir" >/dev/null
    echo "==> done; executed notebooks in $out_dir; index of the results in $results_dir/README.md"
}

CHECK_DIR=""
check() {
    CHECK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/finemem-check-$PROFILE.XXXXXX")
    if [[ $KEEP == 1 ]]; then
        echo "==> check: keeping $CHECK_DIR"
    else
        trap 'rm -rf "$CHECK_DIR"' EXIT
    fi
    echo "==> check: rerunning profile $PROFILE into $CHECK_DIR (fresh data, SFT and GRPO runs)"
    run_notebooks "$CHECK_DIR/results" "$CHECK_DIR/data"
    .venv/bin/python -m finemem_lib.repro.reproduction "$CHECK_DIR/results/tables" "$PROFILE_RESULTS/tables" \
        --profile "$PROFILE"
}

if [[ $MODE == lock ]]; then  # the lock may be stale (that is why it is refreshed): do not install from it
    [[ -x .venv/bin/python ]] || "${PYTHON:-python3}" -m venv .venv
    lock "$@"
    exit 0
fi
bootstrap
case $MODE in
    test) run_tests "$@" ;;
    run | check)
        runtime_env
        PROFILE_RESULTS=$(.venv/bin/python -c "from finemem_lib.repro.reproduction import profile_results; print(profile_results('$PROFILE'))")
        if [[ $MODE == run ]]; then run_notebooks "$PROFILE_RESULTS" ""; else check; fi
        ;;
esac
