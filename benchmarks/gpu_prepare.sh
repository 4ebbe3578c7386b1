#!/usr/bin/env bash
# Run on a machine with registry access before benchmarks/gpu_run.sh: the GPU machine has torch and CUDA
# but no PyAV and no network. Puts the wheels it lacks in .whl/ and a digits-motion set in .gpu_data/
# (both git-ignored; about 51 MB together, under the 64 MiB a device run carries).
#   bash benchmarks/gpu_prepare.sh      then run benchmarks/gpu_run.sh there, carrying .whl and .gpu_data
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
mkdir -p .whl
for pkg in av einops safetensors pyyaml tqdm; do
  ver=$("$PY" -m pip show "$pkg" | awk '/^Version/{print $2}')
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$pkg==$ver"
done
# 2,000 clips (~15 MB), as vidfm demo; data_path --tiny-repeat repeats its rows where a batch needs more.
[ -f .gpu_data/digits/manifest.csv ] || PYTHONPATH=src "$PY" -m vidfm.cli data digits .gpu_data/digits --n 2000 --workers 2
du -sh .whl .gpu_data
