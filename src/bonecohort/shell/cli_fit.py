"""Command-line commands that fit and check the model: ``validate`` and ``calibrate``."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click

from bonecohort.config import ConfigError


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


@contextmanager
def command_errors():
    """The errors of `run`, `summarize` and `validate` as one paragraph and an exit code: 2 bad
    input or an output directory refused (in use by another run, existing, of another run), 3
    NaN or inf in a simulation, 4 a file that cannot be written or read; no traceback. (Here
    rather than in cli.py, which imports this module.)"""
    from bonecohort.io import Refused, RunIOError
    from bonecohort.shell.runner import SimulationError

    try:
        yield
    except (ConfigError, Refused) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except SimulationError as exc:
        click.echo(f"simulation failed: {exc}", err=True)
        sys.exit(3)
    except RunIOError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(4)


def _persistent_compilation_cache():
    """Keep compiled programs between processes (JAX's persistent cache) under
    ``cache_dir()/jax``, unless ``JAX_COMPILATION_CACHE_DIR`` already names one: the virtual
    trials' gradient programs take minutes to compile, a study's chunk program 10-30 s (a
    second run of the same study structure loads it; ``BONECOHORT_CACHE=off``: no cache)."""
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


def _posterior_for_draws(params, k: int):
    """The posterior of ``params`` (default: the shipped fit) to draw ``k`` times from, or
    None for k = 0; a ConfigError where the file has none."""
    from bonecohort.shell.draws import check_draws, posterior_of

    return posterior_of(params) if check_draws(k) else None


def _check_patients(patients):
    if patients is not None and not 1 <= patients <= 10**6:
        raise ConfigError(f"--patients {patients}: must be between 1 and 1,000,000.")


PARAMS_HELP = ("Parameter file (written by `calibrate`) applied to the hand-set constants "
               "(default: the shipped calibration, bonecohort/data/parameters/public.toml).")


@click.command()
@click.argument("targets", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--params", type=click.Path(dir_okay=False, path_type=Path), help=PARAMS_HELP)
@click.option("--patients", type=int, help="Patients per trial (overrides the file).")
@click.option("--seed", type=int, help="Seed of every trial's virtual patients (overrides "
              "the file; the same seed gives the same patients).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for validation.parquet, validation.csv and validation.svg "
              "(default: runs/validate-<target set name>).")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--parameter-draws", type=int, default=0, show_default=True,
              help="Also simulate the trials under K draws of the constants from the "
              "parameter file's [posterior] (seed: --seed, else 0): a 90 % predictive interval "
              "per target (pi_lo, pi_hi, inside_pi).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the table.")
def validate(targets, params, patients, seed, out, force, parameter_draws, quiet):
    """Simulate the virtual trials of a TARGETS file (configs/targets/public.toml documents
    the format) and print one row per target: observed, simulated, difference, z-score and
    whether it lies within its tolerance. Writes the table (parquet and CSV) and a plot of
    simulated against observed values into OUT, with the output rules of `run`: an existing
    OUT is refused without --force, and the files are written in .OUT.partial, renamed to OUT
    when complete. Exit codes as for `run`.

    Example: bonecohort validate configs/targets/public.toml --patients 500 --seed 7
    """
    from bonecohort.fit.targets import load_targets
    from bonecohort.io import output_dir
    from bonecohort.shell.curves import trial_curves
    from bonecohort.shell.validate import (
        format_table,
        predictive_intervals,
        simulate_trials,
        validation_table,
        write_validation,
    )

    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    _persistent_compilation_cache()
    with _bad_input_exits(targets), command_errors():
        ts = load_targets(targets).with_seed(seed)
        _check_patients(patients)
        model = _model_from(params)
        post = _posterior_for_draws(params, parameter_draws)
        out = out or Path("runs") / f"validate-{ts.name}"
        with output_dir(out, force, rerun="run the same command again") as work:
            ts, results = simulate_trials(ts, model, patients, log)
            table = validation_table(ts, results=results)
            if post is not None:
                table = predictive_intervals(ts, table, post, parameter_draws, seed or 0,
                                             patients, log, model)
            written = write_validation(table, work, trial_curves(ts, results), ts)
    click.echo(format_table(table))
    click.echo(f"written: {out}/{', '.join(written)}")


@click.command()
@click.argument("targets", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Parameter file to write (TOML), e.g. configs/parameters/NAME.toml.")
@click.option("--start", type=click.Path(dir_okay=False, path_type=Path),
              help="Parameter file to start from (default: the hand-set constants).")
@click.option("--init", type=click.Path(dir_okay=False, path_type=Path),
              help="Parameter file whose constants the optimizer starts from (a warm start); "
              "the prior stays centred on --start.")
@click.option("--free", "free", default=None,
              help="Comma-separated constants to fit, e.g. hormones.rho_L,"
              "sites.turnover.lumbar_spine (default: parameters.DEFAULT_FREE).")
@click.option("--patients", type=int, default=128, show_default=True,
              help="Patients per trial (overrides the file).")
@click.option("--steps", type=int, default=150, show_default=True,
              help="Adam steps (with --optimizer lm: its most accepted steps).")
@click.option("--optimizer", type=click.Choice(["adam", "lm"]), default="adam",
              show_default=True, help="adam, or lm: Levenberg-Marquardt to the mode "
              "(fit/least_squares.py; ~10-20 steps, each a run of one Jacobian program per "
              "trial group).")
@click.option("--learning-rate", type=float, default=0.05, show_default=True,
              help="Adam step size on the unconstrained (log / logit) coordinates.")
@click.option("--prior-sd", type=float, default=1.0, show_default=True,
              help="SD of the Gaussian prior around the start on the unconstrained "
              "coordinates; 0 turns the prior off.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32",
              show_default=True)
@click.option("--holdout", default=None,
              help="Comma-separated trials left out of the fit; their targets are predicted "
              "and printed after it (leave-one-trial-out: `bonecohort crossvalidate`).")
@click.option("--posterior/--no-posterior", default=True, show_default=True,
              help="Add the Laplace posterior at the fit ([posterior], `bonecohort posterior`): "
              "2 x (constants) more gradient evaluations, no new compilation.")
@click.option("--force", is_flag=True, help="Replace an existing OUT file.")
def calibrate(targets, out, start, init, free, patients, steps, optimizer, learning_rate,
              prior_sd, dtype, holdout, posterior, force):
    """Fit the uncertain constants to the TARGETS file by gradients through the virtual
    trials (jax.grad, optax Adam) on a fixed virtual population, print progress, and write the
    fitted constants with provenance (targets hash, loss before and after, optimizer, date,
    package versions) to OUT.

    Example: bonecohort calibrate configs/targets/public.toml --out configs/parameters/my.toml
    """
    import jax.numpy as jnp

    from bonecohort.fit.calibrate import Objective, fit, parse_free, provenance
    from bonecohort.fit.crossval import without
    from bonecohort.fit.parameters import DEFAULT_FREE, format_parameters, to_theta
    from bonecohort.fit.posterior import file_fields
    from bonecohort.fit.targets import load_targets
    from bonecohort.model.params import hand_set_model
    from bonecohort.shell.fit_output import add_posterior, identification_text, write_fit

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
            held = _holdout(objective, holdout)
            theta = to_theta(_model_from(init), frees) if init else None
            result = fit(without(objective, held), steps, learning_rate, log, theta,
                         optimizer)
    except FloatingPointError as exc:
        click.echo(f"error: calibration failed: {exc}", err=True)
        sys.exit(1)
    prov = provenance(ts, result, objective, learning_rate, dt,
                      str(start) if start else "the hand-set constants",
                      str(init) if init else None)
    hessian = "gauss-newton" if optimizer == "lm" else "differences"
    post = add_posterior(without(objective, held), result.theta, prov, log, hessian) \
        if posterior else None
    write_fit(out, format_parameters(result.model, frees, prov,
                                     post and file_fields(post, hessian)))
    if post is not None:
        click.echo(identification_text(post))
    click.echo(f"loss {result.loss_start:.4g} -> {result.loss:.4g}; targets within tolerance "
               f"{result.fits_start} -> {result.fits} of {len(ts.targets)}")
    click.echo(f"written: {out}")
    if held:
        _print_held_out(objective, held, result.theta)


def _holdout(objective, names):
    """The trials named by ``--holdout`` (a ConfigError for an unknown one)."""
    held = [n.strip() for n in (names or "").split(",") if n.strip()]
    unknown = sorted(set(held) - {p[2] for p in objective.parts})
    if unknown:
        raise ConfigError(f"--holdout: no trial with targets named {', '.join(unknown)} "
                          f"(trials: {', '.join(p[2] for p in objective.parts)}).")
    return held


def _print_held_out(objective, held, theta):
    from bonecohort.fit.crossval import only

    sim = only(objective, held)(theta, with_prior=False)[2]
    for i in only(objective, held).fitted():
        t = objective.ts.targets[i]
        r = float(objective.ts.residual(t, sim[i]))
        click.echo(f"held out {t.id:<6} {t.trial:<22} observed {t.observed:8.2f}  predicted "
                   f"{sim[i]:8.2f}  {'fits' if abs(r) <= 1 else 'misses'}")
