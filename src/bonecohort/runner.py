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

from .cohort import chunk_ids, make_chunk_runner
from .config import ConfigError, Study
from .fracture_reference import outcome_setup
from .report import write_report
from .simulate import ModelParams, default_model
from .summarize import arm_summary, cumulative_incidence, outcome_summary, tscore_distribution
from .tables import eligible_rows, nonfinite_patients, patient_table

PACKAGES = ("bonecohort", "jax", "jaxlib", "optax", "polars", "click", "numpy")


class SimulationError(Exception):
    """Numerical failure (NaN/inf) in the simulation; the message lists the patients."""


class EligibilityError(ConfigError):
    """Eligibility keeps too few simulated patients to fill the study."""


MAX_SCREENED_PER_PATIENT = 50  # give up if fewer than 1 in 50 simulated patients is eligible


PATIENT_PARTS = "patients"  # folder of per-patient parquet parts in a run directory
JOURNAL = "chunks.jsonl"  # finished chunks of an unfinished run (for --resume)


def patient_parts(run_dir: Path) -> str:
    """Glob of a run's per-patient parquet parts (``pl.scan_parquet`` reads them as one)."""
    return str(Path(run_dir) / PATIENT_PARTS / "*.parquet")


def _read_journal(work: Path):
    path = work / JOURNAL
    if not path.exists():
        return []
    chunks = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by a kill: that chunk is redone
        if entry.get("part") and not (work / PATIENT_PARTS / entry["part"]).exists():
            break
        chunks.append(entry)
    return chunks


def simulate_study(study: Study, work: Path, model: ModelParams | None = None,
                   log=lambda msg: None, progress=None) -> int:
    """Simulate patients of ``study`` until ``study.patients`` meet its eligibility, writing
    each chunk's rows as a parquet part under ``work/patients/`` as soon as it is done
    (memory does not grow with N). Patients are taken in id order, so the rows do not depend
    on chunking. Chunks already recorded in ``work/chunks.jsonl`` (an interrupted run) are
    skipped. Returns the number of patients simulated. ``progress(kept, rate)``, if given,
    is called after each chunk instead of a log line."""
    model = default_model() if model is None else model
    dtype = {"float32": jnp.float32, "float64": jnp.float64}[study.dtype]
    t0 = time.perf_counter()
    setup = outcome_setup(study.outcomes, model, study.path)
    log(f"fracture reference population ready ({time.perf_counter() - t0:.1f} s)")
    runner = make_chunk_runner(study.seed, study.population, model, study.arms, study.grid,
                               dtype, setup)
    arm_names = [a.name for a in study.arms]
    chunk = min(study.chunk_size, study.patients) if study.eligibility.is_open else \
        study.chunk_size
    (work / PATIENT_PARTS).mkdir(parents=True, exist_ok=True)
    done = _read_journal(work)
    screened = sum(c["simulated"] for c in done)
    kept = sum(c["kept"] for c in done)
    if done:
        log(f"resuming: {len(done)} chunk(s) done, {kept:,} eligible patients kept")
    journal = (work / JOURNAL).open("w")  # keep only the entries that were read back
    journal.writelines(json.dumps(c) + "\n" for c in done)
    failed = []
    t0, start_screened = time.perf_counter(), screened
    while kept < study.patients:
        if screened >= MAX_SCREENED_PER_PATIENT * study.patients + chunk:
            raise EligibilityError(
                f"{study.path}: [eligibility]: only {kept:,} of {screened:,} simulated patients "
                f"({100 * kept / screened:.2f} %) are eligible; the study needs "
                f"{study.patients:,}. Widen [eligibility] or [population].")
        n_valid = min(chunk, study.patients - screened) if study.eligibility.is_open else chunk
        # one transfer to the host per chunk; everything below works on numpy arrays
        patients, outputs = jax.device_get(runner(chunk_ids(screened, screened + n_valid,
                                                             chunk)))
        tscore_ref = (study.outcomes.tscore_mean, study.outcomes.tscore_sd)
        rows = eligible_rows(patients, outputs, n_valid, study.eligibility, tscore_ref)
        rows = rows[:study.patients - kept]
        part = ""
        if len(rows):
            failed += nonfinite_patients(patients, outputs, rows)
            table = patient_table(patients, outputs, arm_names, rows, study.reference_arm,
                                  tscore_ref)
            part = f"part-{screened:012d}.parquet"
            tmp = work / PATIENT_PARTS / f".{part}.tmp"
            table.write_parquet(tmp)
            os.replace(tmp, work / PATIENT_PARTS / part)
        journal.write(json.dumps({"start": screened, "simulated": n_valid, "kept": len(rows),
                                  "part": part}) + "\n")
        journal.flush()
        screened += n_valid
        kept += len(rows)
        elapsed = time.perf_counter() - t0
        if screened - start_screened == n_valid:
            log(f"first chunk compiled and simulated in {elapsed:.1f} s")
        rate = (screened - start_screened) / elapsed
        if progress is not None:
            progress(kept, rate)
        else:
            log(f"simulated {screened:,} patients, {kept:,}/{study.patients:,} eligible "
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


def run_study(study: Study, out: Path, force: bool = False, log=lambda msg: None,
              progress=None, model: ModelParams | None = None, resume: bool = False):
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
        screened = simulate_study(study, work, model=model, log=log, progress=progress)
        lazy = pl.scan_parquet(patient_parts(work))
        arms = [a.name for a in study.arms]
        results = {
            "summary": arm_summary(lazy, study.horizon_years, arms),
            "outcomes": outcome_summary(lazy, arms),
            "cumulative": cumulative_incidence(lazy, study.horizon_years, arms),
            "tscores": tscore_distribution(lazy, arms),
        }
        for name, df in results.items():
            df.write_parquet(work / f"{name}.parquet")
        log(f"summaries written ({time.perf_counter() - t0:.1f} s)")
        wall = time.perf_counter() - t0
        (work / "manifest.json").write_text(json.dumps(manifest(study, wall, screened),
                                                      indent=2))
        write_report(work)
        log(f"report written ({time.perf_counter() - t0:.1f} s)")
        for name in (JOURNAL, "run.json"):
            (work / name).unlink()
        publish(work, out)
    except Exception:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return results
