"""Scale: several devices and several processes give results identical to one device, and the
benchmark runs and reports what it measured."""

import json
import os
import socket
import subprocess
import sys

import polars as pl
import pytest
from click.testing import CliRunner

from bonecohort.shell.cli import main

STUDY = """
[study]
name = "scale"
patients = 1500
seed = 11
horizon_years = 5
chunk_size = 500

[population]
age_min = 50
age_max = 53
uterus_intact_fraction = 0

[[arms]]
name = "no treatment"

[[arms]]
name = "estradiol"
  [[arms.regimens]]
  agent = "estradiol"
  route = "transdermal"
  dose = 50
  dose_unit = "ug/day"
  start = "entry"
  duration_years = 3
"""

OUTPUTS = ("summary", "outcomes", "cumulative", "tscores", "draws_summary", "draws_outcomes")
DRAWS = ("--parameter-draws", 3)  # every run also under 3 draws of the fitted constants


def cli(*args, env=None):
    """``bonecohort ARGS`` in a fresh process (device flags must be set before jax starts)."""
    return subprocess.Popen([sys.executable, "-m", "bonecohort", *map(str, args)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def same_results(a, b):
    pa = pl.read_parquet(a / "patients" / "*.parquet").sort("arm", "patient_id")
    pb = pl.read_parquet(b / "patients" / "*.parquet").sort("arm", "patient_id")
    assert pa.height == 2 * 1500 and pa.equals(pb)
    for name in OUTPUTS:
        same = pl.read_parquet(a / f"{name}.parquet").equals(pl.read_parquet(b / f"{name}.parquet"))
        assert same, name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One study run on one device, on 4 (forced host) devices, and by two processes."""
    root = tmp_path_factory.mktemp("scale")
    cfg = root / "scale.toml"
    cfg.write_text(STUDY)
    port = free_port()
    dist = [cli("run", cfg, "--out", root / "two", "--distributed", "--coordinator",
                f"localhost:{port}", "--num-processes", 2, "--process-id", i, "-q", *DRAWS)
            for i in (0, 1)]
    for p in dist:
        finish(p)
    one = cli("run", cfg, "--out", root / "one", "-q", *DRAWS)
    four = cli("run", cfg, "--out", root / "four", "--devices", 4, "-q", *DRAWS,
               env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    finish(one), finish(four)
    return root


def test_four_devices_give_results_identical_to_one(runs):
    manifest = json.loads((runs / "four" / "manifest.json").read_text())
    assert len(manifest["devices"]) == 4
    same_results(runs / "one", runs / "four")


def test_two_processes_give_results_identical_to_one(runs, tmp_path):
    import shutil

    two = runs / "two"
    assert sorted(p.name for p in two.glob("chunks-*.jsonl")) == ["chunks-0000.jsonl",
                                                                   "chunks-0001.jsonl"]
    for i, path in enumerate(sorted(two.glob("chunks-*.jsonl"))):
        starts = [json.loads(line)["start"] for line in path.read_text().splitlines()]
        assert starts == list(range(500 * i, 1500, 1000))  # each process: its own chunks
    # each process simulated its share of the parameter draws: 0 and 2, and 1
    assert sorted(p.name for p in (two / "draws").glob("summary-*")) == [
        "summary-0.parquet", "summary-1.parquet", "summary-2.parquet"]
    shutil.copytree(two, tmp_path / "two")  # the other tests summarize copies of it too
    res = CliRunner().invoke(main, ["summarize", str(tmp_path / "two"), "-q"])
    assert res.exit_code == 0, res.output
    same_results(runs / "one", tmp_path / "two")
    assert not (tmp_path / "two" / "draws").exists()


def test_summarize_refuses_an_unfinished_distributed_run(runs, tmp_path):
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(runs / "two", partial)
    (partial / "chunks-0001.jsonl").unlink()
    res = CliRunner().invoke(main, ["summarize", str(partial)])
    assert res.exit_code == 2
    assert "1 stretch(es) of patients are not finished, the first from patient id 500" \
        in res.output
    res = CliRunner().invoke(main, ["summarize", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "not the directory of a distributed run" in res.output


def test_summarize_refuses_a_part_of_another_run_and_names_a_corrupt_one(runs, tmp_path):
    import shutil

    from bonecohort import io

    copy = tmp_path / "copy"
    shutil.copytree(runs / "two", copy)
    for name in OUTPUTS:  # as if not summarized yet
        (copy / f"{name}.parquet").unlink(missing_ok=True)
    part = copy / "patients" / "part-000000000500.parquet"
    identity = io.part_identity(part)
    frame = pl.read_parquet(part)
    io.write_parquet(part, frame, io.part_metadata({**identity, "patients": 3000}))
    res = CliRunner().invoke(main, ["summarize", str(copy)])
    assert res.exit_code == 2 and f"{part}: this part belongs to another run" in res.output
    assert "3000 patients" in res.output and not (copy / "summary.parquet").exists()
    part.write_bytes(b"not parquet")
    res = CliRunner().invoke(main, ["summarize", str(copy)])
    assert res.exit_code == 4 and f"{part}: cannot be read" in res.output
    assert "Traceback" not in res.output
    io.write_parquet(part, frame, io.part_metadata(identity))
    with io.run_lock(copy, shared=True):  # a process of the run still running
        res = CliRunner().invoke(main, ["summarize", str(copy)])
    assert res.exit_code == 2 and f"another bonecohort run (pid {os.getpid()})" in res.output
    assert CliRunner().invoke(main, ["summarize", str(copy), "-q"]).exit_code == 0
    same_results(runs / "one", copy)


def test_a_process_of_another_run_is_refused(runs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs / "two", copy)
    before = sorted(p.name for p in copy.rglob("*"))
    proc = cli("run", runs / "scale.toml", "--out", copy, "--distributed", "--seed", 12,
               "--coordinator", f"localhost:{free_port()}", "--num-processes", 1,
               "--process-id", 0, "-q")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2 and f"{copy}: holds another run" in err, err
    assert sorted(p.name for p in copy.rglob("*")) == before


def test_distributed_run_refuses_eligibility_and_bad_device_counts(tmp_path):
    cfg = tmp_path / "elig.toml"
    cfg.write_text(STUDY + "\n[eligibility]\ntscore_max = -1.0\n")
    res = CliRunner().invoke(main, ["run", str(cfg), "--distributed", "--out",
                                    str(tmp_path / "o")])
    assert res.exit_code == 2 and "[eligibility]" in res.output
    assert not (tmp_path / "o").exists()
    cfg.write_text(STUDY)
    res = CliRunner().invoke(main, ["run", str(cfg), "--devices", 64, "--out",
                                    str(tmp_path / "o")])
    assert res.exit_code == 2 and "--devices 64" in res.output


def test_bench_measures_every_solver_and_writes_json(tmp_path):
    cfg = tmp_path / "scale.toml"
    cfg.write_text(STUDY)
    res = CliRunner().invoke(main, [
        "bench", "--sizes", "300", "--dtypes", "float32", "--chunk", "300", "--natural-n", "64",
        "--diffrax-n", "2", "--scipy-n", "2", "--config", str(cfg), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (path,) = tmp_path.glob("*.json")
    result = json.loads(path.read_text())
    rows = {(r["workload"], r["solver"].split()[0] + " " + r["solver"].split()[1]): r
            for r in result["rows"]}
    assert set(rows) == {("cohort", "bonecohort rodas4"), ("natural", "bonecohort rodas3"),
                         ("natural", "diffrax Tsit5"), ("natural", "diffrax Kvaerno5"),
                         ("natural", "scipy solve_ivp"), ("core", "bonecohort rodas3"),
                         ("core", "bone_models Pivonka")}
    for r in result["rows"]:
        assert r["patient_years_per_s"] > 0 and r["peak_rss_bytes"] > 0
        if r["max_rel_error"] is not None:
            assert 0 <= r["max_rel_error"] < 1e-3, r  # every solver meets 0.1 % BMD error
    assert result["device"]["platform"] == "cpu"
    assert "speed-up of bonecohort float32" in res.output
