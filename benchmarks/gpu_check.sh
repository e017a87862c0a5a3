#!/usr/bin/env bash
# One short GPU check (issue 6): device information, then `bonecohort bench` on the device:
#   1. N = 1e7, float32, engine only;
#   2. N = 1e5 and 1e6, float32 and float64, with the peer solvers on the same workloads
#      (diffrax vmapped on the GPU; scipy and bone_models one patient at a time on the host).
# Each step writes its JSON into $OUT (the lent machine's result folder) or benchmarks/results.
#
# On the lent GPU machine the image holds jax with CUDA, diffrax, scipy and click (no polars,
# which the benchmark does not need); bone_models travels as a wheel in .whl/ if present.
# Run from the repository root:   bash benchmarks/gpu_check.sh
# Dry run on a CPU:   PYTHON=.venv/bin/python SMALL="2000" LARGE="4000" CHUNK=1000 \
#                     NATURAL_N=200 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SMALL=${SMALL:-"1e5,1e6"}
LARGE=${LARGE:-"1e7"}
CHUNK=${CHUNK:-1000000}
NATURAL_N=${NATURAL_N:-100000}
DIFFRAX_N=${DIFFRAX_N:-4096}
RESULTS=${OUT:-benchmarks/results}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1 && ! "$PYTHON" -c "import bone_models" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
    --format=csv 2>/dev/null || echo "no nvidia-smi (CPU run)"
"$PYTHON" -c "import jax, jaxlib; print('jax', jax.__version__, 'devices', jax.devices())"
timeout 200 "$PYTHON" -m bonecohort bench --sizes "$LARGE" --dtypes float32 --chunk "$CHUNK" \
    --natural-n "$NATURAL_N" --no-peers --out "$RESULTS" \
    || echo "step 1 (N=$LARGE) failed or ran past 200 s"
timeout 300 "$PYTHON" -m bonecohort bench --sizes "$SMALL" --dtypes float32,float64 \
    --chunk "$CHUNK" --natural-n "$NATURAL_N" --diffrax-n "$DIFFRAX_N" --scipy-n 16 --out "$RESULTS" \
    || echo "step 2 (N=$SMALL with peers) failed or ran past 300 s"
