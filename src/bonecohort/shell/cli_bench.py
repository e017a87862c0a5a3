"""The ``bench`` command: speed, memory and accuracy of the engine and its peers."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bonecohort.config import ConfigError


def _sizes(ctx, param, value):
    try:
        return tuple(int(float(v)) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give sizes like 1e4,1e5,1e6") from None


@click.command()
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
              help="Study whose chunk is the full-model workload (default: the shipped "
              "default study).")
@click.option("--out", default="benchmarks/results", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the JSON result (and the work-precision SVG).")
@click.option("--work-precision", "wp_n", type=int, default=0, show_default=True,
              help="Patients of a work-precision sweep of every solver across its step sizes "
              "or tolerances on the one-site workload (0: none).")
@click.option("--wp-budget", type=float, default=60.0, show_default=True,
              help="Seconds after which a peer's sweep stops tightening its tolerance.")
@click.option("--wp-only", is_flag=True,
              help="Run only the work-precision sweep (needs --work-precision N).")
def bench(sizes, large, dtypes, chunk, natural_n, diffrax_n, scipy_n, no_peers, config, out,
          wp_n, wp_budget, wp_only):
    """Measure patient-years per second and peak memory of the full default model at several
    cohort sizes and dtypes, and, on the same workloads, diffrax (Tsit5, Kvaerno5), scipy
    LSODA and the bone_models Pivonka model, each with its error against a float64 Radau
    reference. Prints a table of speed-ups and writes JSON with device information to OUT.
    With --work-precision N, every solver is swept across its accuracy settings on N
    patients, on the one-site workload and on the full model (both sites, both arms of the
    study, switches as diffrax jump times), and the fastest configurations within errors 1e-3
    and 1e-5 are compared (bench_wp.py); the diagrams are written beside the JSON as SVG.
    Peers need the 'bench' extra: pip install -e '.[bench]'.

    Example: bonecohort bench --sizes 1e4,1e5 --dtypes float32
    """
    from bonecohort.shell.bench import (
        BenchOptions,
        format_result,
        run_bench,
        write_result,
    )

    if wp_only and not wp_n:
        click.echo("error: --wp-only runs only the work-precision sweep: give its size with "
                   "--work-precision N.", err=True)
        sys.exit(2)
    names = tuple(d.strip() for d in dtypes.split(",") if d.strip())
    bad = [d for d in names if d not in ("float32", "float64")]
    if bad or not names:
        click.echo(f"error: --dtypes {dtypes!r}: use float32 and/or float64.", err=True)
        sys.exit(2)
    opts = BenchOptions(sizes=sizes + ((10_000_000,) if large else ()), dtypes=names,
                        chunk=chunk, peers=not no_peers, natural_n=natural_n,
                        diffrax_n=diffrax_n, scipy_n=scipy_n, wp_n=wp_n,
                        wp_budget_s=wp_budget, wp_only=wp_only, out=out,
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
