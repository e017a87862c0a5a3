"""Throughput of the default study's compiled chunk (both sites, both arms).

Usage: .venv/bin/python benchmarks/throughput.py [N] [chunk] [dtype]
Counts simulated site-patient-years: (prefix + arms x horizon) years x 2 sites per patient.
"""

import sys
import time

import jax

from bonecohort.cohort import chunk_ids, make_chunk_runner
from bonecohort.config import load_study
from bonecohort.fit.parameters import default_model

n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
dtype = sys.argv[3] if len(sys.argv) > 3 else "float32"
study = load_study("configs/default.toml")
grid = study.grid
run = make_chunk_runner(study.seed, study.population, default_model(), study.arms, grid,
                        {"float32": jax.numpy.float32, "float64": jax.numpy.float64}[dtype])
t0 = time.perf_counter()
jax.block_until_ready(run(chunk_ids(0, chunk, chunk)))
compile_s = time.perf_counter() - t0
t0 = time.perf_counter()
for start in range(0, n, chunk):
    jax.block_until_ready(run(chunk_ids(start, min(start + chunk, n), chunk)))
wall = time.perf_counter() - t0
years = (grid.prefix_years + len(study.arms) * grid.horizon_years) * 2
print(f"device={jax.devices()[0]} dtype={dtype} N={n} chunk={chunk} compile+first={compile_s:.1f}s "
      f"run={wall:.1f}s patients/s={n / wall:,.0f} site-patient-years/s={n * years / wall:,.0f}")
