"""The work-precision headlines in one run, without the whole sweep.

This engine's error-controlled RODAS4 across rtol (and, on the one-site workload, the fixed
RODAS3 grid of one step a year), against the peer configurations that were the fastest within
1e-3 and 1e-5 in the full sweep (`bonecohort bench --work-precision`, benchmarks/RESULTS.md)
and their neighbours, on the same N patients and dtypes, with the same error measure (max
relative BV/BMD error against scipy Radau, rtol 1e-10, on the first patients).

Usage: .venv/bin/python benchmarks/wp_headlines.py [N] [WORKLOAD]
WORKLOAD ``natural-wp`` or ``full-wp`` runs that one only (default both; the full model's
peers take minutes a call at N = 10,000). Writes benchmarks/results/<time>-wp-headlines.json
(every row) and prints the headlines.
"""

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from bonecohort.cohort import with_x64
from bonecohort.config import load_study
from bonecohort.shell import bench_wp
from bonecohort.shell.bench_full import FullModel
from bonecohort.shell.bench_peers import REF_PATIENTS, NaturalHistory, _max_rel
from bonecohort.shell.bench_rows import _timed, device_info

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
ONLY = sys.argv[2] if len(sys.argv) > 2 else None
OURS = [("rodas4", None, rtol) for rtol in (1e-2, 1e-3, 3e-4, 1e-4, 1e-5)]
PEERS = {  # (solver, dtype, rtol): the sweep's fastest within each bound and neighbours
    "natural-wp": [("Kvaerno3", "float32", 1e-2), ("Kvaerno3", "float64", 1e-2),
                   ("Kvaerno5", "float32", 1e-2), ("Kvaerno3", "float64", 1e-5)],
    "full-wp": [("Kvaerno3", "float64", 1e-2), ("Kvaerno3", "float64", 1e-3),
                ("Kvaerno3", "float32", 1e-3), ("Kvaerno3", "float64", 1e-5)],
}


@with_x64
def main():
    study = load_study("default")
    rows = []
    ids = jnp.arange(N, dtype=jnp.uint32)
    works = {"natural-wp": lambda: NaturalHistory(study, max(N, REF_PATIENTS)),
             "full-wp": lambda: FullModel(study, N)}
    for name in ([ONLY] if ONLY else works):
        work = works[name]()
        ref = work.reference(REF_PATIENTS)
        ours = [(f"bonecohort {s} controlled", s, rtol) for s, _, rtol in OURS]
        if work.name == "natural-wp":
            ours.append(("bonecohort rodas3", "rodas3", None))
        for label, solver, rtol in ours:
            fn = (work.ours("float32", 1, solver) if rtol is None
                  else work.ours("float32", solver=solver, rtol=rtol))
            wall, bv = _timed(fn, ids)
            settings = {"steps_per_year": 1} if rtol is None else {"rtol": rtol}
            rows.append(bench_wp._row(work, label, "float32", N, wall, _max_rel(bv, ref),
                                      settings))
            print(bench_wp.describe(asdict(rows[-1])), flush=True)
        for name, dtype, rtol in PEERS[work.name]:
            fn = work.diffrax(name, rtol, rtol * 1e-3, bench_wp.MAX_STEPS[name], dtype)
            wall, bv = _timed(fn, ids)
            ok = np.isfinite(np.asarray(bv)).all()
            rows.append(bench_wp._row(work, f"diffrax {name}", dtype, N, wall,
                                      _max_rel(bv, ref) if ok else float("nan"),
                                      {"rtol": rtol, "atol": rtol * 1e-3}))
            print(bench_wp.describe(asdict(rows[-1])), flush=True)
    rows = [asdict(r) for r in rows]
    for workload, bound, ours, peer in bench_wp.headlines(rows):
        ratio = (f"{ours['patient_years_per_s'] / peer['patient_years_per_s']:.1f}x"
                 if ours and peer else "-")
        print(f"\n{workload} within {bound:g}: ratio {ratio}\n  ours:  "
              f"{bench_wp.describe(ours)}\n  peers: {bench_wp.describe(peer)}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path("benchmarks/results") / f"{stamp}-wp-headlines.json"
    out.write_text(json.dumps({"device": device_info(), "n": N, "rows": rows}, indent=1))
    print(f"\nrows: {out}")


if __name__ == "__main__":
    main()
