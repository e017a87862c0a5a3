"""Work-precision sweep: every solver across its accuracy settings on each workload, so that
solvers are compared at the error they reach, not at one tolerance.

Workloads: ``natural-wp``, the natural history of one site (``bench_peers.NaturalHistory``:
untreated women from peak bone mass for 50 years, femoral-neck BV at each year end), and
``full-wp``, the full model (``bench_full.FullModel``: both sites of the default study's
women through the natural history and both arms, estradiol switched on and off, BMD at each
year end; diffrax gets the switches as jump times). For each configuration, on the same N
patients (vmapped) and dtype:

* this engine: each Rosenbrock method (``solve.rosenbrock.METHODS``) across fixed steps per
  year, and RODAS3/RODAS4 with error-controlled steps (solve/adaptive.py) across rtol;
* diffrax Tsit5 (explicit), Kvaerno3 and Kvaerno5 (ESDIRK) with a PID controller across
  rtol 1e-2 ... 1e-8 in float64 and 1e-2 ... 1e-5 in float32 (atol = rtol / 1000; BV and the
  normalized cells are of order 1); a configuration slower than ``budget_s``, or one that
  fails (step limit), ends its solver's sweep (tighter tolerances only cost more);
* scipy ``solve_ivp`` LSODA and BDF one patient at a time (float64, exact JAX Jacobian; the
  one-site workload only).

Error: max relative BV (BMD) error against scipy Radau (rtol 1e-10) on the first patients
(``bench_peers.REF_PATIENTS``). ``headlines`` gives, for an error bound (1e-3, 1e-5), the
fastest configuration of this engine and of the peers within it, and their ratio;
``plot`` draws the diagram (patient-years per second against error, log-log) as SVG.
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np

from bonecohort.shell.bench_full import FullModel
from bonecohort.shell.bench_peers import REF_PATIENTS, NaturalHistory, _max_rel
from bonecohort.shell.bench_rows import Row, _memory, _timed
from bonecohort.shell.svg import figure

ENGINE = {"ros2": (2, 4, 12, 24, 48), "rodas3": (1, 2, 4, 12, 24, 48),
          "rodas4": (1, 2, 4, 12, 24)}  # steps per year
CONTROLLED = ("rodas3", "rodas4")  # error-controlled steps across OUR_RTOLS
OUR_RTOLS = (1e-2, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6)
DIFFRAX = ("Tsit5", "Kvaerno3", "Kvaerno5")
RTOLS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
FLOAT32_TIGHTEST = 1e-5  # float32 resolves ~1e-7: tighter tolerances stall the controller
# step limits: an explicit method needs ~60,000 steps over 50 years (rates ~8 /day); an
# implicit one that needs more than 5,000 (a step every 4 days on average) has stalled near
# float32's resolution (measured: Kvaerno3 float32 on the full model ran past 10 minutes at
# 20,000), and a vmapped batch then runs at the pace of that one patient
MAX_STEPS = {"Tsit5": 200_000, "Kvaerno3": 5_000, "Kvaerno5": 5_000}
SCIPY = ("LSODA", "BDF")
BOUNDS = (1e-3, 1e-5)
WORKLOADS = ("natural-wp", "full-wp")


def _row(work, solver, dtype, n, wall, error, settings) -> Row:
    return Row(work.name, solver, dtype, n, wall, n * work.years / wall, error,
               settings=settings, **_memory())


def engine_rows(work, n: int, dtypes, ref, log):
    """Rows of this engine's configurations, one at a time (a generator)."""
    ids = jnp.arange(n, dtype=jnp.uint32)
    for solver, steps in ENGINE.items():
        for spy in steps:
            for dtype in dtypes:
                wall, bv = _timed(work.ours(dtype, spy, solver), ids)
                yield _row(work, f"bonecohort {solver}", dtype, n, wall, _max_rel(bv, ref),
                           {"steps_per_year": spy})
        log(f"work-precision: {work.name} bonecohort {solver} done")
    for solver in CONTROLLED:
        for dtype in dtypes:
            for rtol in OUR_RTOLS:
                if dtype == "float32" and rtol < FLOAT32_TIGHTEST:
                    break
                wall, bv = _timed(work.ours(dtype, solver=solver, rtol=rtol), ids)
                error = _max_rel(bv, ref) if np.isfinite(np.asarray(bv)).all() else float("nan")
                yield _row(work, f"bonecohort {solver} controlled", dtype, n, wall, error,
                           {"rtol": rtol})
        log(f"work-precision: {work.name} bonecohort {solver} controlled done")
    grid = getattr(work, "grid", None)
    if grid is not None:  # fixed steps as studies ran them: coarser before entry than after
        for dtype in dtypes:
            wall, bv = _timed(work.ours(dtype, 12, "rodas3",
                                        prefix_steps_per_year=grid.prefix_steps_per_year), ids)
            yield _row(work, "bonecohort rodas3 (fixed, as studies ran before)", dtype, n, wall,
                       _max_rel(bv, ref), {"steps_per_year": 12,
                                           "prefix_steps_per_year": grid.prefix_steps_per_year})


def diffrax_rows(work, n: int, dtypes, ref, log, budget_s):
    """Rows of diffrax's configurations, one at a time (a generator)."""
    ids = jnp.arange(n, dtype=jnp.uint32)
    for name in DIFFRAX:
        for dtype in dtypes:
            for rtol in RTOLS:
                if dtype == "float32" and rtol < FLOAT32_TIGHTEST:
                    break
                fn = work.diffrax(name, rtol, rtol * 1e-3, MAX_STEPS[name], dtype)
                wall, bv = _timed(fn, ids)
                # a patient stopped by the step limit has NaN: the configuration failed
                error = _max_rel(bv, ref) if np.isfinite(np.asarray(bv)).all() else float("nan")
                yield _row(work, f"diffrax {name}", dtype, n, wall, error,
                           {"rtol": rtol, "atol": rtol * 1e-3})
                if wall > budget_s or not error < float("inf"):
                    break
            log(f"work-precision: {work.name} diffrax {name} {dtype} done")


def scipy_rows(work: NaturalHistory, n: int, ref, log, budget_s):
    """Rows of scipy's configurations, one at a time (a generator)."""
    work.scipy_one(0, "LSODA", 1e-3, 1e-6)  # compile the right-hand side first
    for method in SCIPY:
        for rtol in RTOLS[1:]:
            t0 = time.perf_counter()
            bv = [work.scipy_one(i, method, rtol, rtol * 1e-3) for i in range(n)]
            wall = time.perf_counter() - t0
            yield _row(work, f"scipy {method} (one patient at a time)", "float64", n, wall,
                       _max_rel(bv, ref), {"rtol": rtol, "atol": rtol * 1e-3})
            if wall > budget_s:
                break
        log(f"work-precision: scipy {method} done")


def sweep(study, n: int, n_scipy: int, dtypes, log, budget_s: float = 60.0,
          workloads=WORKLOADS, on_row=lambda row: None) -> list[Row]:
    """All configurations of each workload on ``n`` patients (scipy on ``n_scipy``);
    ``on_row`` sees each row as soon as it is measured (a long sweep keeps what it did)."""
    rows = []
    for name in workloads:
        work = (NaturalHistory if name == "natural-wp" else FullModel)(study,
                                                                       max(n, REF_PATIENTS))
        log(f"work-precision: {name} Radau reference")
        ref = work.reference(min(REF_PATIENTS, n, n_scipy))
        parts = [engine_rows(work, n, dtypes, ref, log),
                 diffrax_rows(work, n, dtypes, ref, log, budget_s)]
        if name == "natural-wp":
            parts.append(scipy_rows(work, n_scipy, ref, log, budget_s))
        for part in parts:
            for row in part:
                rows.append(row)
                on_row(row)
    return rows


def fastest(rows, workload: str, bound: float, ours: bool):
    """The fastest row of this engine (``ours``) or of the peers with error <= ``bound``."""
    within = [r for r in rows if r["workload"] == workload
              and r["solver"].startswith("bonecohort") == ours
              and r["max_rel_error"] is not None and r["max_rel_error"] <= bound]
    return max(within, key=lambda r: r["patient_years_per_s"], default=None)


def headlines(rows) -> list[tuple[str, float, dict | None, dict | None]]:
    """(workload, error bound, fastest engine row, fastest peer row) for each swept workload
    and each of ``BOUNDS``."""
    present = [w for w in WORKLOADS if any(r["workload"] == w for r in rows)]
    return [(w, b, fastest(rows, w, b, True), fastest(rows, w, b, False))
            for w in present for b in BOUNDS]


def describe(row: dict | None) -> str:
    if row is None:
        return "none within the bound"
    settings = ", ".join(f"{k} {v:g}" for k, v in row["settings"].items())
    return (f"{row['solver']} {row['dtype']} ({settings}): "
            f"{row['patient_years_per_s']:,.0f} patient-years/s, error "
            f"{row['max_rel_error']:.1e}")


def plot(rows, workload: str, path):
    """The work-precision diagram of ``workload`` as SVG: one line per solver and dtype."""
    fig, ax = figure(figsize=(9, 6))
    families = {}
    rows = [r for r in rows if r["workload"] == workload]
    for r in rows:
        if r["max_rel_error"] is not None:
            families.setdefault((r["solver"], r["dtype"]), []).append(r)
    for i, ((solver, dtype), fam) in enumerate(sorted(families.items())):
        fam = sorted(fam, key=lambda r: r["max_rel_error"])
        style = "-" if solver.startswith("bonecohort") else "--"
        ax.plot([r["max_rel_error"] for r in fam], [r["patient_years_per_s"] for r in fam],
                style, marker="o" if dtype == "float32" else "s", color=f"C{i % 10}",
                label=f"{solver} {dtype}")
    for bound in BOUNDS:
        ax.axvline(bound, color="0.7", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("max relative BV (BMD) error vs Radau (rtol 1e-10)")
    ax.set_ylabel("patient-years per second")
    title = {"natural-wp": "one-site natural history", "full-wp": "full model, both arms"}
    ax.set_title(f"work-precision, {title[workload]}, N = {rows[0]['n']:,}"
                 if rows else "work-precision")
    ax.legend(fontsize=7, loc="lower left")
    fig.savefig(path, bbox_inches="tight")
    return path
