#!/usr/bin/env bash
# Every GPU figure of the data-path and CUDA work in one command, a few minutes on one H200 (16 cores):
#   bash benchmarks/gpu_run.sh [OUT [PART ...]]   (after benchmarks/gpu_prepare.sh; OUT defaults to $OUT or /tmp)
# PARTs: decode stages smoke compile torchrun data_path (default: all). A device call is limited to 10 minutes:
# run "OUT decode stages smoke", "OUT compile torchrun" and "OUT data_path" as separate calls if needed.
# 1. GPU decode: what PyAV's NVDEC paths do on this machine (gpu_decode.py)
# 2. per-stage loader costs and worker scaling against a plain PyAV pool (loader_stages.py)
# 3. every recipe's :tiny variant on CUDA: bf16, teacher cache on/off, resident store on/off; compiled rows apart
# 4. DDP and FSDP2 under torchrun, 2 processes on the one GPU (NCCL, then gloo on CUDA tensors)
# 5. data_path.py: files / shards / store / resident store vs the ceiling and the step's demand, B/16 at
#    224², and videomae:tiny end to end from the resident store at batch 64 / 256 / 1024
# Each part writes OUT/<part>.txt; a failing part does not stop the next.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp}/vidfm-gpu}
shift || true
PARTS=${*:-decode stages smoke compile torchrun data_path}
want() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-/tmp/vidfm-gpu-work}  # runs, stores, caches: large, kept out of OUT (which holds the tables)
mkdir -p "$WORK"
export PYTHONPATH=$PWD/src
PY=${PYTHON:-python}
"$PY" -c "import av, einops, safetensors, yaml, tqdm" 2>/dev/null ||
  "$PY" -m pip install -q --no-index --find-links .whl av einops safetensors pyyaml tqdm
DIGITS=$PWD/.gpu_data/digits  # carried; generated here instead when scikit-learn is installed
if [ ! -f "$DIGITS/manifest.csv" ]; then
  "$PY" -m vidfm.cli data digits "$WORK/digits" --n 2000 --workers 8 && DIGITS=$WORK/digits
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
cd benchmarks
run() { local name=$1; shift; echo "== $name: $*"; timeout 420 "$@" 2>&1 | tee "$OUT/$name.txt" | tail -40; }
want decode && run gpu_decode "$PY" gpu_decode.py --clips 32 --short-side 224
want stages && run loader_stages "$PY" loader_stages.py --clips 64 --short-side 224 --batch 32 --workers 1 4 8 14
mkdir -p "$WORK/smoke" && rm -rf "$WORK/smoke/digits" && cp -r "$DIGITS" "$WORK/smoke/digits"
want smoke && run gpu_smoke "$PY" gpu_smoke.py --out "$WORK/smoke" --steps 20 --batch 16 --workers 4 \
  --compile-rows-apart
want compile && run gpu_smoke_compile "$PY" gpu_smoke.py --out "$WORK/smoke" --steps 20 --batch 16 --workers 4 \
  --compile-only
# NCCL refuses two ranks on one GPU ("Duplicate GPU detected"): its rows show whether this NCCL does; the
# gloo rows run the same DDP / FSDP2 code on CUDA tensors (VIDFM_DIST_BACKEND=gloo).
for backend in $(want torchrun && echo nccl gloo); do
  for par in ddp fsdp; do
    VIDFM_DIST_BACKEND=$backend run "torchrun_${backend}_$par" "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 \
      -m vidfm.cli pretrain --recipe videomae:tiny --out "$WORK/torchrun_${backend}_$par" \
      --set "data.manifest=$WORK/smoke/digits/manifest.csv" --set train.parallel=$par --set train.steps=20 \
      --set train.log_every=5 --set train.workers=2 --set train.progress=false --set train.resume=false
  done
done
want data_path && run data_path "$PY" data_path.py --size 224 --short-side 224 --clips 64 --workers 4 8 14 --model B/16 \
  --batch 32 --steps 40 --tiny-manifest "$WORK/smoke/digits/manifest.csv" --tiny-batch 64 256 1024 \
  --tiny-steps 16 --tiny-repeat 2
echo "figures in $OUT"
