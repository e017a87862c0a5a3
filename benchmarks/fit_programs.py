"""Cold cost of the fit's programs: screening the trials, compiling the value-and-grad
programs (first objective call) and one objective evaluation afterwards.

    BONECOHORT_CACHE=off .venv/bin/python benchmarks/fit_programs.py [TARGETS] [PATIENTS]

TARGETS defaults to the shipped public targets, PATIENTS to calibrate's 128 per trial;
float32, the default free constants, from the hand-set constants (as `calibrate`). Prints
one line per phase and the number of compiled value-and-grad programs.
"""

import sys
import time

import jax.numpy as jnp

from bonecohort.data import resource
from bonecohort.fit.calibrate import Objective
from bonecohort.fit.parameters import DEFAULT_FREE
from bonecohort.fit.targets import load_targets
from bonecohort.model.params import hand_set_model


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else resource("targets", "public.toml")
    patients = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    ts = load_targets(path).with_patients(patients)
    t0 = time.perf_counter()
    objective = Objective(ts, hand_set_model(), DEFAULT_FREE, jnp.float32, 1.0)
    t1 = time.perf_counter()
    loss, _, _ = objective(objective.theta0)
    t2 = time.perf_counter()
    for _ in range(3):
        objective(objective.theta0)
    t3 = time.perf_counter()
    functions = {p.vg for p in objective.parts}
    print(f"trials fitted: {len(objective.parts)}; loss at the start {loss:.4f}")
    print(f"screening (Objective built): {t1 - t0:.1f} s")
    print(f"first evaluation (compiles): {t2 - t1:.1f} s")
    print(f"one evaluation afterwards:   {(t3 - t2) / 3:.2f} s")
    print(f"value-and-grad functions: {len(functions)}, compiled programs: "
          f"{sum(f._cache_size() for f in functions)}")


if __name__ == "__main__":
    main()
