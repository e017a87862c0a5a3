"""What the fit commands print and write besides the fit itself: the identification table
of a posterior, the provenance of its computation, parameter files (host side, no CLI)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


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


def write_extras(post, table_out, figure_out):
    """The identification table (CSV) and the posterior figure (SVG), where asked for."""
    from bonecohort.io import atomic_write
    from bonecohort.shell.report import posterior_svg

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


def add_posterior(objective, theta, prov: dict, log, hessian: str = "differences"):
    """The Laplace posterior at ``theta`` and ``prov`` with how it was computed (``hessian``:
    posterior.curvature's method)."""
    import time

    from bonecohort.fit.posterior import laplace

    t0 = time.perf_counter()
    post = laplace(objective, theta, hessian, log=log)
    prov.update(posterior_provenance(objective.ts, objective, time.perf_counter() - t0,
                                     hessian))
    return post
