"""`run --parameter-draws`: repeatability and peak memory against K and N.

Runs `bonecohort run CONFIG -n N --parameter-draws K --seed 7` as subprocesses:
  A, B: the same command twice (N, K)          -> every output table identical
  C:    2K draws (N)                           -> peak RSS against A
  D:    2N patients (K)                        -> peak RSS against A
and prints the uncertainty intervals beside the Monte Carlo ones for the headline numbers.

Usage: .venv/bin/python benchmarks/draws_check.py [CONFIG] [N] [K]
Peak memory is each subprocess's ru_maxrss (resource.getrusage of the waited child).
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

TABLES = ("summary", "outcomes", "draws_summary", "draws_outcomes", "cumulative", "tscores")


def run(config, n, k, out):
    """(peak RSS in bytes, wall s) of one run, in its own process."""
    cmd = [sys.executable, "-c", "import sys, resource; from bonecohort.shell.cli import main\n"
           "try:\n    main()\nexcept SystemExit as e:\n"
           "    print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
           "file=sys.stderr)\n    raise",
           "run", config, "-n", str(n), "--parameter-draws", str(k), "--seed", "7",
           "--out", str(out), "-q"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if res.returncode:
        raise SystemExit(res.stderr[-2000:])
    rss = int(res.stderr.rsplit("RSS", 1)[1].split()[0]) * 1024
    return rss, time.perf_counter() - t0, res.stdout


def main():
    config = sys.argv[1] if len(sys.argv) > 1 else "default"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    tmp = Path(tempfile.mkdtemp())
    rows = {}
    for name, nn, kk in (("A", n, k), ("B", n, k), ("C", n, 2 * k), ("D", 2 * n, k)):
        rss, wall, text = run(config, nn, kk, tmp / name)
        rows[name] = {"patients": nn, "draws": kk, "peak_rss_gb": round(rss / 1e9, 3),
                      "wall_s": round(wall, 1)}
        print(name, rows[name], flush=True)
        if name == "A":
            print(text)
    same = {t: pl.read_parquet(tmp / "A" / f"{t}.parquet").equals(
        pl.read_parquet(tmp / "B" / f"{t}.parquet")) for t in TABLES}
    print("A == B:", same)
    o = pl.read_parquet(tmp / "A" / "outcomes.parquet").filter(pl.col("subgroup") == "all")
    cols = [c for s, mc in (("hip_by_age", "hip_by_age"), ("hip_rr", "hip_rr"),
                            ("mof_rr", "mof_rr"), ("hip_rd_per_1000", "hip_rd"))
            for c in (s, f"{mc}_lo", f"{mc}_hi", f"{s}_ui_lo", f"{s}_ui_hi")]
    print(o.select("arm", *cols))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = Path(__file__).parent / "results" / f"{stamp}-draws_check.json"
    path.write_text(json.dumps({"config": config, "runs": rows, "identical": same,
                                "headline": o.select("arm", *cols).to_dicts()}, indent=2))
    print("written", path)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
