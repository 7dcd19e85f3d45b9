#!/usr/bin/env bash
# The GPU checks of issues 12 and 16, in two parts that each fit one call of the
# device tool (10 minutes a call, 15 minutes of GPU time a session, start-up included):
#
#   core       the `gpu`-marked tests, the layer table against cuDNN, scratch-backend
#              training speed, time to 98%, the loader and fit's overhead
#   notebooks  every teaching notebook in full mode, timed (benchmarks/notebooks.py
#              executes each in a fresh kernel, so a failing cell is reported too)
#
# On the GPU machine, from a session whose device status says it may start one:
#   here, once:  bash benchmarks/gpu_wheels.sh         (the notebook runner's wheels)
#   run(command="bash benchmarks/gpu_check.sh core", carry=[".whl"], timeout_s=600)
#   run(command="bash benchmarks/gpu_check.sh notebooks", carry=[".whl"], timeout_s=600)
# Each part writes one log, <date>_<gpu>_torch<version>_<part>.log, into $OUT (the
# device tool brings back at most 8 files) or benchmarks/results/. Uses the machine's
# python3 (or $PY) and this checkout's labcode (PYTHONPATH); nothing else is needed.
# Each check has its own time limit; a failing check does not stop the others.
# To rehearse on a CPU: DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh all
set -u
part=${1:-}
case "$part" in core|notebooks|all) ;; *) echo "usage: $0 core|notebooks|all" >&2; exit 2;; esac
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
unset LABCODE_QUICK
if ! $PY -c "import nbclient, ipykernel, ipywidgets" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PWD:/tmp/site"
fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9\n' '-' | sed 's/-*$//')
torch_version=$($PY -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null)
log="$OUT/$(date +%Y-%m-%d)_${gpu:-nogpu}_torch${torch_version:-none}_${part}.log"
q() { [ -n "$QUICK" ] && echo "$1"; }  # an argument given only when rehearsing
if [ -n "$QUICK" ]; then scale=0.25 repeats=2; else scale=8 repeats=15; fi

check() {  # check NAME SECONDS COMMAND...: run with a time limit, append to the log
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "== $name: $*" | tee -a "$log"
  timeout "$limit" "$@" >>"$log" 2>&1
  local status=$?
  echo "== $name: exit $status after $((SECONDS - start)) s" | tee -a "$log"
}

{ nvidia-smi -L; $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"; } >"$log" 2>&1
if [ "$part" != notebooks ]; then  # about 5 minutes on an H200 at most
  gpu_tests=$(grep -l "mark.gpu" tests/test_*.py)
  check pytest_gpu 150 $PY -m pytest -q -m gpu -p no:cacheprovider $gpu_tests
  check layers 60 $PY benchmarks/layers.py --device "$DEVICE" --scale $scale --repeats $repeats
  check scratch_training 90 $PY benchmarks/scratch_training.py --device "$DEVICE" \
    $(q "--steps 2") $(q "--repeats 1") $(q "--batch 8")
  check time_to_98 60 $PY benchmarks/time_to_98.py --device "$DEVICE" $(q --quick)
  check loader 45 $PY benchmarks/loader.py --device "$DEVICE" $(q --quick)
  check fit_overhead 120 $PY benchmarks/fit_overhead.py --device "$DEVICE" --repeats 3 $(q --quick)
fi
if [ "$part" != core ]; then  # nine notebooks; the goal is at most a minute each on a GPU
  check notebook_times 540 $PY benchmarks/notebooks.py $(q --quick) \
    $([ "$DEVICE" = cpu ] && echo "--device cpu")
fi
echo "gpu_check $part done: $log"
