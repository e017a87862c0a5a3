"""``bonecohort crossvalidate``: leave-one-trial-out cross-validation of a fit (fit/crossval.py)."""

from __future__ import annotations

from pathlib import Path

import click

from bonecohort.config import ConfigError
from bonecohort.shell.cli_fit import (
    _bad_input_exits,
    _check_patients,
    _model_from,
    _persistent_compilation_cache,
    command_errors,
)

CROSSVAL_FILES = ("crossval.parquet", "crossval.csv")


@click.command("crossvalidate")
@click.argument("targets", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fitted", type=click.Path(dir_okay=False, path_type=Path),
              help="The all-trials fit (parameter file; default: the shipped calibration).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for crossval.parquet and crossval.csv (default: "
              "runs/crossval-<target set name>).")
@click.option("--patients", type=int, default=128, show_default=True,
              help="Patients per trial (as in the fit).")
@click.option("--seed", type=int, default=None,
              help="Seed of every trial's virtual patients (overrides the file, as in "
              "validate): the folds refit on other patients than the fit's.")
@click.option("--steps", type=int, default=80, show_default=True,
              help="Adam steps of each fold (with --optimizer lm: its most accepted steps).")
@click.option("--optimizer", type=click.Choice(["adam", "lm"]), default="adam",
              show_default=True, help="As in calibrate; lm takes each fold to its own mode, "
              "so that cold and --warm folds agree.")
@click.option("--warm", is_flag=True, help="Start each fold from the all-trials fit (cheaper, "
              "biased toward in-sample if cut short) instead of the hand-set constants.")
@click.option("--learning-rate", type=float, default=0.05, show_default=True)
@click.option("--prior-sd", type=float, default=1.0, show_default=True,
              help="As in calibrate (prior centred on the hand-set constants).")
@click.option("--trials", default=None, help="Comma-separated trials to hold out (default: "
              "each trial with targets in turn).")
@click.option("--parameter-draws", type=int, default=0, show_default=True,
              help="Also give each target a 90 % posterior predictive interval in sample (the "
              "all-trials fit's Laplace posterior) and held out (each fold's), from K draws "
              "of the constants (seed 0).")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
def crossvalidate(targets, fitted, out, patients, seed, steps, optimizer, warm, learning_rate,
                  prior_sd, trials, parameter_draws, force):
    """Leave-one-trial-out cross-validation: for each trial of TARGETS, refit the constants
    without it (from the hand-set constants as the fit itself, or with --warm from the
    all-trials fit; prior centred on the hand-set constants) and predict its targets. Prints and writes one row per target with its in-sample and held-out
    values and whether each lies within tolerance.

    Example: bonecohort crossvalidate configs/targets/public.toml --steps 80
    """
    import jax.numpy as jnp

    from bonecohort.fit.calibrate import Objective
    from bonecohort.fit.crossval import cross_validate, predictive, simulated
    from bonecohort.fit.parameters import DEFAULT_FREE, to_theta
    from bonecohort.fit.targets import load_targets
    from bonecohort.io import output_dir
    from bonecohort.model.params import hand_set_model
    from bonecohort.shell.draws import check_draws

    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    _persistent_compilation_cache()
    with _bad_input_exits(targets), command_errors():
        if steps < 0 or not learning_rate > 0 or prior_sd < 0:
            raise ConfigError("--steps must be >= 0, --learning-rate > 0 and --prior-sd >= 0.")
        _check_patients(patients)
        check_draws(parameter_draws)
        ts = load_targets(targets).with_patients(patients).with_seed(seed)
        names = [n.strip() for n in trials.split(",")] if trials else None
        unknown = sorted(set(names or ()) - set(ts.trials))
        if unknown:
            raise ConfigError(f"--trials: no trial {', '.join(unknown)} in {targets} (trials: "
                              f"{', '.join(ts.trials)}).")
        theta = to_theta(_model_from(fitted), DEFAULT_FREE)
        objective = Objective(ts, hand_set_model(), DEFAULT_FREE, jnp.float32,
                              prior_sd or None, log)
        shared = None  # warm LM folds start from the all-trials fit's Jacobian
        if optimizer == "lm" and warm:
            from bonecohort.fit.least_squares import simulate_with_jacobian

            shared = simulate_with_jacobian(objective, theta)
        in_sample = shared[0] if shared else simulated(objective, theta, optimizer)
        folds = cross_validate(objective, theta if warm else None, steps, learning_rate, log,
                               names, optimizer, shared)
        intervals = None
        if parameter_draws:
            log("predictive intervals: curvature at the all-trials fit, "
                f"{parameter_draws} draws per posterior")
            intervals = predictive(objective, theta, folds, parameter_draws, 0)
        table = _table(objective, in_sample, folds, intervals)
        out = out or Path("runs") / f"crossval-{ts.name}"
        with output_dir(out, force, rerun="run the same command again") as work:
            _write(table, work)
    click.echo(format_crossval(table))
    click.echo(f"written: {out}/{', '.join(CROSSVAL_FILES)}")


def _table(objective, in_sample, folds, intervals=None):
    import polars as pl

    from bonecohort.fit.crossval import fold_table

    return pl.DataFrame(fold_table(objective, in_sample, folds, intervals))


def _write(table, folder: Path):
    from bonecohort.io import atomic_write, write_parquet

    write_parquet(folder / CROSSVAL_FILES[0], table)
    atomic_write(folder / CROSSVAL_FILES[1], table.write_csv())


def format_crossval(table) -> str:
    """One line per target and a summary of in-sample and held-out fractions by kind."""
    lines = [f"{'id':<6} {'trial':<22} {'observed':>9} {'in-sample':>10} {'held-out':>9}  "
             "fits in / out"]
    for r in table.iter_rows(named=True):
        lines.append(f"{r['id']:<6} {r['trial']:<22} {r['observed']:>9.2f} "
                     f"{r['in_sample']:>10.2f} {r['held_out']:>9.2f}  "
                     f"{'yes' if r['fits_in_sample'] else 'no':>4} / "
                     f"{'yes' if r['fits_held_out'] else 'no'}")
    for label, bmd in (("BMD targets", True), ("fracture targets", False)):
        part = [r for r in table.iter_rows(named=True)
                if (r["measure"] not in FRACTURE_MEASURES) == bmd]
        if part:
            n_in = sum(r["fits_in_sample"] for r in part)
            n_out = sum(r["fits_held_out"] for r in part)
            lines.append(f"{label}: in sample {n_in} of {len(part)} "
                         f"({100 * n_in / len(part):.0f} %), held out {n_out} of {len(part)} "
                         f"({100 * n_out / len(part):.0f} %)")
    if "inside_pi_held_out" in table.columns:
        n = table.height
        n_in, n_out = (int(table[c].sum()) for c in ("inside_pi_in_sample", "inside_pi_held_out"))
        lines.append(f"inside their 90 % posterior predictive interval: in sample {n_in} of {n} "
                     f"({100 * n_in / n:.0f} %), held out {n_out} of {n} "
                     f"({100 * n_out / n:.0f} %)")
    return "\n".join(lines)


FRACTURE_MEASURES = ("hazard_ratio", "cumulative_risk", "lifetime_risk")
