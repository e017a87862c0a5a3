"""Run a study: chunks of patients through the compiled core, into an output directory.

Outputs are written into a temporary directory beside the target and renamed into place only
when complete, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import polars as pl

from .cohort import chunk_ids, make_chunk_runner
from .config import ConfigError, Study
from .simulate import ModelParams, default_model
from .report import write_report
from .summarize import arm_summary, cumulative_incidence, outcome_summary, tscore_distribution
from .epidemiology import EpidemiologyError, load_tables
from .fracture_reference import build_norm
from .outcomes import FractureParams, OutcomeSetup
from .tables import eligible_rows, nonfinite_patients, patient_table

PACKAGES = ("bonecohort", "jax", "jaxlib", "optax", "polars", "click", "numpy")


class SimulationError(Exception):
    """Numerical failure (NaN/inf) in the simulation; the message lists the patients."""


class EligibilityError(ConfigError):
    """Eligibility keeps too few simulated patients to fill the study."""


MAX_SCREENED_PER_PATIENT = 50  # give up if fewer than 1 in 50 simulated patients is eligible


def outcome_setup(study: Study, model: ModelParams) -> OutcomeSetup:
    """Tables, the fracture-hazard reference population and constants for ``study``."""
    opts = study.outcomes
    try:
        epi = load_tables(opts.tables) if opts.tables else load_tables()
    except EpidemiologyError as exc:
        raise ConfigError(f"{study.path}: [outcomes] tables: {exc}") from None
    fracture = FractureParams()
    norm = build_norm(model, epi, fracture, (opts.tscore_mean, opts.tscore_sd))
    return OutcomeSetup(incidence=epi.incidence, qx=epi.qx, norm=norm, fracture=fracture,
                        tscore_mean=opts.tscore_mean, tscore_sd=opts.tscore_sd,
                        by_age=opts.by_age, probability_ages=opts.probability_ages)


def simulate_study(study: Study, model: ModelParams | None = None, log=lambda msg: None,
                   progress=None):
    """Simulate patients of ``study`` until ``study.patients`` meet its eligibility (in id
    order, so the result does not depend on chunking); return the per-patient DataFrame and
    the number of patients simulated. ``progress(kept, rate)``, if given, is called after
    each chunk instead of a log line."""
    model = default_model() if model is None else model
    dtype = {"float32": jnp.float32, "float64": jnp.float64}[study.dtype]
    t0 = time.perf_counter()
    setup = outcome_setup(study, model)
    log(f"fracture reference population ready ({time.perf_counter() - t0:.1f} s)")
    runner = make_chunk_runner(study.seed, study.population, model, study.arms, study.grid,
                               dtype, setup)
    arm_names = [a.name for a in study.arms]
    chunk = min(study.chunk_size, study.patients) if study.eligibility.is_open else \
        study.chunk_size
    frames, failed = [], []
    kept = screened = 0
    t0 = time.perf_counter()
    while kept < study.patients:
        if screened >= MAX_SCREENED_PER_PATIENT * study.patients + chunk:
            raise EligibilityError(
                f"{study.path}: [eligibility]: only {kept:,} of {screened:,} simulated patients "
                f"({100 * kept / screened:.2f} %) are eligible; the study needs "
                f"{study.patients:,}. Widen [eligibility] or [population].")
        n_valid = min(chunk, study.patients - screened) if study.eligibility.is_open else chunk
        patients, outputs = runner(chunk_ids(screened, screened + n_valid, chunk))
        rows = eligible_rows(patients, outputs, n_valid, study.eligibility)
        rows = rows[:study.patients - kept]
        screened += n_valid
        kept += len(rows)
        if len(rows):
            failed += nonfinite_patients(patients, outputs, rows)
            frames.append(patient_table(patients, outputs, arm_names, rows,
                                        study.reference_arm,
                                        (study.outcomes.tscore_mean, study.outcomes.tscore_sd)))
        elapsed = time.perf_counter() - t0
        if screened == n_valid:
            log(f"first chunk compiled and simulated in {elapsed:.1f} s")
        rate = screened / elapsed
        if progress is not None:
            progress(kept, rate)
        else:
            log(f"simulated {screened:,} patients, {kept:,}/{study.patients:,} eligible "
                f"({rate:,.0f} patients/s)")
    if failed:
        shown = "; ".join(json.dumps(p) for p in failed[:10])
        raise SimulationError(
            f"{len(failed)} patient(s) produced NaN or inf; no results were written. "
            f"First ones (patient draws): {shown}")
    table = pl.concat(frames)
    order = {name: i for i, name in enumerate(arm_names)}
    return table.sort(pl.col("arm").replace_strict(order), "patient_id"), screened


def manifest(study: Study, wall_s: float, screened: int) -> dict:
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


def prepare_out_dir(out: Path, force: bool) -> Path:
    """Check that ``out`` may be written; return a fresh temporary directory beside it."""
    if out.exists() and not force:
        raise ConfigError(f"{out}: output directory exists; choose another --out or pass "
                          "--force to replace it.")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create the output directory ({exc}).") from None


def publish(tmp: Path, out: Path):
    """Atomically move the finished ``tmp`` directory to ``out`` (replacing it if present)."""
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def run_study(study: Study, out: Path, force: bool = False, log=lambda msg: None,
              progress=None, model: ModelParams | None = None):
    """Simulate, summarize and write to ``out``: ``patients.parquet`` (one row per patient and
    arm), ``summary.parquet`` (BMD per arm and sex), ``outcomes.parquet`` (fractures, deaths
    and contrasts per arm and subgroup), ``cumulative.parquet`` (cumulative incidence by year),
    ``tscores.parquet`` (T-score distributions), ``manifest.json`` and ``report.html``.
    Returns ``{"summary": ..., "outcomes": ...}`` DataFrames."""
    tmp = prepare_out_dir(out, force)
    try:
        t0 = time.perf_counter()
        table, _ = simulate_study(study, model=model, log=log, progress=progress)
        screened = int(table["patient_id"].max()) + 1
        table.write_parquet(tmp / "patients.parquet")
        del table
        lazy = pl.scan_parquet(tmp / "patients.parquet")
        arms = [a.name for a in study.arms]
        results = {
            "summary": arm_summary(lazy, study.horizon_years, arms),
            "outcomes": outcome_summary(lazy, arms),
            "cumulative": cumulative_incidence(lazy, study.horizon_years, arms),
            "tscores": tscore_distribution(lazy, arms),
        }
        for name, df in results.items():
            df.write_parquet(tmp / f"{name}.parquet")
        log(f"summaries written ({time.perf_counter() - t0:.1f} s)")
        wall = time.perf_counter() - t0
        (tmp / "manifest.json").write_text(json.dumps(manifest(study, wall, screened),
                                                      indent=2))
        write_report(tmp)
        log(f"report written ({time.perf_counter() - t0:.1f} s)")
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return results
