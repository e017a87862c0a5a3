"""`bonecohort bench`: speed, memory and accuracy of the engine and of peer solvers.

Three workloads, each timed after compilation (the first call is excluded):

* ``cohort``: the default study's compiled chunk, i.e. the full model as a study runs it
  (its own step control: error-controlled RODAS4 unless the study fixes steps_per_year):
  sampling, both sites, the natural history and every arm, fractures and deaths. A
  patient-year is one simulated year of one patient's life along one arm (the natural
  history counts once): ``prefix + arms x horizon`` years per patient.
* ``natural``: one site (femoral neck) of untreated women, from peak bone mass for 50 years
  (the menopause and age-related loss inside), BV read at each year end. Solved by this
  engine (Rosenbrock, fixed monthly steps, vmapped), by diffrax Tsit5 and Kvaerno5 (adaptive,
  vmapped) and by scipy ``solve_ivp`` LSODA one patient at a time, all on the same right-hand
  side (``simulate.site_rhs``). Accuracy: max relative BV error against scipy Radau
  (float64, rtol 1e-10) on the first ``REF_PATIENTS`` patients (fewer if a solver runs fewer).
* ``core``: the Pivonka 2008 cell model alone under the PTH injection of its load case 1
  (1,000 pM/day over days 0-100, read daily to day 200), by this engine (daily steps) and by
  the ``bone_models`` package's Pivonka model one patient at a time (its own right-hand side
  and its own solver settings: RK45, rtol = atol = 1e-8). Accuracy against Radau (rtol 1e-10)
  on each implementation's own right-hand side.

With ``--work-precision N`` two more workloads are swept across every solver's accuracy
settings (bench_wp.py): the one-site natural history and the full model with its switches
(bench_full.py).

Memory: the process's peak resident set (``ru_maxrss``, a high-water mark, so sizes run in
increasing order) and, on accelerators, the device's peak bytes in use.

Peer packages (diffrax, scipy, bone_models) are imported only when their rows run.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax

from bonecohort.cohort import chunk_ids, make_chunk_runner, with_x64
from bonecohort.data import STUDIES_DIR
from bonecohort.fit.parameters import default_model
from bonecohort.io import atomic_write
from bonecohort.shell import bench_wp
from bonecohort.shell.bench_peers import bench_core, bench_natural
from bonecohort.shell.bench_rows import DTYPES, Row, _memory, device_info

DEFAULT_CONFIG = STUDIES_DIR / "default.toml"


# --- workload 1: the full cohort chunk --------------------------------------------------------

def bench_cohort(study, n: int, dtype: str, chunk: int, setup) -> Row:
    run = make_chunk_runner(study.seed, study.population, default_model(), study.arms,
                            study.grid, DTYPES[dtype], setup)
    chunk = min(chunk, n)
    jax.block_until_ready(run(chunk_ids(0, chunk, chunk)))
    t0 = time.perf_counter()
    for start in range(0, n, chunk):
        jax.device_get(run(chunk_ids(start, min(start + chunk, n), chunk)))
    wall = time.perf_counter() - t0
    years = study.grid.prefix_years + len(study.arms) * study.grid.horizon_years
    g = study.grid
    steps = f"controlled rtol {g.rtol:g}" if g.rtol > 0 else f"{g.steps_per_year} steps/yr"
    return Row("cohort", f"bonecohort {g.solver} {steps}", dtype, n, wall, n * years / wall,
               settings={"chunk": chunk, "years_per_patient": years, "sites": 2,
                         "arms": len(study.arms)}, **_memory())


# --- the whole benchmark ----------------------------------------------------------------------

@dataclass
class BenchOptions:
    sizes: tuple = (10_000, 100_000, 1_000_000)
    dtypes: tuple = ("float32", "float64")
    chunk: int = 100_000
    peers: bool = True
    natural_n: int = 10_000
    diffrax_n: int = 64
    scipy_n: int = 16
    config: Path = DEFAULT_CONFIG
    wp_n: int = 0  # patients of the work-precision sweep (bench_wp.py); 0: no sweep
    wp_only: bool = False  # only the sweep (no cohort, natural and core workloads)
    wp_budget_s: float = 60.0
    out: Path = Path("benchmarks/results")  # where the sweep's partial rows are appended


@with_x64
def run_bench(opts: BenchOptions, log=print) -> dict:
    from bonecohort.config import load_study
    from bonecohort.reference_cache import outcome_setup

    study = load_study(opts.config)
    setup = outcome_setup(study.outcomes, default_model(), str(opts.config))
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = []
    if opts.wp_only:
        return _result(opts, started, bench_wp.sweep(study, opts.wp_n, opts.scipy_n,
                                                     opts.dtypes, log, opts.wp_budget_s,
                                                     on_row=_partial(opts, started)))
    for dtype in opts.dtypes:
        for n in sorted(opts.sizes):
            rows.append(bench_cohort(study, n, dtype, opts.chunk, setup))
            log(f"cohort {dtype} N={n:,}: {rows[-1].patient_years_per_s:,.0f} patient-years/s")
    rows += bench_natural(study, opts.natural_n, opts.diffrax_n, opts.scipy_n, opts.dtypes,
                          opts.peers, log)
    rows += bench_core(opts.natural_n, opts.scipy_n, opts.dtypes, opts.peers, log)
    if opts.peers and opts.wp_n:
        rows += bench_wp.sweep(study, opts.wp_n, opts.scipy_n, opts.dtypes, log,
                               opts.wp_budget_s, on_row=_partial(opts, started))
    return _result(opts, started, rows)


def _partial(opts, started: str):
    """Append each sweep row to OUT/<start>-partial.jsonl as it is measured."""
    path = Path(opts.out) / f"{started.replace(':', '').replace('-', '')}-partial.jsonl"

    def write(row):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps(asdict(row)) + "\n")

    return write


def _result(opts, started: str, rows) -> dict:
    return {"started": started, "device": device_info(), "config": str(opts.config),
            "options": {k: (str(v) if isinstance(v, Path) else v)
                        for k, v in asdict(opts).items()},
            "rows": [asdict(r) for r in rows]}


def ratios(result: dict) -> list[tuple[str, str, float, float | None]]:
    """This engine's float32 rate over each peer's rate on the same workload:
    (workload, peer, speed-up, peer's max relative error)."""
    out = []
    for workload in ("natural", "core"):  # at the peers' single tolerance (see bench_wp)
        rows = [r for r in result["rows"] if r["workload"] == workload]
        ours = [r for r in rows if r["solver"].startswith("bonecohort")
                and r["dtype"] == "float32"]
        if not ours:
            continue
        for r in rows:
            if not r["solver"].startswith("bonecohort"):
                out.append((workload, r["solver"],
                            ours[0]["patient_years_per_s"] / r["patient_years_per_s"],
                            r["max_rel_error"]))
    return out


def format_result(result: dict) -> str:
    dev = result["device"]
    lines = [f"device: {dev['device_kind']} ({dev['platform']}, {dev['device_count']} "
             f"device(s)), {dev['cpu_count']} CPU cores, jax {dev['jax']}", "",
             f"{'workload':<8} {'solver':<52} {'dtype':<7} {'N':>10} {'wall s':>8} "
             f"{'patient-years/s':>16} {'max rel err':>11} {'peak RSS':>9} {'dev peak':>9}"]
    gb = lambda b: "-" if b is None else f"{b / 1e9:.2f} GB"  # noqa: E731
    for r in result["rows"]:
        err = "-" if r["max_rel_error"] is None else f"{r['max_rel_error']:.1e}"
        lines.append(f"{r['workload']:<8} {r['solver']:<52} {r['dtype']:<7} {r['n']:>10,} "
                     f"{r['wall_s']:>8.2f} {r['patient_years_per_s']:>16,.0f} {err:>11} "
                     f"{gb(r['peak_rss_bytes']):>9} {gb(r['device_peak_bytes']):>9}")
    for workload, bound, ours, peer in bench_wp.headlines(result["rows"]):
        if ours or peer:
            lines += ["", f"fastest at error <= {bound:g} on the {workload} workload:",
                      f"  this engine: {bench_wp.describe(ours)}",
                      f"  peers:       {bench_wp.describe(peer)}"]
            if ours and peer:
                ratio = ours["patient_years_per_s"] / peer["patient_years_per_s"]
                lines.append(f"  ratio {ratio:.2f}x")
    rat = ratios(result)
    if rat:
        lines += ["", "speed-up of bonecohort float32 over each peer (same workload):"]
        for workload, peer, x, err in rat:
            lines.append(f"  {workload:<8} {peer:<52} {x:>10,.0f}x  (peer error {err:.1e})")
    return "\n".join(lines)


def write_result(result: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = result["device"]
    stamp = result["started"].replace(":", "").replace("-", "")
    name = f"{stamp}-{dev['platform']}-{dev['device_kind']}".replace(" ", "_").replace("/", "_")
    path = out_dir / f"{name}.json"
    atomic_write(path, json.dumps(result, indent=1))
    for workload in bench_wp.WORKLOADS:
        if any(r["workload"] == workload for r in result["rows"]):
            bench_wp.plot(result["rows"], workload, out_dir / f"{name}-{workload}.svg")
    return path
