#!/usr/bin/env bash
# One short GPU check (issue 6): device information, then the simulation throughput of the
# default study's compiled chunk at several cohort sizes, float32.
#
# On the lent GPU machine its image already holds jax with CUDA (no polars there, and none is
# needed: benchmarks/throughput.py imports only the simulation core), so run from the
# repository root:   bash benchmarks/gpu_check.sh
# Here, on a CPU, for a dry run:   PYTHON=.venv/bin/python SIZES="2000" CHUNK=1000 bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SIZES=${SIZES:-"100000 1000000 10000000"}
CHUNK=${CHUNK:-100000}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null \
    || echo "no nvidia-smi (CPU run)"
"$PYTHON" -c "import jax, jaxlib; print('jax', jax.__version__, 'devices', jax.devices())"
for n in $SIZES; do
    chunk=$(( n < CHUNK ? n : CHUNK ))
    timeout 240 "$PYTHON" benchmarks/throughput.py "$n" "$chunk" float32 \
        || echo "N=$n did not finish within 240 s"
done
