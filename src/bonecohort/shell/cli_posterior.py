"""``bonecohort posterior``: the Laplace posterior of a fit, and what its targets identify."""

from __future__ import annotations

import time
from pathlib import Path

import click

from bonecohort.config import ConfigError
from bonecohort.shell.cli_fit import _bad_input_exits, _check_patients, _model_from
from bonecohort.shell.cli_fit import _persistent_compilation_cache
from bonecohort.shell.fit_output import (
    identification_text,
    posterior_provenance,
    write_extras,
    write_fit,
)


@click.command()
@click.argument("targets", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--params", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The fit (a parameter file written by `calibrate`).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Parameter file to write: the fit with its [posterior].")
@click.option("--start", type=click.Path(dir_okay=False, path_type=Path),
              help="The fit's --start (its prior's centre; default: the hand-set constants).")
@click.option("--patients", type=int, default=128, show_default=True,
              help="Patients per trial (as the fit).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32",
              show_default=True)
@click.option("--hessian", type=click.Choice(["differences", "exact", "gauss-newton"]),
              default="differences",
              show_default=True, help="Central differences of the exact gradient (reuses "
              "calibrate's compiled programs), forward-over-reverse (compiles one more "
              "program per trial), or gauss-newton: 2 J^T W J from the Jacobian programs of "
              "calibrate --optimizer lm (one evaluation; exact at a mode whose targets "
              "are met, an approximation otherwise).")
@click.option("--table", "table_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the identification table as CSV.")
@click.option("--figure", "figure_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the posterior figure (SVG: marginals against priors, "
              "correlations).")
@click.option("--force", is_flag=True, help="Replace an existing OUT file.")
def posterior(targets, params, out, start, patients, dtype, hessian, table_out, figure_out,
              force):
    """Laplace approximation of the posterior of a fit's constants (fit/posterior.py): the
    calibration objective read as -2 log posterior, its Hessian at the fit, written with the
    fit to OUT as [posterior]; prints what the targets identify (posterior against prior SD,
    strongest correlations). `run --parameter-draws` and `validate --parameter-draws` draw
    from it.

    Example: bonecohort posterior configs/targets/public.toml --params fit.toml --out fit+post.toml
    """
    import tomllib

    import jax.numpy as jnp

    from bonecohort.fit.calibrate import Objective
    from bonecohort.fit.parameters import check_path, format_parameters, to_theta
    from bonecohort.fit.posterior import file_fields, laplace
    from bonecohort.fit.targets import load_targets
    from bonecohort.model.params import hand_set_model

    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    _persistent_compilation_cache()
    with _bad_input_exits(params):
        if out.exists() and not force:
            raise ConfigError(f"--out {out}: exists; pass --force to replace it.")
        _check_patients(patients)
        fitted = _model_from(params)
        raw = tomllib.loads(Path(params).read_text())
        ts = load_targets(targets).with_patients(patients)
        model = _model_from(start) if start else hand_set_model()
        frees = tuple(check_path(n, model) for n in raw["parameters"])
        prior = raw.get("provenance", {}).get("prior_sd", 1.0)
        t0 = time.perf_counter()
        objective = Objective(ts, model, frees, jnp.dtype(dtype),
                              prior if isinstance(prior, (int, float)) else None, log)
        post = laplace(objective, to_theta(fitted, frees), hessian, log)
    prov = {**raw.get("provenance", {}),
            **posterior_provenance(ts, objective, time.perf_counter() - t0, hessian)}
    write_fit(out, format_parameters(fitted, frees, prov, file_fields(post, hessian),
                                     raw["parameters"]))
    click.echo(identification_text(post))
    write_extras(post, table_out, figure_out)
    click.echo("written: " + ", ".join(str(p) for p in (out, table_out, figure_out) if p))
