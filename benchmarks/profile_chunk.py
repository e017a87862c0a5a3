"""Profile one chunk of a study on the default device: which kernels take the time.

    python benchmarks/profile_chunk.py [N] [OUT] [STUDY]

Compiles the study's chunk program (outcomes included, as ``run`` does) for N patients
(default 100,000; the default study), calls it once, then traces two more calls with
``jax.profiler.trace`` into OUT/trace (default benchmarks/results/profile-<time>) and reads the
trace back (``jax.profiler.ProfileData``): for every plane of the trace (a GPU's stream, the
host's threads), the events summed by name, the 25 longest printed with their share of the
plane's busy time, everything written to OUT/profile-summary.json. It needs jax only (no
polars), so it runs on the lent GPU machine's image (benchmarks/gpu_check.sh, step 0).
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import jax

from bonecohort.cohort import chunk_ids, make_chunk_runner
from bonecohort.config.study import load_study
from bonecohort.fit.parameters import default_model
from bonecohort.reference_cache import outcome_setup

TOP = 25


def chunk_runner(study, n: int):
    """The study's chunk runner with its outcome setup, and the ids of one chunk of ``n``."""
    model = default_model()
    setup = outcome_setup(study.outcomes, model, study.path, study.economics,
                          study.horizon_years)
    runner = make_chunk_runner(study.seed, study.population, model, study.arms, study.grid,
                               study.dtype, setup)
    return runner, chunk_ids(0, n, n)


def plane_summary(plane) -> dict:
    """Events of one trace plane summed by name: total and count, longest first. The Python
    tracer's events (names starting with ``$``) are left out; on a host plane the rest still
    nest (an executor's span holds its kernels), so shares there overlap."""
    total, count = defaultdict(float), defaultdict(int)
    for line in plane.lines:
        for event in line.events:
            if event.name.startswith("$"):
                continue
            total[event.name] += event.duration_ns
            count[event.name] += 1
    busy = sum(total.values()) or 1.0
    rows = sorted(total, key=total.get, reverse=True)
    return {"plane": plane.name, "busy_ms": busy / 1e6,
            "events": [{"name": k, "ms": total[k] / 1e6, "share": total[k] / busy,
                        "count": count[k]} for k in rows]}


def main(n: int, out: Path, study_name: str) -> None:
    study = load_study(study_name)
    runner, ids = chunk_runner(study, n)
    t0 = time.perf_counter()
    jax.block_until_ready(runner(ids))
    first = time.perf_counter() - t0
    trace = out / "trace"
    t0 = time.perf_counter()
    with jax.profiler.trace(str(trace)):
        for _ in range(2):
            jax.block_until_ready(runner(ids))
    traced = (time.perf_counter() - t0) / 2
    files = sorted(trace.rglob("*.xplane.pb"))
    if not files:
        raise SystemExit(f"no trace written under {trace}")
    data = jax.profiler.ProfileData.from_file(str(files[-1]))
    planes = [plane_summary(p) for p in data.planes]
    summary = {"device": str(jax.devices()[0]), "jax": jax.__version__, "study": study_name,
               "patients": n, "first_call_s": first, "traced_call_s": traced,
               "planes": [dict(p, events=p["events"][:200]) for p in planes]}
    (out / "profile-summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{jax.devices()[0]}: {n:,} patients, first call {first:.2f} s (compiles), "
          f"then {traced:.3f} s a call under the profiler")
    for p in planes:
        if not p["events"]:
            continue
        print(f"\n{p['plane']}: {p['busy_ms']:.1f} ms in events")
        for e in p["events"][:TOP]:
            print(f"  {100 * e['share']:5.1f} %  {e['ms']:9.2f} ms  x{e['count']:<6d} "
                  f"{e['name'][:90]}")
    print(f"\nwritten: {out / 'profile-summary.json'} and the trace under {trace}")


if __name__ == "__main__":
    args = sys.argv[1:]
    n = int(float(args[0])) if args else 100_000
    out = Path(args[1]) if len(args) > 1 else Path(
        "benchmarks/results") / time.strftime("profile-%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    main(n, out, args[2] if len(args) > 2 else "default")
