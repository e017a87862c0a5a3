"""End-to-end runs through the CLI: outputs, determinism, chunking, and clean errors."""

import json
import os

import polars as pl
import pytest
from click.testing import CliRunner

from bonecohort.shell.cli import main

SMALL = """
[study]
name = "small"
patients = 12000
seed = 7
horizon_years = 5
chunk_size = 10000

[population]
age_min = 50
age_max = 52
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
  duration_years = 5
"""


def read_patients(run_dir):
    """The per-patient parts of a run as one frame, in a canonical order."""
    return pl.read_parquet(run_dir / "patients" / "*.parquet").sort("arm", "patient_id")


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = root / "small.toml"
    cfg.write_text(SMALL)
    results = {}
    for label, chunk in (("big_chunks", 10000), ("small_chunks", 1000), ("again", 1000)):
        res = run_cli("run", cfg, "--out", root / label, "--chunk-size", chunk, "--quiet")
        assert res.exit_code == 0, res.output
        results[label] = (root / label, res.output)
    return results


def test_run_writes_parquet_manifest_and_summary(runs):
    out, printed = runs["big_chunks"]
    patients = read_patients(out)
    assert patients.height == 2 * 12000
    assert set(patients["arm"].unique()) == {"no treatment", "estradiol"}
    assert {"fn_pct_y1", "ls_pct_y5", "fn_tscore_end"} <= set(patients.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["patients"] == 12000
    assert len(manifest["config_sha256"]) == 64 and manifest["devices"]
    assert manifest["package_versions"]["jax"]
    summary = pl.read_parquet(out / "summary.parquet")
    assert summary["arm"].to_list() == ["no treatment", "estradiol"]
    assert "FN %chg y5" in printed and "estradiol" in printed
    assert "hip/1000 by 80" in printed and "MOF RR" in printed and "NNT" in printed
    outcomes = pl.read_parquet(out / "outcomes.parquet")
    assert set(outcomes["subgroup"]) == {"all", "sex", "age_band", "tscore_category_entry",
                                         "uterus_intact"}
    assert {"hip", "hip_lo", "hip_hi", "hip_rr", "hip_rr_lo", "hip_nnt", "mof_rd_per_1000",
            "deaths_horizon", "life_years"} <= set(outcomes.columns)
    cumulative = pl.read_parquet(out / "cumulative.parquet")
    assert cumulative.height == 2 * 5
    for arm in ("no treatment", "estradiol"):  # cumulative incidence never decreases
        hip = cumulative.filter(pl.col("arm") == arm)["hip_pct"].to_numpy()
        assert (hip[1:] >= hip[:-1]).all()
    assert pl.read_parquet(out / "tscores.parquet").height == 2 * 2
    # estradiol from entry loses less bone at both sites
    by_arm = {r["arm"]: r for r in summary.iter_rows(named=True)}
    for col in ("FN %chg y5", "LS %chg y5"):
        assert by_arm["estradiol"][col] > by_arm["no treatment"][col]


def test_same_seed_gives_identical_parquet(runs):
    parts = sorted((runs["small_chunks"][0] / "patients").iterdir())
    assert len(parts) == 12
    for part in parts:
        assert part.read_bytes() == (runs["again"][0] / "patients" / part.name).read_bytes()


def test_chunk_size_does_not_change_results(runs):
    a = read_patients(runs["big_chunks"][0])
    b = read_patients(runs["small_chunks"][0])
    assert a.equals(b)


def test_other_seed_gives_other_patients(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL)
    tables = []
    for seed in (1, 2):
        out = tmp_path / f"seed{seed}"
        assert run_cli("run", cfg, "-n", 1000, "--seed", seed, "--out", out, "-q").exit_code == 0
        tables.append(read_patients(out))
    assert not tables[0]["age_entry"].equals(tables[1]["age_entry"])


def test_identical_arms_give_rr_one_and_zero_difference(tmp_path):
    twin = SMALL.split("[[arms]]")[-1].replace('name = "estradiol"', 'name = "estradiol twin"')
    cfg = tmp_path / "twins.toml"
    cfg.write_text(SMALL.replace("chunk_size = 10000", 'reference_arm = "estradiol"')
                   + "\n[[arms]]" + twin)
    out = tmp_path / "out"
    assert run_cli("run", cfg, "-n", 1000, "--out", out, "-q").exit_code == 0
    outcomes = pl.read_parquet(out / "outcomes.parquet")
    twin = outcomes.filter(pl.col("arm") == "estradiol twin")
    for event in ("hip", "mof"):
        rr = twin[f"{event}_rr"].drop_nulls()
        assert rr.len() > 0 and (rr == 1.0).all()
        assert (twin[f"{event}_rd_per_1000"] == 0.0).all()
    patients = read_patients(out)
    a, b = (patients.filter(pl.col("arm") == arm).drop("arm")
            for arm in ("estradiol", "estradiol twin"))
    assert a.equals(b)  # identical arms, identical patients and events
    untreated = outcomes.filter((pl.col("arm") == "no treatment") & (pl.col("subgroup") == "all"))
    assert untreated["hip"].item() >= 0.0 and untreated["mof"].item() > 0.0


def test_eligibility_selects_from_the_simulated_history(tmp_path):
    cfg = tmp_path / "elig.toml"
    cfg.write_text(SMALL.replace("age_max = 52", "age_max = 70") + """
[eligibility]
tscore_max = -1.5
years_since_menopause_min = 2
""")
    out = tmp_path / "out"
    assert run_cli("run", cfg, "-n", 500, "--chunk-size", 1000, "--out", out, "-q").exit_code == 0
    patients = read_patients(out)
    assert patients.height == 2 * 500
    assert (patients["fn_tscore_entry"] <= -1.5).all()
    assert (patients["years_since_menopause"] >= 2).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["patients_simulated_to_fill_eligibility"] > 500
    impossible = tmp_path / "impossible.toml"
    impossible.write_text(cfg.read_text().replace("tscore_max = -1.5", "tscore_max = -7.5"))
    res = CliRunner().invoke(main, ["run", str(impossible), "-n", "5", "--chunk-size", "1000",
                                    "--out", str(tmp_path / "none")])
    assert res.exit_code == 2 and "[eligibility]" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "none").exists()


BAD = {
    "not toml": ("[study\nname = 1", "not valid TOML"),
    "empty": ("", "empty"),
    "unknown key": (SMALL.replace("horizon_years", "horizon_yeras"), "Did you mean 'horizon_years'"),
    "wrong type": (SMALL.replace("patients = 12000", "patients = \"many\""), "[study] patients"),
    "unknown agent": (SMALL.replace('agent = "estradiol"', 'agent = "estradiol_patchy"'),
                      "[arms[1] ('estradiol').regimens[0]] agent"),
    "unknown route": (SMALL.replace('"transdermal"', '"nasal"'), "regimens[0]] route"),
    "wrong unit": (SMALL.replace('"ug/day"', '"mg/day"'), "dose_unit"),
    "missing unit": (SMALL.replace('dose_unit = "ug/day"', ''), "dose_unit: missing"),
    "implausible dose": (SMALL.replace("dose = 50", "dose = 5000"), "plausible range"),
    "negative duration": (SMALL.replace("duration_years = 5", "duration_years = -1"),
                          "duration_years: must be at least one month"),
    "overlap": (SMALL + """  [[arms.regimens]]
  agent = "estradiol"
  route = "transdermal"
  dose = 25
  dose_unit = "ug/day"
  start = { years_from_baseline = 2 }
""", "overlaps regimen 0"),
    "unopposed estrogen": (SMALL.replace("uterus_intact_fraction = 0", ""),
                           "allow_unopposed_estrogen"),
    "dose implausible in one sex": (
        SMALL.replace("uterus_intact_fraction = 0", 'sex = "both"')
        .replace('"estradiol"\n  route', '"testosterone"\n  route').replace('"transdermal"', '"gel"')
        .replace("dose = 50", "dose = 1").replace('"ug/day"', '"mg/day"'), "plausible range for men"),
    "fmp start in men": (
        SMALL.replace("uterus_intact_fraction = 0", 'sex = "male"')
        .replace('"estradiol"\n  route', '"testosterone"\n  route').replace('"transdermal"', '"gel"')
        .replace('"ug/day"', '"mg/day"').replace('start = "entry"', 'start = "fmp"'),
        "needs a population of women"),
    "agent not for men": (SMALL.replace("uterus_intact_fraction = 0", 'sex = "male"'),
                          "is not used in men"),
    "bad adherence": (SMALL.replace("duration_years = 5", "duration_years = 5\n  adherence = 1.5"),
                      "adherence: must be between 0.0 and 1.0"),
    "unknown after": (SMALL.replace('start = "entry"', 'start = { after = "first" }'),
                      "start.after: 'first' is not the name of an earlier regimen"),
    "missing arms": (SMALL.split("[[arms]]")[0], "[arms]"),
    "bad step count": (SMALL.replace("chunk_size = 10000", "steps_per_year = 30"),
                       "multiple of 12"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_config_exits_2_with_clear_message_and_writes_nothing(tmp_path, case):
    text, expected = BAD[case]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert str(cfg) in res.output and expected in res.output
    assert "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == [cfg]


def test_bad_options_and_missing_file(tmp_path):
    cfg = tmp_path / "ok.toml"
    cfg.write_text(SMALL)
    for args, expected in ((["--patients", "0"], "--patients"),
                           (["--seed", "-1"], "--seed")):
        res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(tmp_path / "o"), *args])
        assert res.exit_code == 2 and expected in res.output
    res = CliRunner().invoke(main, ["run", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2 and "no such file" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.toml"]


def test_existing_output_is_refused_without_force(tmp_path):
    cfg = tmp_path / "ok.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), "-n", "1000"])
    assert res.exit_code == 2 and "--force" in res.output
    assert (out / "keep.txt").read_text() == "mine"
    assert run_cli("run", cfg, "--out", out, "-n", 1000, "--force", "-q").exit_code == 0
    assert not (out / "keep.txt").exists() and list((out / "patients").glob("*.parquet"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".out.lock"]


def test_unwritable_output_directory_is_a_clean_error(tmp_path):
    cfg = tmp_path / "ok.toml"
    cfg.write_text(SMALL)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(blocker / "out")])
    assert res.exit_code == 2 and "cannot create the output directory" in res.output
    assert "Traceback" not in res.output


def test_nan_in_a_simulation_is_reported_with_patient_ids_and_nothing_written(tmp_path,
                                                                            monkeypatch):
    import jax.numpy as jnp

    import bonecohort.shell.runner as runner

    real = runner.make_chunk_runner

    def poisoned(*args, **kwargs):
        run = real(*args, **kwargs)

        def wrapped(ids):
            result = run(ids)
            bad = (ids == 3) | (ids == 17)
            life = result.life._replace(
                bmd_rel=jnp.where(bad[:, None, None, None], jnp.nan, result.life.bmd_rel))
            return result._replace(life=life)

        return wrapped

    monkeypatch.setattr(runner, "make_chunk_runner", poisoned)
    cfg = tmp_path / "ok.toml"
    cfg.write_text(SMALL)
    res = CliRunner().invoke(main, ["run", str(cfg), "-n", "1000", "--out", str(tmp_path / "o")])
    assert res.exit_code == 3
    assert "2 patient(s) produced NaN or inf" in res.output
    assert '"patient_id": 3.0' in res.output and '"patient_id": 17.0' in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [".o.lock", "ok.toml"]


def test_resume_after_sigkill_matches_an_uninterrupted_run(runs, tmp_path):
    """Kill a run (SIGKILL) after two chunks; --resume computes only the missing chunks and
    ends with the outputs of the uninterrupted 'small_chunks' run (same config and options)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "killed"
    journal = tmp_path / ".killed.partial" / "chunks.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from bonecohort.shell.cli import main; main()", "run", str(cfg),
         "--chunk-size", "1000", "--out", str(out), "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and journal.exists()
    done = len(journal.read_text().splitlines())
    assert 2 <= done < 12
    res = CliRunner().invoke(main, ["run", str(cfg), "--chunk-size", "1000", "--out", str(out),
                                    "--resume"])
    assert res.exit_code == 0, res.output
    assert f"resuming: {done} chunk(s) done" in res.output
    reference = runs["small_chunks"][0]
    assert read_patients(out).equals(read_patients(reference))
    for name in ("summary", "outcomes", "cumulative", "tscores"):
        assert pl.read_parquet(out / f"{name}.parquet").equals(
            pl.read_parquet(reference / f"{name}.parquet"))
    assert not (tmp_path / ".killed.partial").exists()
    # an interrupted run of another study is not resumed
    stale = tmp_path / ".other.partial"
    stale.mkdir()
    (stale / "run.json").write_text("{}")
    res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(tmp_path / "other"),
                                    "--resume"])
    assert res.exit_code == 2 and "made with another config" in res.output


def same_outputs(out, reference):
    """Parts byte for byte, and summaries, equal those of the run in ``reference``."""
    parts = sorted(p.name for p in (reference / "patients").iterdir())
    assert sorted(p.name for p in (out / "patients").iterdir()) == parts
    for name in parts:
        assert (out / "patients" / name).read_bytes() == \
            (reference / "patients" / name).read_bytes(), name
    for name in ("summary", "outcomes", "cumulative", "tscores"):
        assert pl.read_parquet(out / f"{name}.parquet").equals(
            pl.read_parquet(reference / f"{name}.parquet")), name


def test_disk_full_keeps_the_partial_run_and_resume_finishes_it(runs, tmp_path, monkeypatch):
    """No space for the 4th part: exit 4 naming it, the 3 finished parts kept; a corrupt part
    (exit 4) and a part of another run (exit 2) are named on --resume and leave the work
    directory alone; once the part is deleted, --resume ends with the outputs of a clean run
    (the deleted part's chunk simulated again)."""
    import errno

    from bonecohort import io

    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    out, work = tmp_path / "full", tmp_path / ".full.partial"
    args = ["run", str(cfg), "--chunk-size", "1000", "--out", str(out)]
    real, written = io.atomic_write, []

    def disk_fills(path, data):
        if path.parent.name == "patients":
            written.append(path)
            if len(written) > 3:
                def no_space(fh):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real(path, no_space)
        return real(path, data)

    monkeypatch.setattr(io, "atomic_write", disk_fills)
    res = CliRunner().invoke(main, args + ["-q"])
    assert res.exit_code == 4, res.output
    fourth = work / "patients" / "part-000000003000.parquet"
    assert f"{fourth}: no space left on the device" in res.output
    assert f"kept in {work}" in res.output and "--resume" in res.output
    assert "Traceback" not in res.output and not out.exists()
    assert len((work / "chunks.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in (work / "patients").iterdir()) == [
        f"part-{i:012d}.parquet" for i in (0, 1000, 2000)]
    monkeypatch.undo()  # space freed

    second = work / "patients" / "part-000000001000.parquet"
    good = second.read_bytes()
    second.write_bytes(good[: len(good) // 2])
    res = CliRunner().invoke(main, args + ["--resume"])
    assert res.exit_code == 4 and f"{second}: cannot be read" in res.output
    assert "Delete this file and rerun the same command with --resume" in res.output
    assert "Traceback" not in res.output

    other = {**json.loads((work / "run.json").read_text()), "seed": 8}
    io.write_parquet(second, pl.read_parquet(work / "patients" / "part-000000000000.parquet"),
                     io.part_metadata(other))
    res = CliRunner().invoke(main, args + ["--resume"])
    assert res.exit_code == 2 and f"{second}: this part belongs to another run" in res.output
    assert "seed 8" in res.output and "seed 7" in res.output
    assert work.exists() and second.exists()

    second.unlink()
    res = CliRunner().invoke(main, args + ["--resume"])
    assert res.exit_code == 0, res.output
    assert "resuming: 2 chunk(s) done" in res.output
    same_outputs(out, runs["small_chunks"][0])
    assert not work.exists()


def test_a_run_holding_the_lock_refuses_every_other_writer(tmp_path):
    """While the test process holds OUT's lock, run, run --resume, a distributed process
    and validate aimed at OUT are refused (exit 2) before anything is written."""
    import os

    from bonecohort.io import run_lock

    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "out"
    message = f"another bonecohort run (pid {os.getpid()}) is writing {out}; wait for it"
    with run_lock(out):
        for extra in ([], ["--resume"], ["--distributed"]):
            res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out), *extra])
            assert res.exit_code == 2 and message in res.output, res.output
        res = CliRunner().invoke(main, ["validate", "public", "--out", str(out), "-q"])
        assert res.exit_code == 2 and message in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "small.toml"]
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = CliRunner().invoke(main, ["validate", "public", "--out", str(out), "-q"])
    assert res.exit_code == 2 and "output directory exists" in res.output
    assert "--force" in res.output and (out / "keep.txt").exists()


def test_validate_writes_through_a_work_directory_and_replaces_with_force(tmp_path):
    from test_validate import TARGETS

    targets = tmp_path / "mini.toml"
    targets.write_text(TARGETS)
    out = tmp_path / "v"
    out.mkdir()
    (out / "old.txt").write_text("old")
    res = CliRunner().invoke(main, ["validate", str(targets), "--out", str(out), "--force", "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "curves.parquet", "validation.csv", "validation.parquet", "validation.svg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".v.lock", "mini.toml", "v"]


def test_second_run_into_the_same_out_is_refused_while_the_first_runs(runs, tmp_path):
    """Two `bonecohort run` processes aimed at one OUT: the second (another seed) exits 2 while
    the first still runs, and the first ends with the outputs of a clean run."""
    import subprocess
    import sys
    import time

    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "shared"
    command = [sys.executable, "-c", "from bonecohort.shell.cli import main; main()", "run",
               str(cfg), "--chunk-size", "1000", "--out", str(out), "-q"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.time() + 300
    while not (tmp_path / ".shared.partial").exists() and first.poll() is None:
        assert time.time() < deadline
        time.sleep(0.1)
    second = subprocess.run(command + ["--seed", "8"], capture_output=True, text=True,
                            timeout=300)
    assert first.poll() is None, "the first run ended before the second was refused"
    assert second.returncode == 2, second.stderr
    assert f"another bonecohort run (pid {first.pid}) is writing {out}" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.wait(timeout=600) == 0, first.stderr.read()
    same_outputs(out, runs["small_chunks"][0])


def test_a_full_file_system_gives_exit_4_and_resume_continues_once_it_has_room(runs, tmp_path):
    """A real 1 MB tmpfs (root only): the run stops with exit 4 when it is full, keeps its
    work directory, and --resume after the file system is grown ends with the outputs of a
    clean run."""
    import subprocess

    fs = tmp_path / "small_fs"
    fs.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(fs)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        cfg = tmp_path / "small.toml"
        cfg.write_text(SMALL)
        out, work = fs / "out", fs / ".out.partial"
        args = ["run", str(cfg), "--chunk-size", "1000", "--out", str(out)]
        res = CliRunner().invoke(main, args + ["-q"])
        assert res.exit_code == 4, res.output
        assert "no space left on the device" in res.output and str(work) in res.output
        assert "Traceback" not in res.output and not out.exists()
        assert 1 <= len(list((work / "patients").glob("*.parquet"))) < 12
        subprocess.run(["mount", "-o", "remount,size=64m", str(fs)], check=True)
        res = CliRunner().invoke(main, args + ["--resume"])
        assert res.exit_code == 0, res.output
        assert "resuming: " in res.output
        same_outputs(out, runs["small_chunks"][0])
    finally:
        subprocess.run(["umount", str(fs)], check=True)
