"""``bonecohort posterior``: the Laplace posterior of a fit, and what its targets identify."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from bonecohort.config import ConfigError
from bonecohort.shell.cli_fit import _bad_input_exits, _check_patients, _model_from
from bonecohort.shell.cli_fit import _persistent_compilation_cache


def identification_text(post, top: int = 6) -> str:
    """The table of ``Posterior.table`` and the strongest correlations, as text."""
    lines = [f"{'constant':<44} {'value':>10} {'90 % interval':>23} {'post SD':>8} "
             f"{'prior SD':>8} {'ratio':>6}  most correlated with"]
    for r in post.table():
        lines.append(f"{r['constant']:<44} {r['value']:>10.4g} [{r['lo']:>10.4g}, "
                     f"{r['hi']:>10.4g}] {r['posterior_sd']:>8.3f} {r['prior_sd']:>8.3f} "
                     f"{r['sd_ratio']:>6.2f}  {r['most_correlated_with']} "
                     f"({r['correlation']:+.2f})")
    lines.append("strongest correlations: " + "; ".join(
        f"{a} ~ {b} {c:+.2f}" for a, b, c in post.strongest_correlations(top)))
    return "\n".join(lines)


def write_table(post, path: Path):
    import io

    import polars as pl

    from bonecohort.io import atomic_write

    buf = io.StringIO()
    pl.DataFrame(post.table()).write_csv(buf)
    atomic_write(path, buf.getvalue())


def posterior_provenance(ts, objective, seconds: float, hessian: str) -> dict:
    """What a parameter file records about how its [posterior] was computed."""
    import datetime as _dt

    return {"posterior_targets_sha256": ts.sha256,
            "posterior_date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "posterior_patients_per_trial": {k: t.study.patients for k, t in ts.trials.items()},
            "posterior_dtype": objective.dtype_name, "posterior_hessian": hessian,
            "posterior_seconds": round(seconds, 1)}


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
@click.option("--hessian", type=click.Choice(["differences", "exact"]), default="differences",
              show_default=True, help="Central differences of the exact gradient (reuses "
              "calibrate's compiled programs) or forward-over-reverse (compiles one more "
              "program per trial).")
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


def write_extras(post, table_out, figure_out):
    """The identification table (CSV) and the posterior figure (SVG), where asked for."""
    from bonecohort.io import atomic_write
    from bonecohort.shell.posterior_plot import posterior_svg

    if table_out:
        write_table(post, table_out)
    if figure_out:
        atomic_write(figure_out, posterior_svg(post))


def write_fit(out: Path, text: str):
    """Write a parameter file; on failure print it and exit 4."""
    from bonecohort.io import atomic_write

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, text)
    except OSError as exc:
        click.echo(text)
        click.echo(f"error: {exc.filename or out}: cannot write the parameter file "
                   f"({exc.strerror}); the fitted parameters are printed above: free space "
                   "or choose another --out, and save them there.", err=True)
        sys.exit(4)
