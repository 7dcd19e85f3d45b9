#!/usr/bin/env bash
# One batch of GPU checks, for a machine with CUDA: the `gpu`-marked tests, then the
# GPU benchmarks. Logs go under $OUT (default ./gpu-out). Uses the machine's python3,
# with labcode taken from this checkout (PYTHONPATH), so nothing needs installing.
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"; } >"$OUT/device.txt" 2>&1
gpu_tests=$(grep -l "mark.gpu" tests/test_*.py)
timeout 240 python3 -m pytest -q -m gpu -p no:cacheprovider $gpu_tests 2>&1 | tee "$OUT/pytest_gpu.log" | tail -15
timeout 90 python3 benchmarks/loader.py --device cuda 2>&1 | tee "$OUT/loader.log"
timeout 90 python3 benchmarks/time_to_98.py --device cuda 2>&1 | tee "$OUT/time_to_98.log"
timeout 60 python3 benchmarks/fit_overhead.py --device cuda --quick 2>&1 | tee "$OUT/fit_overhead.log"
echo "gpu_check done"
