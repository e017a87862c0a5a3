"""Run a study: chunks of patients through the compiled core, into an output directory.

A run follows the output rules of ``bonecohort.io.output_dir``: it holds the lock
``.OUT.lock`` beside OUT (exclusive; the processes of one distributed run share it) before it
touches anything, so a second run aimed at OUT is refused; it works in ``.OUT.partial`` beside
OUT, renamed into place only when complete. Every part records the run's identity
(``run_identity``) in its parquet metadata, so that ``--resume`` and ``summarize`` refuse
parts of another run.

Failures: bad input is a ``ConfigError`` and a refused directory ``bonecohort.io.Refused``
(exit 2), a NaN a ``SimulationError`` (exit 3); a config error or a NaN removes the work
directory. A file that cannot be written or read (disk full, permission lost, a corrupt part)
is a ``bonecohort.io.RunIOError`` (exit 4) naming the file and the fix; the work directory is
kept, so ``--resume`` continues it.
"""

from __future__ import annotations

import json
import platform
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
from bonecohort.io import (
    SUMMARIES,
    Journal,
    RunDir,
    atomic_write,
    check_parts,
    output_dir,
    part_metadata,
    read_journal,
    write_parquet,
)
from bonecohort.model.params import ModelParams
from bonecohort.outcome_inputs import draw_inputs, input_spread, tables_for
from bonecohort.reference_cache import outcome_setup
from bonecohort.shell.draws import (
    OUTCOME_KEYS,
    SUMMARY_KEYS,
    collect_draws,
    draw_record,
    remove_draws,
    simulate_draws,
    with_uncertainty,
)
from bonecohort.shell.balance import economics_table
from bonecohort.shell.report import write_report
from bonecohort.shell.summarize import arm_tables, cumulative_incidence, tscore_distribution
from bonecohort.shell.tables import SimulationError, nonfinite_patients, patient_table

PACKAGES = ("bonecohort", "jax", "jaxlib", "optax", "polars", "click", "numpy")


def check_posterior_of(model: ModelParams, post):
    """A ConfigError unless ``model`` holds the posterior's fit (its mean): the draws vary
    the constants around the point estimate the run reports."""
    import numpy as np

    from bonecohort.fit.parameters import to_theta

    if not np.allclose(np.asarray(to_theta(model, post.frees)), post.mean, rtol=1e-6,
                       atol=1e-6):
        raise ConfigError("--parameter-draws: the run's constants are not the fit whose "
                          "posterior is drawn from; draw from the posterior of the model "
                          "the run uses.")


DRAW_TABLES = ("draws_summary", "draws_outcomes")  # per-draw tables of --parameter-draws
RESUME_KEYS = ("config_sha256", "seed", "patients", "chunk_size", "dtype")


def run_identity(study: Study) -> dict:
    """What makes two runs the same run (the ``RESUME_KEYS`` of the manifest): recorded in
    ``run.json`` and in every part."""
    return {"config_sha256": study.config_hash, "seed": study.seed,
            "patients": study.patients, "chunk_size": study.chunk_size, "dtype": study.dtype}


def local_devices(count: int | None):
    """The first ``count`` local devices (0: all; None: the first one)."""
    local = jax.local_devices()
    if count is None:
        return local[:1]
    if count < 0 or count > len(local):
        raise ConfigError(f"--devices {count}: this process sees {len(local)} device(s) "
                          f"({', '.join(str(d) for d in local)}).")
    return local[:count] if count else local


# --- simulating chunks ---------------------------------------------------------------------------


def _chunk_runner(study: Study, model: ModelParams | None, devices: int | None, log,
                  input_draw: int | None = None):
    """The compiled chunk runner of ``study`` and the number of devices sharing a chunk;
    ``input_draw``: draw j of the harm, utility and cost inputs (``drawn_inputs``)."""
    model = default_model() if model is None else model
    dtype = {"float32": jnp.float32, "float64": jnp.float64}[study.dtype]
    t0 = time.perf_counter()
    setup = outcome_setup(study.outcomes, model, study.path, study.economics,
                          study.horizon_years)
    log(f"fracture reference population ready ({time.perf_counter() - t0:.1f} s)")
    if input_draw is not None and (setup.harms or setup.economics) is not None:
        setup = drawn_inputs(study, setup, input_draw)
    devs = local_devices(devices)
    return make_chunk_runner(study.seed, study.population, model, study.arms, study.grid,
                             dtype, setup, devs), len(devs)


def drawn_inputs(study: Study, setup, j: int):
    """``setup`` with draw ``j`` of its harm, utility and cost inputs (key
    ``fold_in(fold_in(fold_in(key(seed), 2^32 - 1), j), 1)``, beside the constants' draw)."""
    tables = tables_for(study.economics.tables, study.path)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
        jax.random.key(study.seed), 2**32 - 1), j), 1)
    harms, econ = draw_inputs(setup.harms, setup.economics, input_spread(tables, study.economics),
                              key)
    return setup._replace(harms=harms, economics=econ)


def _step_size(study: Study, n_devices: int) -> int:
    """Patients per step: each device gets one chunk of the study's size, so the per-device
    batch, and so each patient's arithmetic, is the same whatever the number of devices."""
    return n_devices * (min(study.chunk_size, study.patients) if study.eligibility.is_open
                        else study.chunk_size)


def _open_journal(run: RunDir, study: Study, process: tuple[int, int], log):
    """The chunks finished before an interruption (their parts checked to be of this run)
    and the journal, rewritten with them, to append to."""
    run.patients.mkdir(parents=True, exist_ok=True)
    path = run.journal(*process)
    entries = read_journal(path, run.patients)
    check_parts([run.patients / c["part"] for c in entries if c.get("part")],
                run_identity(study), "delete it (its chunk is then simulated again) or run "
                "without --resume to start again.")
    done = {c["start"]: c for c in entries}
    if done:
        log(f"resuming: {len(done)} chunk(s) done, "
            f"{sum(c['kept'] for c in done.values()):,} eligible patients kept")
    return done, Journal(path, done.values())


def _finished(done: dict, chunk: int, process: tuple[int, int]):
    """``screen``'s question whether a chunk is already done: (simulated, kept) for a chunk
    journaled before an interruption or one of another process (no eligibility), else None."""
    index, processes = process

    def finished(start, n_valid):
        if start in done:
            return done[start]["simulated"], done[start]["kept"]
        if (start // chunk) % processes != index:
            return n_valid, n_valid
        return None

    return finished


def _write_parts(s, per: int, study: Study, run: RunDir) -> list[dict]:
    """Write the kept rows of the screened step ``s`` as one part per chunk of the study's
    size, whatever the number of devices (so the dataset, and every sum over it, is laid out
    the same way); return their journal entries."""
    arms = [a.name for a in study.arms]
    meta = part_metadata(run_identity(study))
    entries = []
    for lo in range(0, s.n_valid, per):
        sub = s.rows[(s.rows >= lo) & (s.rows < lo + per)]
        part = ""
        if len(sub):
            part = RunDir.part_name(s.start + lo)
            write_parquet(run.patients / part, patient_table(
                s.result, arms, sub, study.reference_arm, study.outcomes), meta)
        entries.append({"start": s.start + lo, "kept": len(sub), "part": part,
                        "simulated": min(per, s.n_valid - lo)})
    return entries


def _reporter(study: Study, log, progress):
    """Called after each computed step: ``progress(kept, rate)`` if given, else a log line."""
    t0, computed = time.perf_counter(), 0

    def report(s):
        nonlocal computed
        computed += s.n_valid
        elapsed = time.perf_counter() - t0
        if computed == s.n_valid:
            log(f"first chunk compiled and simulated in {elapsed:.1f} s")
        rate = computed / elapsed
        if progress is not None:
            progress(s.kept, rate)
        else:
            log(f"simulated {s.screened:,} patients, {s.kept:,}/{study.patients:,} eligible "
                f"({rate:,.0f} patients/s)")

    return report


def _raise_if_nonfinite(failed: list):
    if failed:
        shown = "; ".join(json.dumps(p) for p in failed[:10])
        raise SimulationError(
            f"{len(failed)} patient(s) produced NaN or inf; no results were written. "
            f"First ones (patient draws): {shown}")


def simulate_study(study: Study, work: Path, model: ModelParams | None = None,
                   log=lambda msg: None, progress=None, devices: int | None = None,
                   process: tuple[int, int] = (0, 1), input_draw: int | None = None) -> int:
    """Simulate patients of ``study`` until ``study.patients`` meet its eligibility, writing
    each chunk's rows as a parquet part under ``work/patients/`` as soon as it is done
    (memory does not grow with N). Patients are taken in id order, so the rows do not depend
    on chunking or devices. Chunks already recorded in the journal (an interrupted run) are
    skipped. Returns the number of patients simulated. ``progress(kept, rate)``, if given,
    is called after each chunk instead of a log line.

    ``devices``: how many local devices share each chunk (``local_devices``).
    ``process = (i, P)``: process ``i`` of ``P`` (a distributed run) simulates chunks
    ``i, i + P, ...`` of a study without eligibility criteria, journaled in its own file.
    ``input_draw``: draw j of the harm, utility and cost inputs (``drawn_inputs``).
    """
    run = RunDir(work)
    done, journal = _open_journal(run, study, process, log)
    runner, n_devices = _chunk_runner(study, model, devices, log, input_draw)
    chunk = _step_size(study, n_devices)
    report = _reporter(study, log, progress)
    failed, screened = [], 0
    with journal:
        for s in screen(runner, study.patients, chunk, study.eligibility,
                        study.outcomes.tscore_reference, study.path,
                        _finished(done, chunk, process)):
            if len(s.rows):
                failed += nonfinite_patients(s.result, s.rows)
            for entry in _write_parts(s, chunk // n_devices, study, run):
                journal.append(entry)
            journal.flush()
            screened = s.screened
            report(s)
    _raise_if_nonfinite(failed)
    return screened


# --- summaries -----------------------------------------------------------------------------------


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


SUMMARY_DIGITS = 10


def _stable(df: pl.DataFrame) -> pl.DataFrame:
    """Float columns rounded to ``SUMMARY_DIGITS`` significant digits: polars' multithreaded
    group-by sums add in an order that varies between runs (the last 1-2 bits of a mean or
    an interval differ), and results of the same run must be the same files."""
    def rounded(s: pl.Series) -> pl.Series:
        return pl.Series(s.name, [None if v is None else float(f"{v:.{SUMMARY_DIGITS}g}")
                                  for v in s.to_list()], dtype=s.dtype)

    return df.with_columns([rounded(df[c]) for c, dt in df.schema.items() if dt.is_float()])


def write_summaries(study: Study, work: Path, screened: int, t0: float, log,
                    draws: tuple | None = None) -> dict:
    """Summaries, manifest and report of the parts in ``work`` (group-bys on
    ``scan_parquet``: the per-patient table is never held in memory). ``draws``: (per-draw
    summary, per-draw outcomes, manifest record) of ``run --parameter-draws`` (draws.py),
    which add uncertainty intervals to the summaries and their own tables."""
    run = RunDir(work)
    lazy = pl.scan_parquet(run.parts_glob)
    arms = [a.name for a in study.arms]
    tables = [*arm_tables(lazy, study), cumulative_incidence(lazy, study.horizon_years, arms),
              tscore_distribution(lazy, arms)]
    info = manifest(study, 0.0, screened)
    if draws is not None:
        per_draw = [_stable(df) for df in draws[:2]]
        tables[0] = with_uncertainty(_stable(tables[0]), per_draw[0], SUMMARY_KEYS)
        tables[1] = with_uncertainty(_stable(tables[1]), per_draw[1], OUTCOME_KEYS)
        for name, df in zip(DRAW_TABLES, per_draw):
            write_parquet(run.root / f"{name}.parquet", df)
        info["parameter_draws"] = draws[2]
    remove_draws(work)
    tables.append(economics_table(tables[1], study.economics.willingness_to_pay,
                                  study.economics.currency))
    results = {name: _stable(df) for name, df in zip(SUMMARIES, tables)}
    for name, df in results.items():
        write_parquet(run.summary(name), df)
    log(f"summaries written ({time.perf_counter() - t0:.1f} s)")
    info["wall_time_s"] = round(time.perf_counter() - t0, 3)
    atomic_write(run.manifest, json.dumps(info, indent=2))
    write_report(work)
    log(f"report written ({time.perf_counter() - t0:.1f} s)")
    return results


@with_x64
def run_study(study: Study, out: Path, force: bool = False, log=lambda msg: None,
              progress=None, model: ModelParams | None = None, resume: bool = False,
              devices: int | None = None, parameter_draws: tuple | None = None):
    """Simulate, summarize and write to ``out``: ``patients/part-*.parquet`` (one row per
    patient and arm, one part per chunk; read them with ``pl.scan_parquet(out /
    "patients/*.parquet")``), ``summary.parquet`` (BMD per arm and sex),
    ``outcomes.parquet`` (fractures, deaths and contrasts per arm and subgroup),
    ``cumulative.parquet`` (cumulative incidence by year), ``tscores.parquet`` (T-score
    distributions), ``manifest.json`` and ``report.html``.

    Work happens in a directory beside ``out`` renamed into place when complete
    (``bonecohort.io.output_dir``). A run that was killed, or stopped by a ``RunIOError``,
    keeps it; ``resume`` continues from the last finished chunk. Returns ``{"summary": ...,
    "outcomes": ...}``.

    ``parameter_draws = (posterior, K, source)``: the study is simulated again under K draws
    of the fitted constants (draws.py); the summaries gain uncertainty intervals."""
    with output_dir(out, force, run_identity(study), resume) as work:
        t0 = time.perf_counter()
        model = default_model() if model is None else model
        screened = simulate_study(study, work, model=model, log=log, progress=progress,
                                  devices=devices)
        draws = None
        if parameter_draws:
            post, k, source = parameter_draws
            check_posterior_of(model, post)
            if study.grid.rtol == 0 and study.grid.steps_per_year < 24:
                log(f"parameter draws at {study.grid.steps_per_year} steps a year: draws in "
                    "the tails of loosely identified constants can need more "
                    "([study] steps_per_year = 24; README, Uncertainty)")
            simulate_draws(study, work, post.models(model, study.seed, k),
                           lambda s, w, m, j: simulate_study(s, w, model=m, devices=devices,
                                                         input_draw=j), log)
            draws = (*collect_draws(work, k), draw_record(post, study.seed, k, source))
        return write_summaries(study, work, screened, t0, log, draws)


# --- several processes (machines) -------------------------------------------------------------
