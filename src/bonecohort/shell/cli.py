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

    Example: bonecohort run default --patients 10000 --out runs/demo  (a study shipped
    with the package, or the path of a study file)
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
@click.option("--chunk-size", type=int, help="Patients per chunk (one parquet part each; "
              "results do not depend on it). A CPU computes whole blocks of patients "
              "(README, Scale: devices, machines, benchmarks), so a chunk far smaller "
              "than a block wastes work.")
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
@click.option("--parameter-draws", type=int, default=0, show_default=True,
              help="Also simulate the study under K draws of the fitted constants from the "
              "shipped fit's posterior (common random numbers): every summary gains an "
              "uncertainty interval beside the Monte Carlo one; per-draw tables in OUT.")
@click.option("--coordinator", help="host:port of process 0 (with --distributed).")
@click.option("--num-processes", type=int, help="Number of processes (with --distributed).")
@click.option("--process-id", type=int, help="This process's index (with --distributed).")
def run(config, patients, seed, chunk_size, out, force, resume, quiet, devices, distributed,
        parameter_draws, coordinator, num_processes, process_id):
    """Simulate the study in CONFIG and print a summary per arm.

    Writes OUT/patients/part-*.parquet (one row per patient and arm, one part per chunk,
    written as chunks finish), OUT/summary.parquet (BMD),
    OUT/outcomes.parquet (fractures, deaths, RR, NNT per arm and subgroup),
    OUT/cumulative.parquet, OUT/tscores.parquet, OUT/manifest.json (config, its hash,
    seed, package versions, devices, wall time) and OUT/report.html (plots; see
    `bonecohort report`). A progress bar shows on a terminal unless --quiet.

    The run works in .OUT.partial beside OUT, renamed to OUT when complete, and holds the
    lock file .OUT.lock meanwhile: a second run aimed at OUT is refused.

    Example: bonecohort run configs/default.toml --patients 20000 --seed 7 --out runs/try

    Several machines: start the same command with --distributed on each (for example
    `srun bonecohort run study.toml --distributed --out /shared/runs/x`), then run
    `bonecohort summarize /shared/runs/x`.

    Exit codes: 0 done; 2 bad config or options, or OUT in use by another run; 3 NaN or inf
    in the simulation (nothing kept); 4 a file could not be written or read (disk full,
    permission lost, a corrupt part): the message names it, the unfinished run is kept in
    .OUT.partial, and --resume continues it once the cause is fixed.
    """
    from bonecohort.shell.cli_fit import _persistent_compilation_cache, command_errors
    from bonecohort.shell.distributed import run_distributed_process
    from bonecohort.shell.runner import run_study

    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    _persistent_compilation_cache()
    with command_errors():
        study = load_study(config).with_overrides(patients, seed, chunk_size)
        out = out or Path("runs") / study.name
        log(f"study '{study.name}': {study.patients:,} patients, {len(study.arms)} arms, "
            f"{study.horizon_years} y horizon, {study.dtype}")
        if not distributed and (coordinator or num_processes or process_id is not None):
            raise ConfigError("--coordinator, --num-processes and --process-id need "
                              "--distributed.")
        draws = _parameter_draws(parameter_draws, distributed)
        if distributed:
            if force or resume:
                raise ConfigError("--distributed: --force and --resume do not apply (rerun "
                                  "the same command to resume; choose a new --out to restart).")
            with progress_bar(study.patients, quiet) as progress:
                index, count, _ = run_distributed_process(
                    study, out, log=log, progress=progress, devices=devices,
                    coordinator=coordinator, num_processes=num_processes,
                    process_id=process_id, parameter_draws=draws)
            click.echo(f"Process {index} of {count} finished its chunks in {out}/; when every "
                       f"process has finished: bonecohort summarize {out}")
            return
        with progress_bar(study.patients, quiet) as progress:
            results = run_study(study, out, force=force, log=log, progress=progress,
                                resume=resume, devices=devices, parameter_draws=draws)
    _print_results(study, results, out)


def _parameter_draws(k: int, distributed: bool):
    """(posterior, k, source) for ``--parameter-draws k`` (None for 0); a distributed
    process gets (None, k, source) and loads the posterior after jax.distributed starts."""
    from bonecohort.shell.draws import SHIPPED_SOURCE, check_draws, posterior_of

    if not check_draws(k):
        return None
    return (None if distributed else posterior_of()), k, SHIPPED_SOURCE


UI_NOTE = (" and [uncertainty intervals]: Monte Carlo and the fitted constants' posterior "
           "together (parameter draws)")


def _print_results(study, results, out):
    from bonecohort.shell.summarize import agent_notes, format_summary, headline
    click.echo(f"Study '{study.name}' ({study.patients:,} patients, seed {study.seed}); "
               f"BMD % change from entry (mean) and share with femoral-neck T-score <= -2.5:")
    summary = results["summary"]
    ui = [c for c in summary.columns if "_ui_" in c]
    click.echo(format_summary(summary.drop(ui)))
    if ui:
        click.echo(f"(uncertainty intervals of these BMD changes, parameter draws: {out}/"
                   "summary.parquet, columns *_ui_lo, *_ui_hi)")
    by_age = study.outcomes.by_age
    click.echo(f"Fractures per 1000 patients by age {by_age:g} (or the horizon), sampled with "
               f"common random numbers; RR and NNT vs '{study.reference_arm}' (paired 95 % "
               f"intervals){UI_NOTE if 'hip_rr_ui_lo' in results['outcomes'].columns else ''}"
               f"; mean expected 10-year probabilities from entry:")
    click.echo(format_summary(headline(results["outcomes"], by_age, study.horizon_years)))
    _print_balance(study, results)
    notes = agent_notes(study.arms, study.economics.drug_costs)
    if notes:
        click.echo("Agents used:")
        click.echo("\n".join(notes))
    click.echo(f"Results written to {out}/")


def _print_balance(study, results):
    from bonecohort.shell.balance import balance_sheet, economics_rows
    from bonecohort.shell.summarize import format_summary
    sheet = balance_sheet(results["outcomes"], study.reference_arm)
    if not sheet.is_empty():
        click.echo(f"Benefit-harm balance over {study.horizon_years} y: first events per 1000 "
                   f"(95 % interval); other arms: paired difference from '{study.reference_arm}'"
                   " (+ caused, - prevented):")
        click.echo(format_summary(sheet))
    econ = results.get("economics")
    if econ is not None and not econ.is_empty():
        e = study.economics
        click.echo(f"Cost-effectiveness per patient ({e.currency}, price years {e.currency_year}; "
                   f"discounted {e.discount_costs:.0%} costs, {e.discount_effects:.0%} effects "
                   f"a year; d = vs '{study.reference_arm}'; NMB at {e.willingness_to_pay:,.0f}"
                   " per QALY):")
        click.echo(format_summary(economics_rows(econ)))


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
def summarize(run_dir, quiet):
    """Summaries, manifest and report of a run made by several processes (`run
    --distributed`), once all have finished: reads the partitioned dataset
    RUN_DIR/patients/*.parquet and writes the same files as `run`.

    Refused while a process of the run still holds RUN_DIR's lock, or if a part in
    RUN_DIR/patients belongs to another run. Exit codes as for `run`.

    Example: bonecohort summarize /shared/runs/x
    """
    from bonecohort.shell.cli_fit import command_errors
    from bonecohort.shell.distributed import summarize_run

    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    with command_errors():
        study, results = summarize_run(run_dir, log)
    _print_results(study, results, run_dir)


@main.command()
@click.option("--sources", is_flag=True, help="Also print each route's exposure source and "
              "the hazard ratios of its harms with their sources.")
def agents(sources):
    """List every agent: mechanism, routes with dose units and plausible ranges, evidence
    grade and sources; with --sources, also the harm outcomes' hazard ratios (evidence grade
    and source; data/epidemiology/harms/harm_effects.csv).

    Example: bonecohort agents --sources
    """
    from bonecohort.exposure.agents import AGENTS_LIST
    from bonecohort.outcome_inputs import harm_sources

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
        if sources:
            harms = harm_sources(agent.name)
            click.echo("  harms (hazard ratio while taken unless stated; others 1): "
                       + ("none found" if not harms else ""))
            for line in harms:
                click.echo(f"    {line}")
        if agent.warning:
            click.echo(f"  WARNING: {agent.warning}")
        click.echo("")


@main.command()
@click.option("--age", type=click.FloatRange(50, 90), required=True, help="Age in years.")
@click.option("--sex", type=click.Choice(["female", "male"]), default="female",
              show_default=True)
@click.option("--tscore", type=click.FloatRange(-6, 4), required=True,
              help="Femoral-neck T-score by the patient's sex's reference (NHANES III white "
              "women or men aged 20-29).")
def risk(age, sex, tscore):
    """FRAX-style 10-year probability of a hip and of a major osteoporotic fracture for a
    patient without other clinical risk factors, at average turnover, competing with death.

    Uses the default model, the shipped tables (bonecohort/data/epidemiology) and the
    model's untreated reference population (outcomes/reference.py).

    Example: bonecohort risk --age 65 --sex female --tscore -2.5
    """
    from bonecohort.fit.parameters import default_model
    from bonecohort.reference_cache import ten_year_probability

    hip, mof = ten_year_probability(default_model(), age, sex == "male", tscore)
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
    from bonecohort.io import RunDir
    from bonecohort.shell.report import write_report

    run = RunDir(run_dir)
    missing = [p.name for p in (run.manifest, run.summary("outcomes"), run.summary("cumulative"))
               if not p.is_file()]
    if not run.parts():
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


def _register():
    from bonecohort.shell.cli_bench import bench
    from bonecohort.shell.cli_crossval import crossvalidate
    from bonecohort.shell.cli_posterior import posterior
    from bonecohort.shell.cli_fit import calibrate, validate

    for command in (bench, validate, calibrate, crossvalidate, posterior):
        main.add_command(command)


_register()
