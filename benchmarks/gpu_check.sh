#!/usr/bin/env bash
# One batch of GPU checks, for a machine with CUDA (issues 12 and 16): the `gpu`-marked
# tests, every teaching notebook in full mode under nbval, scratch-backend training of
# the small CNNs (channels-last, bfloat16 autocast) and of the small ViT, the layer
# benchmark against cuDNN, and the data, fit-overhead, time-to-98% and notebook-time
# benchmarks. Logs go to benchmarks/results/ (or $OUT), each named
# <date>_<gpu>_torch<version>_<check>.log. Uses the machine's python3 (or $PY), with
# labcode taken from this checkout (PYTHONPATH), so nothing needs installing.
# Each check has its own time limit; one failing check does not stop the others.
set -u
PY=${PY:-python3}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
unset LABCODE_QUICK
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9\n' '-' | sed 's/-*$//')
torch_version=$($PY -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null)
prefix="$OUT/$(date +%Y-%m-%d)_${gpu:-nogpu}_torch${torch_version:-none}"
{ nvidia-smi -L; $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"; } >"${prefix}_device.log" 2>&1

check() {  # check NAME SECONDS COMMAND...: run with a time limit, log, print the tail
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$@" >"${prefix}_${name}.log" 2>&1
    echo "   exit $? (log ${prefix}_${name}.log)"
    tail -15 "${prefix}_${name}.log"
}

gpu_tests=$(grep -l "mark.gpu" tests/test_*.py)
check pytest_gpu 300 $PY -m pytest -q -m gpu -p no:cacheprovider $gpu_tests
check notebooks_nbval 900 $PY -m pytest -q -p no:cacheprovider --nbval-lax chapters/ch*/0*.ipynb
check notebook_times 900 $PY benchmarks/notebooks.py
check scratch_training 300 $PY benchmarks/scratch_training.py --device cuda
check layers 300 $PY benchmarks/layers.py --device cuda --scale 8
check loader 90 $PY benchmarks/loader.py --device cuda
check time_to_98 120 $PY benchmarks/time_to_98.py --device cuda
check fit_overhead 300 $PY benchmarks/fit_overhead.py --device cuda
echo "gpu_check done"
