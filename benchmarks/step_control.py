"""Fixed against error-controlled steps on the default study: seconds for one chunk.

Usage: .venv/bin/python benchmarks/step_control.py [N]
Each configuration compiles on a first chunk, then a second chunk of N women is timed.
"""

import sys
import time

import jax
import jax.numpy as jnp

from bonecohort.cohort import chunk_ids, make_chunk_runner
from bonecohort.config import load_study
from bonecohort.fit.parameters import default_model

N = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
CONFIGS = [dict(rtol=0.0, solver="rodas3"), dict(rtol=1e-4, solver="rodas3"),
           dict(rtol=1e-4, solver="rodas4"), dict(rtol=3e-4, solver="rodas4"),
           dict(rtol=1e-3, solver="rodas4")]

study = load_study("default")
for kw in CONFIGS:
    run = make_chunk_runner(11, study.population, default_model(), study.arms,
                            study.grid._replace(**kw), jnp.float32)
    jax.block_until_ready(run(chunk_ids(0, N, N)))
    t0 = time.perf_counter()
    jax.block_until_ready(run(chunk_ids(N, 2 * N, N)))
    label = "fixed monthly" if kw["rtol"] == 0 else f"controlled rtol {kw['rtol']:g}"
    print(f"{kw['solver']} {label}: {time.perf_counter() - t0:.2f} s for {N} women", flush=True)
