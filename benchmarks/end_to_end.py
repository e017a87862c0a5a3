"""End-to-end `bonecohort run` against the `bone_models` package, per patient-year.

1. `bone_models`' Pivonka model on its own load case 1 (PTH injection, 200 days; the
   `core` workload of `bonecohort bench`), solved one patient at a time by scipy RK45 (the
   package's solver) across rtol 1e-3 ... 1e-8 with atol = rtol and atol = 1e-12 (the cell
   concentrations are ~1e-3 pM, so atol = rtol alone leaves them uncontrolled); error: max
   relative error against Radau (rtol 1e-10) on the same right-hand side. Its rate is that of the fastest
   tolerance within 1e-3 (like with like: not a tolerance tighter than the bar).
2. `bonecohort run default -n N` as a user runs it (a fresh process: start-up, compilation
   or the persistent cache, the fracture reference population, every chunk with outcomes,
   parquet parts, summaries and the report), wall time from the manifest.

Patient-years: bone_models 200 days per patient; the study 25 + 2 x 30 = 85 years per
patient (natural history once, each arm's follow-up), and the follow-up alone (60 years).

Usage: .venv/bin/python benchmarks/end_to_end.py [N] [bone_models patients]
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from bone_models.load_cases.pivonka_load_cases import Pivonka_Load_Case_1
from bone_models.models.pivonka_model import Pivonka_Model
from scipy.integrate import solve_ivp

from bonecohort.config import load_study
from bonecohort.shell.bench_peers import CORE_DAYS, _core_y0, _radau_core

jax.config.update("jax_enable_x64", True)
N = int(float(sys.argv[1])) if len(sys.argv) > 1 else 1_000_000
N_PEER = int(sys.argv[2]) if len(sys.argv) > 2 else 16
BOUND = 1e-3
YEAR = 365.25


def bone_models_rows():
    model = Pivonka_Model(Pivonka_Load_Case_1())
    rhs = lambda t, x: model.bone_cell_population_model(x, t)  # noqa: E731
    y0 = _core_y0()
    ref = _radau_core(rhs, y0)
    days = np.arange(1, CORE_DAYS + 1, dtype=np.float64)
    rows = []
    for rtol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8):
        for atol in (rtol, 1e-12):
            t0 = time.perf_counter()
            for _ in range(N_PEER):
                sol = solve_ivp(rhs, (0.0, float(CORE_DAYS)), y0, rtol=rtol, atol=atol,
                                t_eval=days)
            wall = time.perf_counter() - t0
            err = float(np.max(np.abs(sol.y.T / ref - 1.0)))
            rows.append({"rtol": rtol, "atol": atol, "wall_s": wall, "error": err,
                         "patient_years_per_s": N_PEER * CORE_DAYS / YEAR / wall})
            print(f"bone_models RK45 rtol {rtol:g} atol {atol:g}: "
                  f"{rows[-1]['patient_years_per_s']:,.1f} patient-years/s, error {err:.1e}",
                  flush=True)
    return rows


def study_run(out: Path):
    cmd = [sys.executable, "-m", "bonecohort", "run", "default", "-n", str(N), "--out",
           str(out), "--force", "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    manifest = json.loads((out / "manifest.json").read_text())
    return wall, manifest["wall_time_s"]


def main():
    peers = bone_models_rows()
    within = [r for r in peers if r["error"] <= BOUND]
    best = max(within or peers, key=lambda r: r["patient_years_per_s"])
    study = load_study("default")
    g = study.grid
    years = g.prefix_years + len(study.arms) * g.horizon_years
    follow = len(study.arms) * g.horizon_years
    with tempfile.TemporaryDirectory() as tmp:
        wall, manifest_wall = study_run(Path(tmp) / "run")
    rate, rate_follow = N * years / wall, N * follow / wall
    print(f"\nbonecohort run default -n {N:,}: {wall:.1f} s in all (manifest {manifest_wall:.1f}"
          f" s): {rate:,.0f} patient-years/s ({rate_follow:,.0f} counting the follow-up only)")
    print(f"bone_models within {BOUND:g}: rtol {best['rtol']:g} atol {best['atol']:g}, "
          f"{best['patient_years_per_s']:,.1f} patient-years/s, error {best['error']:.1e}")
    print(f"ratio: {rate / best['patient_years_per_s']:,.0f}x "
          f"({rate_follow / best['patient_years_per_s']:,.0f}x on the follow-up only)")


if __name__ == "__main__":
    main()
