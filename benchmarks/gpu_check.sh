#!/usr/bin/env bash
# One short GPU check (issue 6): device information, then on the device:
#   0. a profile of one chunk of the default study (N = 1e5, outcomes included);
#   1. `bonecohort bench`, N = 1e7, float32, engine only;
#   2. N = 1e5 and 1e6, float32 and float64, with the peer solvers on the same workloads
#      (diffrax vmapped on the GPU; scipy and bone_models one patient at a time on the host).
# Each step writes its JSON into $OUT (the lent machine's result folder) or benchmarks/results.
#
# On the lent GPU machine the image holds jax with CUDA, diffrax, scipy and click (no polars,
# which the benchmark does not need); bone_models travels as a wheel in .whl/ if present.
# Run from the repository root:   bash benchmarks/gpu_check.sh
# Dry run on a CPU:   PYTHON=.venv/bin/python SMALL="2000" LARGE="4000" CHUNK=1000 \
#                     NATURAL_N=200 PROFILE_N=512 bash benchmarks/gpu_check.sh
# At most 90 + 180 + 240 s of steps, so that one call fits a lent machine's 10-minute limit.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SMALL=${SMALL:-"1e5,1e6"}
LARGE=${LARGE:-"1e7"}
CHUNK=${CHUNK:-1000000}
NATURAL_N=${NATURAL_N:-100000}
DIFFRAX_N=${DIFFRAX_N:-4096}
PROFILE_N=${PROFILE_N:-1e5}
RESULTS=${OUT:-benchmarks/results}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1 && ! "$PYTHON" -c "import bone_models" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
    --format=csv 2>/dev/null || echo "no nvidia-smi (CPU run)"
"$PYTHON" -c "import jax, jaxlib; print('jax', jax.__version__, 'devices', jax.devices())"
# step 0: profile one chunk of the default study (outcomes included) before any tuning: the
# kernels that take the device's time (benchmarks/profile_chunk.py; JSON and trace in $RESULTS)
timeout 90 "$PYTHON" benchmarks/profile_chunk.py "$PROFILE_N" "$RESULTS/profile" \
    || echo "step 0 (profile of $PROFILE_N patients) failed or ran past 90 s"
timeout 180 "$PYTHON" -m bonecohort bench --sizes "$LARGE" --dtypes float32 --chunk "$CHUNK" \
    --natural-n "$NATURAL_N" --no-peers --out "$RESULTS" \
    || echo "step 1 (N=$LARGE) failed or ran past 180 s"
timeout 240 "$PYTHON" -m bonecohort bench --sizes "$SMALL" --dtypes float32,float64 \
    --chunk "$CHUNK" --natural-n "$NATURAL_N" --diffrax-n "$DIFFRAX_N" --scipy-n 16 --out "$RESULTS" \
    || echo "step 2 (N=$SMALL with peers) failed or ran past 240 s"
