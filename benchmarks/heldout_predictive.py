"""90 % posterior predictive intervals of every fitted target, in sample and held out, for a
stored leave-one-trial-out cross-validation (its held-out predictions are read, the folds are
not run again): ``crossval.linear_predictive`` at the shipped fit, on the fit's patients
(128 per trial, float32).

Usage: .venv/bin/python benchmarks/heldout_predictive.py [CROSSVAL_CSV] [OUT_CSV]
(default: benchmarks/validation/crossval.csv -> benchmarks/validation/crossval_predictive.csv)
"""

import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import polars as pl

from bonecohort.fit.calibrate import Objective
from bonecohort.fit.crossval import linear_predictive
from bonecohort.fit.parameters import DEFAULT_FREE, default_model, to_theta
from bonecohort.fit.targets import load_targets
from bonecohort.model.params import hand_set_model
from bonecohort.shell.cli_fit import _persistent_compilation_cache

HERE = Path(__file__).parent / "validation"


def main():
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "crossval.csv"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "crossval_predictive.csv"
    _persistent_compilation_cache()
    t0 = time.perf_counter()
    ts = load_targets("public").with_patients(128)
    objective = Objective(ts, hand_set_model(), DEFAULT_FREE, jnp.float32, 1.0, print)
    cv = pl.read_csv(src)
    index = {t.id: i for i, t in enumerate(ts.targets)}
    held = {}
    for trial, part in cv.group_by("trial", maintain_order=True):
        held[trial[0]] = ([index[i] for i in part["id"]], part["held_out"].to_numpy())
    bounds = linear_predictive(objective, np.asarray(to_theta(default_model(), DEFAULT_FREE)),
                               held)
    rows = [b for b in (bounds[index[i]] for i in cv["id"])]
    out = cv.with_columns(
        *(pl.Series(name, [r[k] for r in rows]) for k, name in
          enumerate(("pi_in_lo", "pi_in_hi", "pi_out_lo", "pi_out_hi"))))
    out = out.with_columns(
        ((pl.col("observed") >= pl.col("pi_in_lo")) & (pl.col("observed") <= pl.col("pi_in_hi")))
        .alias("inside_pi_in_sample"),
        ((pl.col("observed") >= pl.col("pi_out_lo")) & (pl.col("observed") <= pl.col("pi_out_hi")))
        .alias("inside_pi_held_out"))
    out.write_csv(dst)
    n = out.height
    print(f"{time.perf_counter() - t0:.0f} s; inside their 90 % predictive interval: in sample "
          f"{int(out['inside_pi_in_sample'].sum())} of {n}, held out "
          f"{int(out['inside_pi_held_out'].sum())} of {n}; written {dst}")


if __name__ == "__main__":
    main()
