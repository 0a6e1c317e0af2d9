#!/usr/bin/env bash
# Every GPU check in one script, for a GPU machine lent for a few minutes:
#
#   bench/gpu_check.sh OUT              # on the GPU machine
#   bench/gpu_check.sh OUT --dry-run    # anywhere (CPU): the same steps, planned, nothing trained
#
# Leaves in OUT: versions.txt, plan.txt (each arm's predicted memory and how many fit), pytest_gpu.txt
# (pytest -m gpu), memory_model.json (the memory model against CUDA's max_memory_allocated, each
# arm in its own process), the GPU study's log, tables, report and profile (config/studies/gpu.yaml),
# and summary.txt (each step's exit code and wall time). A step that fails is recorded and the
# next one runs: one lent machine, every answer it can give.
#
# Installs: if wheels/ exists in the tree (pip download --dest wheels ... where there is internet),
# from there only; else from the index pip is configured with. Set RANKBITS_SKIP_INSTALL=1 when the
# environment is ready.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bench/gpu_check.sh OUT [--dry-run]}"
dry="${2:-}"
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"

step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, record its exit code and seconds
    local name=$1; shift
    local t0=$SECONDS
    "$@" > "$out/$name.log" 2>&1
    local rc=$?
    printf '%-16s rc=%-3s %5ss  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$*" | tee -a "$summary"
    return 0
}

if [ -z "${RANKBITS_SKIP_INSTALL:-}" ] && [ -z "$dry" ]; then
    if [ -d wheels ]; then
        step install python -m pip install --no-index --find-links wheels -e ".[test]"
    else
        step install python -m pip install -e ".[test]"
    fi
fi

gpu_mib=81559  # the dry run plans for an H100 80GB
if [ -z "$dry" ]; then
    gpu_mib=$(python -c "import torch; print(torch.cuda.get_device_properties(0).total_memory // 2**20)")
fi
step versions python -c "import torch, transformers, peft, bitsandbytes, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0)); print('transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__)"
cp "$out/versions.log" "$out/versions.txt"
step plan python -m rankbits.cli plan --configfile config/studies/gpu.yaml --gpu-mib "$gpu_mib"
cp "$out/plan.log" "$out/plan.txt"

if [ -n "$dry" ]; then
    step study_dry snakemake -n --configfile config/studies/gpu.yaml --config device=cuda "gpu_mib=$gpu_mib"
    step memory_make python bench/memory_model.py --make "$out/memory_inputs"
    echo "dry run: nothing trained" | tee -a "$summary"
    exit 0
fi

step pytest_gpu python -m pytest -m gpu -q -p no:cacheprovider
cp "$out/pytest_gpu.log" "$out/pytest_gpu.txt"
step memory_make python bench/memory_model.py --make "$out/memory_inputs"
step memory_run python bench/memory_model.py --run "$out/memory_inputs" --out "$out/memory_model.json"
step study snakemake --cores "$(nproc)" --configfile config/studies/gpu.yaml --config device=cuda
step report snakemake --configfile config/studies/gpu.yaml --config device=cuda --report "$out/report.html"
step profile python bench/study_profile.py results/gpu
step recommend python -m rankbits.cli recommend --results results/gpu --memory-mb 100000
mkdir -p "$out/tables" && cp -r results/gpu/tables/. "$out/tables/" 2>/dev/null
cat "$summary"
