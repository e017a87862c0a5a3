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
from .summarize import arm_summary
from .tables import nonfinite_patients, patient_table

PACKAGES = ("bonecohort", "jax", "jaxlib", "optax", "polars", "click", "numpy")


class SimulationError(Exception):
    """Numerical failure (NaN/inf) in the simulation; the message lists the patients."""


def simulate_study(study: Study, model: ModelParams | None = None, log=lambda msg: None):
    """Simulate every patient of ``study``; return the per-patient polars DataFrame."""
    model = default_model() if model is None else model
    dtype = {"float32": jnp.float32, "float64": jnp.float64}[study.dtype]
    runner = make_chunk_runner(study.seed, study.population, model, study.arms, study.grid,
                               dtype)
    arm_names = [a.name for a in study.arms]
    chunk = min(study.chunk_size, study.patients)
    frames, failed = [], []
    t0 = time.perf_counter()
    for start in range(0, study.patients, chunk):
        stop = min(start + chunk, study.patients)
        patients, outputs = runner(chunk_ids(start, stop, chunk))
        failed += nonfinite_patients(patients, outputs, stop - start)
        frames.append(patient_table(patients, outputs, arm_names, stop - start))
        rate = stop / (time.perf_counter() - t0)
        log(f"simulated {stop:,}/{study.patients:,} patients ({rate:,.0f} patients/s)")
    if failed:
        shown = "; ".join(json.dumps(p) for p in failed[:10])
        raise SimulationError(
            f"{len(failed)} patient(s) produced NaN or inf; no results were written. "
            f"First ones (patient draws): {shown}")
    table = pl.concat(frames)
    order = {name: i for i, name in enumerate(arm_names)}
    return table.sort(pl.col("arm").replace_strict(order), "patient_id")


def manifest(study: Study, wall_s: float) -> dict:
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


def run_study(study: Study, out: Path, force: bool = False, log=lambda msg: None):
    """Simulate, summarize and write ``patients.parquet``, ``summary.parquet`` and
    ``manifest.json`` to ``out``. Returns the summary DataFrame."""
    tmp = prepare_out_dir(out, force)
    try:
        t0 = time.perf_counter()
        table = simulate_study(study, log=log)
        table.write_parquet(tmp / "patients.parquet")
        summary = arm_summary(pl.scan_parquet(tmp / "patients.parquet"), study.horizon_years,
                              [a.name for a in study.arms])
        summary.write_parquet(tmp / "summary.parquet")
        wall = time.perf_counter() - t0
        (tmp / "manifest.json").write_text(json.dumps(manifest(study, wall), indent=2))
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
