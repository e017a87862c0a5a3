"""Command-line interface (imperative shell)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click

from bonecohort.config import ConfigError, load_study


@click.group()
@click.version_option(package_name="bonecohort")
def main():
    """bonecohort: simulate bone loss under hormonal protocols for cohorts of virtual patients.

    Example: bonecohort run configs/default.toml --patients 10000 --out runs/demo
    """


@contextmanager
def progress_bar(total: int, quiet: bool):
    """A progress bar on a terminal (patients/s and ETA); None (log lines) otherwise. The bar
    opens at the first finished chunk and closes when all patients are in, so stage log lines
    print before and after it."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    state = {}

    def update(kept, rate):
        if "bar" not in state:
            state["bar"] = click.progressbar(length=total, label="patients", show_eta=True,
                                             file=sys.stderr, item_show_func=lambda r: r)
            state["bar"].__enter__()
        bar = state["bar"]
        bar.update(kept - bar.pos, f"{rate:,.0f} patients/s")
        if kept >= total:
            bar.__exit__(None, None, None)
            state["bar"] = None

    try:
        yield update
    finally:
        if state.get("bar") is not None:
            state["bar"].__exit__(None, None, None)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--patients", "-n", type=int, help="Number of patients (overrides the config).")
@click.option("--seed", type=int, help="Random seed (overrides the config).")
@click.option("--chunk-size", type=int, help="Patients per compiled batch (results do not "
              "depend on it).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: runs/<study name>).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run of the same study "
              "and options from its last finished chunk.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@click.option("--devices", type=int, default=1, show_default=True,
              help="Local devices (GPUs, or CPU devices) that share each chunk; 0: all. "
              "Results are identical for any number.")
@click.option("--distributed", is_flag=True, help="One process of a run over several "
              "processes or machines (jax.distributed; SLURM and Open MPI are detected); "
              "each writes its own parts into the shared OUT; then `bonecohort summarize OUT`.")
@click.option("--coordinator", help="host:port of process 0 (with --distributed).")
@click.option("--num-processes", type=int, help="Number of processes (with --distributed).")
@click.option("--process-id", type=int, help="This process's index (with --distributed).")
def run(config, patients, seed, chunk_size, out, force, resume, quiet, devices, distributed,
        coordinator, num_processes, process_id):
    """Simulate the study in CONFIG and print a summary per arm.

    Writes OUT/patients/part-*.parquet (one row per patient and arm, one part per chunk,
    written as chunks finish), OUT/summary.parquet (BMD),
    OUT/outcomes.parquet (fractures, deaths, RR, NNT per arm and subgroup),
    OUT/cumulative.parquet, OUT/tscores.parquet, OUT/manifest.json (config, its hash,
    seed, package versions, devices, wall time) and OUT/report.html (plots; see
    `bonecohort report`). A progress bar shows on a terminal unless --quiet.

    Example: bonecohort run configs/default.toml --patients 20000 --seed 7 --out runs/try

    Several machines: start the same command with --distributed on each (for example
    `srun bonecohort run study.toml --distributed --out /shared/runs/x`), then run
    `bonecohort summarize /shared/runs/x`.
    """
    from bonecohort.shell.runner import (
        SimulationError,
        run_distributed_process,
        run_study,
    )

    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    try:
        study = load_study(config).with_overrides(patients, seed, chunk_size)
        out = out or Path("runs") / study.name
        log(f"study '{study.name}': {study.patients:,} patients, {len(study.arms)} arms, "
            f"{study.horizon_years} y horizon, {study.dtype}")
        if not distributed and (coordinator or num_processes or process_id is not None):
            raise ConfigError("--coordinator, --num-processes and --process-id need "
                              "--distributed.")
        if distributed:
            if force or resume:
                raise ConfigError("--distributed: --force and --resume do not apply (rerun "
                                  "the same command to resume; choose a new --out to restart).")
            with progress_bar(study.patients, quiet) as progress:
                index, count, _ = run_distributed_process(
                    study, out, log=log, progress=progress, devices=devices,
                    coordinator=coordinator, num_processes=num_processes,
                    process_id=process_id)
            click.echo(f"Process {index} of {count} finished its chunks in {out}/; when every "
                       f"process has finished: bonecohort summarize {out}")
            return
        with progress_bar(study.patients, quiet) as progress:
            results = run_study(study, out, force=force, log=log, progress=progress,
                                resume=resume, devices=devices)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except SimulationError as exc:
        click.echo(f"simulation failed: {exc}", err=True)
        sys.exit(3)
    _print_results(study, results, out)


def _print_results(study, results, out):
    from bonecohort.shell.summarize import agent_notes, format_summary, headline
    click.echo(f"Study '{study.name}' ({study.patients:,} patients, seed {study.seed}); "
               f"BMD % change from entry (mean) and share with femoral-neck T-score <= -2.5:")
    click.echo(format_summary(results["summary"]))
    by_age = study.outcomes.by_age
    click.echo(f"Fractures per 1000 patients by age {by_age:g} (or the horizon), sampled with "
               f"common random numbers; RR and NNT vs '{study.reference_arm}' (paired 95 % "
               f"intervals); mean expected 10-year probabilities from entry:")
    click.echo(format_summary(headline(results["outcomes"], by_age, study.horizon_years)))
    notes = agent_notes(study.arms)
    if notes:
        click.echo("Agents used:")
        click.echo("\n".join(notes))
    click.echo(f"Results written to {out}/")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
def summarize(run_dir, quiet):
    """Summaries, manifest and report of a run made by several processes (`run
    --distributed`), once all have finished: reads the partitioned dataset
    RUN_DIR/patients/*.parquet and writes the same files as `run`.

    Example: bonecohort summarize /shared/runs/x
    """
    from bonecohort.shell.runner import summarize_run

    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    try:
        study, results = summarize_run(run_dir, log)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _print_results(study, results, run_dir)


@main.command()
@click.option("--sources", is_flag=True, help="Also print each route's exposure source.")
def agents(sources):
    """List every agent: mechanism, routes with dose units and plausible ranges, evidence
    grade and sources.

    Example: bonecohort agents --sources
    """
    from bonecohort.exposure.agents import AGENTS_LIST

    for agent in AGENTS_LIST:
        click.echo(f"{agent.name}  [{agent.kind}]")
        click.echo(f"  mechanism: {agent.mechanism}")
        for route_name, route in agent.routes.items():
            ranges = "; ".join(f"{'women' if sex == 'female' else 'men'} {lo:g}-{hi:g}"
                               for sex, (lo, hi) in route.dose_range.items())
            click.echo(f"  route {route_name}: {route.dose_unit} ({ranges})")
            if sources:
                click.echo(f"    exposure: {route.pk}")
        click.echo(f"  evidence: {agent.evidence}")
        click.echo(f"  sources: {agent.sources}")
        if agent.warning:
            click.echo(f"  WARNING: {agent.warning}")
        click.echo("")


@main.command()
@click.option("--age", type=click.FloatRange(50, 90), required=True, help="Age in years.")
@click.option("--sex", type=click.Choice(["female", "male"]), default="female",
              show_default=True)
@click.option("--tscore", type=click.FloatRange(-6, 4), required=True,
              help="Femoral-neck T-score (NHANES III white women reference).")
def risk(age, sex, tscore):
    """FRAX-style 10-year probability of a hip and of a major osteoporotic fracture for a
    patient without other clinical risk factors, at average turnover, competing with death.

    Uses the default model, the tables in configs/epidemiology and the model's untreated
    reference population (outcomes.py).

    Example: bonecohort risk --age 65 --sex female --tscore -2.5
    """
    import jax.numpy as jnp

    from bonecohort.cohort import cast_tree
    from bonecohort.config import OutcomeOptions
    from bonecohort.fit.parameters import default_model
    from bonecohort.outcomes.hazards import frax_style_probability
    from bonecohort.reference_cache import outcome_setup

    setup = cast_tree(outcome_setup(OutcomeOptions(), default_model())._replace(
        probability_ages=()), jnp.float64)
    hip, mof = frax_style_probability(age, int(sex == "male"), tscore, setup)
    click.echo(f"{sex}, age {age:g}, femoral-neck T-score {tscore:g}: 10-year probability of "
               f"hip fracture {100 * float(hip):.1f} %, of a major osteoporotic fracture "
               f"{100 * float(mof):.1f} %")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def report(run_dir):
    """Write RUN_DIR/report.html: a self-contained HTML report of a finished run (BMD
    trajectories, cumulative fracture incidence, T-score distributions, relative risks, the
    study config and manifest, evidence grades and a caution). `run` writes it too.

    Example: bonecohort report runs/default
    """
    from bonecohort.shell.report import write_report

    missing = [f for f in ("manifest.json", "outcomes.parquet", "cumulative.parquet")
               if not (run_dir / f).is_file()]
    if not list((run_dir / "patients").glob("*.parquet")):
        missing.append("patients/*.parquet")
    if missing:
        click.echo(f"error: {run_dir}: not a finished run directory (missing "
                   f"{', '.join(missing)}).", err=True)
        sys.exit(2)
    import polars as pl

    try:
        path = write_report(run_dir)
    except (OSError, ValueError, KeyError, ConfigError, pl.exceptions.PolarsError) as exc:
        click.echo(f"error: {run_dir}: cannot build the report from this run ({exc}).",
                   err=True)
        sys.exit(2)
    click.echo(f"Report written to {path}")


@main.command()
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table (.parquet or .csv).")
def compare(runs, out):
    """One table of fracture outcomes across RUNS (directories of finished runs), which must
    share population, eligibility, patients and seed (common random numbers make the
    comparison paired); runs that differ are refused.

    Example: bonecohort compare runs/mht_timing runs/serm_vs_mht
    """
    from bonecohort.shell.compare import CompareError, compare_runs
    from bonecohort.shell.summarize import format_summary

    try:
        table = compare_runs(runs)
        if out is not None:
            if out.suffix not in (".parquet", ".csv"):
                raise CompareError(f"{out}: --out must end in .parquet or .csv.")
            (table.write_parquet if out.suffix == ".parquet" else table.write_csv)(out)
    except CompareError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(format_summary(table))


def _sizes(ctx, param, value):
    try:
        return tuple(int(float(v)) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give sizes like 1e4,1e5,1e6") from None


@main.command()
@click.option("--sizes", default="1e4,1e5,1e6", callback=_sizes, show_default=True,
              help="Cohort sizes N for the full-model workload.")
@click.option("--large", is_flag=True, help="Also N = 1e7.")
@click.option("--dtypes", default="float32,float64", show_default=True)
@click.option("--chunk", default=100_000, show_default=True, help="Patients per chunk.")
@click.option("--natural-n", default=10_000, show_default=True,
              help="Patients for this engine on the one-site and core workloads.")
@click.option("--diffrax-n", default=64, show_default=True,
              help="Patients for each diffrax solver (vmapped).")
@click.option("--scipy-n", default=16, show_default=True,
              help="Patients solved one at a time by scipy LSODA and by bone_models.")
@click.option("--no-peers", is_flag=True, help="Skip diffrax, scipy and bone_models.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              help="Study whose chunk is the full-model workload (default: configs/default.toml).")
@click.option("--out", default="benchmarks/results", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the JSON result.")
def bench(sizes, large, dtypes, chunk, natural_n, diffrax_n, scipy_n, no_peers, config, out):
    """Measure patient-years per second and peak memory of the full default model at several
    cohort sizes and dtypes, and, on the same workloads, diffrax (Tsit5, Kvaerno5), scipy
    LSODA and the bone_models Pivonka model, each with its error against a float64 Radau
    reference. Prints a table of speed-ups and writes JSON with device information to OUT.
    Peers need the 'bench' extra: pip install -e '.[bench]'.

    Example: bonecohort bench --sizes 1e4,1e5 --dtypes float32
    """
    from bonecohort.shell.bench import (
        BenchOptions,
        format_result,
        run_bench,
        write_result,
    )

    names = tuple(d.strip() for d in dtypes.split(",") if d.strip())
    bad = [d for d in names if d not in ("float32", "float64")]
    if bad or not names:
        click.echo(f"error: --dtypes {dtypes!r}: use float32 and/or float64.", err=True)
        sys.exit(2)
    opts = BenchOptions(sizes=sizes + ((10_000_000,) if large else ()), dtypes=names,
                        chunk=chunk, peers=not no_peers, natural_n=natural_n,
                        diffrax_n=diffrax_n, scipy_n=scipy_n,
                        **({"config": config} if config else {}))
    try:
        result = run_bench(opts, log=lambda m: click.echo(m, err=True))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ImportError as exc:
        click.echo(f"error: a peer solver is not installed ({exc}); install the bench extra "
                   "(pip install -e '.[bench]') or pass --no-peers.", err=True)
        sys.exit(2)
    click.echo(format_result(result))
    click.echo(f"written: {write_result(result, out)}")


@contextmanager
def _bad_input_exits(path):
    """Bad input (ConfigError, or a ValueError / OSError while reading ``path``) ends the
    command with one error paragraph and exit code 2."""
    try:
        yield
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (ValueError, OSError) as exc:
        click.echo(f"error: {path}: {exc}", err=True)
        sys.exit(2)


def _persistent_compilation_cache():
    """Keep compiled programs between processes (JAX's persistent cache) under
    ``cache_dir()/jax``, unless ``JAX_COMPILATION_CACHE_DIR`` already names one: the virtual
    trials' gradient programs take minutes to compile."""
    import os

    import jax

    from bonecohort.reference_cache import cache_dir

    where = os.environ.get("JAX_COMPILATION_CACHE_DIR") or (
        cache_dir() and str(cache_dir() / "jax"))
    if where:
        jax.config.update("jax_compilation_cache_dir", where)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)


def _model_from(params):
    """The default model, or the hand-set constants with a parameter file applied."""
    from bonecohort.fit.parameters import default_model, load_parameters
    from bonecohort.model.params import hand_set_model

    return default_model() if params is None else load_parameters(params, hand_set_model())


def _check_patients(patients):
    if patients is not None and not 1 <= patients <= 10**6:
        raise ConfigError(f"--patients {patients}: must be between 1 and 1,000,000.")


PARAMS_HELP = ("Parameter file (written by `calibrate`) applied to the hand-set constants "
               "(default: the shipped calibration, src/bonecohort/parameters/public.toml).")


@main.command()
@click.argument("targets", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--params", type=click.Path(dir_okay=False, path_type=Path), help=PARAMS_HELP)
@click.option("--patients", type=int, help="Patients per trial (overrides the file).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for validation.parquet, validation.csv and validation.svg "
              "(default: runs/validate-<target set name>).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the table.")
def validate(targets, params, patients, out, quiet):
    """Simulate the virtual trials of a TARGETS file (configs/targets/public.toml documents
    the format) and print one row per target: observed, simulated, difference, z-score and
    whether it lies within its tolerance. Writes the table (parquet and CSV) and a plot of
    simulated against observed values.

    Example: bonecohort validate configs/targets/public.toml --patients 500
    """
    from bonecohort.fit.targets import load_targets
    from bonecohort.shell.validate import (
        format_table,
        plot_validation,
        validation_table,
    )

    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    _persistent_compilation_cache()
    with _bad_input_exits(targets):
        ts = load_targets(targets)
        _check_patients(patients)
        model = _model_from(params)
        out = out or Path("runs") / f"validate-{ts.name}"
        out.mkdir(parents=True, exist_ok=True)
        table = validation_table(ts, model, patients=patients, log=log)
    table.write_parquet(out / "validation.parquet")
    table.write_csv(out / "validation.csv")
    plot_validation(table, out / "validation.svg")
    click.echo(format_table(table))
    click.echo(f"written: {out}/validation.parquet, validation.csv, validation.svg")


@main.command()
@click.argument("targets", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Parameter file to write (TOML), e.g. configs/parameters/NAME.toml.")
@click.option("--start", type=click.Path(dir_okay=False, path_type=Path),
              help="Parameter file to start from (default: the hand-set constants).")
@click.option("--free", "free", default=None,
              help="Comma-separated constants to fit, e.g. hormones.rho_L,"
              "sites.turnover.lumbar_spine (default: the 15 of parameters.DEFAULT_FREE).")
@click.option("--patients", type=int, default=128, show_default=True,
              help="Patients per trial (overrides the file).")
@click.option("--steps", type=int, default=150, show_default=True, help="Adam steps.")
@click.option("--learning-rate", type=float, default=0.05, show_default=True,
              help="Adam step size on the unconstrained (log / logit) coordinates.")
@click.option("--prior-sd", type=float, default=1.0, show_default=True,
              help="SD of the Gaussian prior around the start on the unconstrained "
              "coordinates; 0 turns the prior off.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32",
              show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing OUT file.")
def calibrate(targets, out, start, free, patients, steps, learning_rate, prior_sd, dtype,
              force):
    """Fit the uncertain constants to the TARGETS file by gradients through the virtual
    trials (jax.grad, optax Adam) on a fixed virtual population, print progress, and write the
    fitted constants with provenance (targets hash, loss before and after, optimizer, date,
    package versions) to OUT.

    Example: bonecohort calibrate configs/targets/public.toml --out configs/parameters/my.toml
    """
    import jax.numpy as jnp

    from bonecohort.fit.calibrate import Objective, fit, parse_free, provenance
    from bonecohort.fit.parameters import DEFAULT_FREE, format_parameters
    from bonecohort.fit.targets import load_targets
    from bonecohort.model.params import hand_set_model

    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    _persistent_compilation_cache()
    try:
        with _bad_input_exits(targets):
            if out.exists() and not force:
                raise ConfigError(f"--out {out}: exists; pass --force to replace it.")
            if steps < 0 or not learning_rate > 0 or prior_sd < 0:
                raise ConfigError("--steps must be >= 0, --learning-rate > 0 and "
                                  "--prior-sd >= 0.")
            _check_patients(patients)
            ts = load_targets(targets).with_patients(patients)
            model = _model_from(start) if start else hand_set_model()
            try:
                frees = DEFAULT_FREE if free is None else parse_free(free, model)
            except ValueError as exc:
                raise ConfigError(f"--free: {exc}.") from None
            dt = jnp.dtype(dtype)
            objective = Objective(ts, model, frees, dt, prior_sd or None, log)
            result = fit(objective, steps, learning_rate, log)
    except FloatingPointError as exc:
        click.echo(f"error: calibration failed: {exc}", err=True)
        sys.exit(1)
    text = format_parameters(result.model, frees,
                             provenance(ts, result, objective, learning_rate, dt,
                                        str(start) if start else "the hand-set constants"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    click.echo(f"loss {result.loss_start:.4g} -> {result.loss:.4g}; targets within tolerance "
               f"{result.fits_start} -> {result.fits} of {len(ts.targets)}")
    click.echo(f"written: {out}")
