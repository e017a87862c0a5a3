"""Run a study: chunks of patients through the compiled core, into an output directory.

Outputs are written into a temporary directory beside the target and renamed into place only
when complete, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import polars as pl

from bonecohort.cohort import make_chunk_runner, with_x64
from bonecohort.config import ConfigError, Study
from bonecohort.fit.parameters import default_model
from bonecohort.fit.screening import screen
from bonecohort.model.params import ModelParams
from bonecohort.reference_cache import outcome_setup
from bonecohort.shell.report import write_report
from bonecohort.shell.summarize import (
    arm_summary,
    cumulative_incidence,
    outcome_summary,
    tscore_distribution,
)
from bonecohort.shell.tables import nonfinite_patients, patient_table

PACKAGES = ("bonecohort", "jax", "jaxlib", "optax", "polars", "click", "numpy")


class SimulationError(Exception):
    """Numerical failure (NaN/inf) in the simulation; the message lists the patients."""






PATIENT_PARTS = "patients"  # folder of per-patient parquet parts in a run directory
JOURNAL = "chunks.jsonl"  # finished chunks of an unfinished run (for --resume)


def patient_parts(run_dir: Path) -> str:
    """Glob of a run's per-patient parquet parts (``pl.scan_parquet`` reads them as one)."""
    return str(Path(run_dir) / PATIENT_PARTS / "*.parquet")


def local_devices(count: int | None):
    """The first ``count`` local devices (0: all; None: the first one)."""
    local = jax.local_devices()
    if count is None:
        return local[:1]
    if count < 0 or count > len(local):
        raise ConfigError(f"--devices {count}: this process sees {len(local)} device(s) "
                          f"({', '.join(str(d) for d in local)}).")
    return local[:count] if count else local


def journal_name(process: int, processes: int) -> str:
    return JOURNAL if processes == 1 else f"chunks-{process:04d}.jsonl"


def _read_journal(path: Path, parts: Path):
    """Finished chunks recorded in the journal at ``path`` whose parts exist."""
    if not path.exists():
        return []
    chunks = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by a kill: that chunk is redone
        if entry.get("part") and not (parts / entry["part"]).exists():
            break
        chunks.append(entry)
    return chunks


def simulate_study(study: Study, work: Path, model: ModelParams | None = None,
                   log=lambda msg: None, progress=None, devices: int | None = None,
                   process: tuple[int, int] = (0, 1)) -> int:
    """Simulate patients of ``study`` until ``study.patients`` meet its eligibility, writing
    each chunk's rows as a parquet part under ``work/patients/`` as soon as it is done
    (memory does not grow with N). Patients are taken in id order, so the rows do not depend
    on chunking or devices. Chunks already recorded in the journal (an interrupted run) are
    skipped. Returns the number of patients simulated. ``progress(kept, rate)``, if given,
    is called after each chunk instead of a log line.

    ``devices``: how many local devices share each chunk (``local_devices``).
    ``process = (i, P)``: process ``i`` of ``P`` (a distributed run) simulates chunks
    ``i, i + P, ...`` of a study without eligibility criteria, journaled in its own file.
    """
    index, processes = process
    model = default_model() if model is None else model
    dtype = {"float32": jnp.float32, "float64": jnp.float64}[study.dtype]
    t0 = time.perf_counter()
    setup = outcome_setup(study.outcomes, model, study.path)
    log(f"fracture reference population ready ({time.perf_counter() - t0:.1f} s)")
    devs = local_devices(devices)
    runner = make_chunk_runner(study.seed, study.population, model, study.arms, study.grid,
                               dtype, setup, devs)
    arm_names = [a.name for a in study.arms]
    # each step gives every device one chunk of the study's size: the per-device batch, and
    # so each patient's arithmetic, is the same whatever the number of devices
    chunk = len(devs) * (min(study.chunk_size, study.patients) if study.eligibility.is_open
                         else study.chunk_size)
    parts = work / PATIENT_PARTS
    parts.mkdir(parents=True, exist_ok=True)
    journal_path = work / journal_name(index, processes)
    done = {c["start"]: c for c in _read_journal(journal_path, parts)}
    if done:
        log(f"resuming: {len(done)} chunk(s) done, "
            f"{sum(c['kept'] for c in done.values()):,} eligible patients kept")
    journal = journal_path.open("w")  # keep only the entries that were read back
    journal.writelines(json.dumps(c) + "\n" for c in done.values())
    failed = []
    screened, t0, computed = 0, time.perf_counter(), 0
    per = chunk // len(devs)

    def finished(start, n_valid):
        if start in done:  # finished before an interruption
            return done[start]["simulated"], done[start]["kept"]
        if (start // chunk) % processes != index:  # another process's (no eligibility)
            return n_valid, n_valid
        return None

    for s in screen(runner, study.patients, chunk, study.eligibility,
                    study.outcomes.tscore_reference, study.path, finished):
        if len(s.rows):
            failed += nonfinite_patients(s.result, s.rows)
        # one part per chunk of the study's size, whatever the number of devices, so that the
        # dataset (and every sum over it) is laid out the same way
        for lo in range(0, s.n_valid, per):
            sub = s.rows[(s.rows >= lo) & (s.rows < lo + per)]
            part = ""
            if len(sub):
                table = patient_table(s.result, arm_names, sub, study.reference_arm,
                                      study.outcomes)
                part = f"part-{s.start + lo:012d}.parquet"
                tmp = parts / f".{part}.tmp"
                table.write_parquet(tmp)
                os.replace(tmp, parts / part)
            journal.write(json.dumps({"start": s.start + lo, "kept": len(sub), "part": part,
                                      "simulated": min(per, s.n_valid - lo)}) + "\n")
        journal.flush()
        screened, computed = s.screened, computed + s.n_valid
        elapsed = time.perf_counter() - t0
        if computed == s.n_valid:
            log(f"first chunk compiled and simulated in {elapsed:.1f} s")
        rate = computed / elapsed
        if progress is not None:
            progress(s.kept, rate)
        else:
            log(f"simulated {s.screened:,} patients, {s.kept:,}/{study.patients:,} eligible "
                f"({rate:,.0f} patients/s)")
    journal.close()
    if failed:
        shown = "; ".join(json.dumps(p) for p in failed[:10])
        raise SimulationError(
            f"{len(failed)} patient(s) produced NaN or inf; no results were written. "
            f"First ones (patient draws): {shown}")
    return screened


def manifest(study: Study, wall_s: float, screened: int) -> dict:
    """Provenance of a run (``screened``: patients simulated to fill eligibility)."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "study": study.name,
        "config_path": study.path,
        "config_sha256": study.config_hash,
        "config": study.config_text,
        "patients": study.patients,
        "patients_simulated_to_fill_eligibility": screened,
        "seed": study.seed,
        "dtype": study.dtype,
        "chunk_size": study.chunk_size,
        "arms": [a.name for a in study.arms],
        "reference_arm": study.reference_arm,
        "package_versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "devices": [str(d) for d in jax.devices()],
        "wall_time_s": round(wall_s, 3),
    }


def work_dir(out: Path) -> Path:
    """Where an unfinished run lives until it is complete: beside ``out``."""
    return out.parent / f".{out.name}.partial"


RESUME_KEYS = ("config_sha256", "seed", "patients", "chunk_size", "dtype")


def prepare_out_dir(study: Study, out: Path, force: bool, resume: bool = False) -> Path:
    """Check that ``out`` may be written; return the work directory beside it (kept from an
    interrupted run with ``resume``, else fresh)."""
    if out.exists() and not force:
        raise ConfigError(f"{out}: output directory exists; choose another --out or pass "
                          "--force to replace it.")
    work = work_dir(out)
    identity = {k: v for k, v in manifest(study, 0.0, 0).items() if k in RESUME_KEYS}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if work.exists() and resume:
            try:
                before = json.loads((work / "run.json").read_text())
            except (OSError, ValueError):
                before = None
            if before != identity:
                raise ConfigError(
                    f"{out}: --resume: the interrupted run in {work} was made with another "
                    f"config, seed, patient count, chunk size or dtype ({before}); run "
                    "without --resume to start again.")
            return work
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        (work / "run.json").write_text(json.dumps(identity))
        return work
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create the output directory ({exc}).") from None


def publish(tmp: Path, out: Path):
    """Atomically move the finished ``tmp`` directory to ``out`` (replacing it if present)."""
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


SUMMARY_DIGITS = 10


def _stable(df: pl.DataFrame) -> pl.DataFrame:
    """Float columns rounded to ``SUMMARY_DIGITS`` significant digits: polars' multithreaded
    group-by sums add in an order that varies between runs (the last 1-2 bits of a mean or
    an interval differ), and results of the same run must be the same files."""
    def rounded(s: pl.Series) -> pl.Series:
        return pl.Series(s.name, [None if v is None else float(f"{v:.{SUMMARY_DIGITS}g}")
                                  for v in s.to_list()], dtype=s.dtype)

    return df.with_columns([rounded(df[c]) for c, dt in df.schema.items() if dt.is_float()])


def write_summaries(study: Study, work: Path, screened: int, t0: float, log) -> dict:
    """Summaries, manifest and report of the parts in ``work`` (group-bys on
    ``scan_parquet``: the per-patient table is never held in memory)."""
    lazy = pl.scan_parquet(patient_parts(work))
    arms = [a.name for a in study.arms]
    results = {
        "summary": arm_summary(lazy, study.horizon_years, arms),
        "outcomes": outcome_summary(lazy, arms, study.outcomes.probability_ages),
        "cumulative": cumulative_incidence(lazy, study.horizon_years, arms),
        "tscores": tscore_distribution(lazy, arms),
    }
    results = {name: _stable(df) for name, df in results.items()}
    for name, df in results.items():
        tmp = work / f".{name}.parquet.tmp"
        df.write_parquet(tmp)
        os.replace(tmp, work / f"{name}.parquet")
    log(f"summaries written ({time.perf_counter() - t0:.1f} s)")
    (work / "manifest.json").write_text(json.dumps(
        manifest(study, time.perf_counter() - t0, screened), indent=2))
    write_report(work)
    log(f"report written ({time.perf_counter() - t0:.1f} s)")
    return results


@with_x64
def run_study(study: Study, out: Path, force: bool = False, log=lambda msg: None,
              progress=None, model: ModelParams | None = None, resume: bool = False,
              devices: int | None = None):
    """Simulate, summarize and write to ``out``: ``patients/part-*.parquet`` (one row per
    patient and arm, one part per chunk; read them with ``pl.scan_parquet(out /
    "patients/*.parquet")``), ``summary.parquet`` (BMD per arm and sex),
    ``outcomes.parquet`` (fractures, deaths and contrasts per arm and subgroup),
    ``cumulative.parquet`` (cumulative incidence by year), ``tscores.parquet`` (T-score
    distributions), ``manifest.json`` and ``report.html``.

    Work happens in a directory beside ``out`` renamed into place when complete. A run that
    was killed keeps it; ``resume`` continues from the last finished chunk. Any error removes
    it, so nothing half-written is left. Returns ``{"summary": ..., "outcomes": ...}``."""
    work = prepare_out_dir(study, out, force, resume)
    try:
        t0 = time.perf_counter()
        screened = simulate_study(study, work, model=model, log=log, progress=progress,
                                  devices=devices)
        results = write_summaries(study, work, screened, t0, log)
        for name in (JOURNAL, "run.json"):
            (work / name).unlink()
        publish(work, out)
    except Exception:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return results


# --- several processes (machines) -------------------------------------------------------------

DISTRIBUTED_STUDY = "study.toml"  # the config of a distributed run, kept in its directory


@with_x64
def run_distributed_process(study: Study, out: Path, log=lambda msg: None, progress=None,
                            devices: int | None = None, coordinator: str | None = None,
                            num_processes: int | None = None, process_id: int | None = None):
    """One process of a run over several processes (``jax.distributed``): it simulates its
    own chunks and writes their parts and its journal straight into ``out``, which all
    processes share (a shared file system across machines). Summaries are made afterwards by
    ``summarize_run(out)``. Rerunning the same command resumes: finished chunks are kept."""
    if not study.eligibility.is_open:
        raise ConfigError(f"{study.path}: [eligibility]: a distributed run needs a study "
                          "without eligibility criteria (each process must know its patient "
                          "range in advance); run this study on one machine (--devices uses "
                          "all of its devices).")
    try:
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=num_processes, process_id=process_id)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"--distributed: jax.distributed.initialize failed ({exc}); give "
                          "--coordinator, --num-processes and --process-id, or run under "
                          "SLURM or Open MPI.") from None
    index, processes = jax.process_index(), jax.process_count()
    identity = {**{k: v for k, v in manifest(study, 0.0, 0).items() if k in RESUME_KEYS},
                "processes": processes, "devices_per_process": len(local_devices(devices))}
    try:
        out.mkdir(parents=True, exist_ok=True)
        if (out / "run.json").exists():
            before = json.loads((out / "run.json").read_text())
            if before != identity:
                raise ConfigError(f"{out}: holds another run ({before}); choose another --out.")
        else:
            for name, text in (("run.json", json.dumps(identity)),
                               (DISTRIBUTED_STUDY, study.config_text)):
                tmp = out / f".{name}.{index}.tmp"
                tmp.write_text(text)
                os.replace(tmp, out / name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{out}: cannot use the output directory ({exc}).") from None
    log(f"process {index} of {processes}, devices {local_devices(devices)}")
    screened = simulate_study(study, out, log=log, progress=progress, devices=devices,
                              process=(index, processes))
    return index, processes, screened


def summarize_run(run_dir: Path, log=lambda msg: None) -> tuple[Study, dict]:
    """Summaries, manifest and report of a distributed run once every process has finished
    (reads the partitioned dataset ``run_dir/patients/*.parquet``)."""
    from bonecohort.config import load_study

    try:
        identity = json.loads((run_dir / "run.json").read_text())
        study = load_study(run_dir / DISTRIBUTED_STUDY).with_overrides(
            identity["patients"], identity["seed"], identity["chunk_size"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{run_dir}: not the directory of a distributed run ({exc}).") \
            from None
    done = {}
    for path in sorted(run_dir.glob("chunks-*.jsonl")):
        done.update({c["start"]: c for c in _read_journal(path, run_dir / PATIENT_PARTS)})
    covered, gaps = 0, []
    for start in sorted(done):
        if start > covered:
            gaps.append(covered)
        covered = max(covered, start + done[start]["simulated"])
    if covered < study.patients:
        gaps.append(covered)
    if gaps:
        raise ConfigError(f"{run_dir}: {len(gaps)} stretch(es) of patients are not finished, "
                          f"the first from patient id {gaps[0]:,} (of {study.patients:,}); "
                          "wait for every process, "
                          "or rerun the missing processes with the same command.")
    t0 = time.perf_counter()
    return study, write_summaries(study, run_dir, study.patients, t0, log)
