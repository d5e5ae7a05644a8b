#!/usr/bin/env bash
# One prepared session on a machine with a CUDA GPU, sized for a short lease (about 9 minutes):
#   1. bench/gpu.py: every unit at `full` (steps x FRACTION), float32 against bf16, alone on the GPU;
#   2. bench/gpu.py again for the units worth compiling, bf16 + torch.compile;
#   3. the GPU-marked tests (pytest -m gpu) and every chapter executed at `full`, in parallel,
#      for the time that is left (bench/execute_chapters.py).
# Results land in OUT (default bench/gpu-out/): gpu.json, gpu.md, compile/gpu.json, compile/gpu.md,
# tests.log, chapters.json, chapters.md; the log on stdout says what ran when.
#
# Usage: OUT=dir FRACTION=0.05 bash bench/gpu_session.sh [bench s] [compile s] [tests and chapters s]
# On a machine without the book's Python packages, wheels in .whl/ are installed first: see
# "GPU figures" in bench/results.md for how they are fetched.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/gpu-out}
FRACTION=${FRACTION:-0.05}
BENCH_S=${1:-200}
COMPILE_S=${2:-120}
LAST_S=${3:-200}
mkdir -p "$OUT/compile"
export PYTHONUNBUFFERED=1 GENCORE_PROGRESS=0
started=$(date +%s)
stamp() { echo "[$(( $(date +%s) - started )) s] $*"; }

# 0. packages: the GPU image has torch; nbclient, MyST-NB and ipykernel come as wheels
if [ -d .whl ] && ! python3 -c "import myst_nb, nbclient, ipykernel" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD:${PYTHONPATH:-} PATH=/tmp/site/bin:$PATH
else
    export PYTHONPATH=$PWD:${PYTHONPATH:-}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
stamp "packages ready ($(nproc) cores)"

# 1. float32 against bf16, alone on the GPU so that the timings mean something
stamp "bench/gpu.py fp32,bf16 (limit ${BENCH_S} s)"
timeout "$BENCH_S" python3 bench/gpu.py --out "$OUT" --modes fp32,bf16 --fraction "$FRACTION" \
    --units lm,diffusion,autoregressive,vae,gan,rlvr,dpo 2>&1 | grep -v "^\s*$" | tail -n 40
# 2. compiled, where the networks are fixed-shape and the runs long enough to repay compiling
stamp "bench/gpu.py bf16+compile (limit ${COMPILE_S} s)"
timeout "$COMPILE_S" python3 bench/gpu.py --out "$OUT/compile" --modes bf16+compile --fraction "$FRACTION" \
    --units lm,diffusion,autoregressive 2>&1 | grep -v "^\s*$" | tail -n 40

# 3. the tests judge pass or fail, not time, so they share the GPU with the chapters
stamp "pytest -m gpu and every chapter at full (limit ${LAST_S} s)"
( timeout "$LAST_S" python3 -m pytest -m gpu -p no:cacheprovider -q -o addopts="-ra" tests/test_precision.py \
    > "$OUT/tests.log" 2>&1; echo "exit $?" >> "$OUT/tests.log" ) &
tests=$!
GENCORE_SCALE=full OMP_NUM_THREADS=2 timeout "$((LAST_S + 15))" python3 bench/execute_chapters.py --out "$OUT" \
    --deadline "$LAST_S" --jobs 8 2>&1 | grep -v "^\s*$" | tail -n 20
wait "$tests"
tail -n 25 "$OUT/tests.log"
cat "$OUT/chapters.md" 2>/dev/null
stamp "session done"
