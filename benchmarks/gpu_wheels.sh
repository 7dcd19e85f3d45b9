#!/usr/bin/env bash
# Download, on this machine, the Python wheels that the GPU machine lacks for
# benchmarks/gpu_check.sh: the notebook runner (nbclient, nbformat, ipykernel) and
# ipywidgets, with their dependencies, built for that machine's Python 3.12 on x86-64.
# They land in .whl/ (ignored by git); the device call carries .whl and
# gpu_check.sh installs them into /tmp/site there. Packages the GPU machine's image
# already has (listed in the tool library's device/KINDS.md) are left out, so that
# no second copy shadows the installed one.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform any \
  -d .whl nbclient nbformat ipykernel ipywidgets
# already on the GPU machine (its image): keep theirs
for name in attrs packaging psutil pygments python_dateutil typing_extensions six pyyaml \
            numpy matplotlib tqdm jinja2 markupsafe requests urllib3 certifi idna; do
  rm -f .whl/"$name"-[0-9]*.whl
done
ls .whl | sed 's/^/  /'
du -sh .whl
