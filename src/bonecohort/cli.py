"""Command-line interface (imperative shell)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .config import ConfigError, load_study
from .runner import SimulationError, run_study
from .summarize import agent_notes, format_summary


@click.group()
@click.version_option(package_name="bonecohort")
def main():
    """bonecohort: simulate bone loss under hormonal protocols for cohorts of virtual patients.

    Example: bonecohort run configs/default.toml --patients 10000 --out runs/demo
    """


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--patients", "-n", type=int, help="Number of patients (overrides the config).")
@click.option("--seed", type=int, help="Random seed (overrides the config).")
@click.option("--chunk-size", type=int, help="Patients per compiled batch (results do not "
              "depend on it).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: runs/<study name>).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
def run(config, patients, seed, chunk_size, out, force, quiet):
    """Simulate the study in CONFIG and print a summary per arm.

    Writes OUT/patients.parquet (one row per patient and arm), OUT/summary.parquet and
    OUT/manifest.json (config, its hash, seed, package versions, devices, wall time).

    Example: bonecohort run configs/default.toml --patients 20000 --seed 7 --out runs/try
    """
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    try:
        study = load_study(config).with_overrides(patients, seed, chunk_size)
        out = out or Path("runs") / study.name
        log(f"study '{study.name}': {study.patients:,} patients, {len(study.arms)} arms, "
            f"{study.horizon_years} y horizon, {study.dtype}")
        summary = run_study(study, out, force=force, log=log)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except SimulationError as exc:
        click.echo(f"simulation failed: {exc}", err=True)
        sys.exit(3)
    click.echo(f"Study '{study.name}' ({study.patients:,} patients, seed {study.seed}); "
               f"BMD % change from entry (mean) and share with femoral-neck T-score <= -2.5:")
    click.echo(format_summary(summary))
    notes = agent_notes(study.arms)
    if notes:
        click.echo("Agents used:")
        click.echo("\n".join(notes))
    click.echo(f"Results written to {out}/")


@main.command()
@click.option("--sources", is_flag=True, help="Also print each route's exposure source.")
def agents(sources):
    """List every agent: mechanism, routes with dose units and plausible ranges, evidence
    grade and sources.

    Example: bonecohort agents --sources
    """
    from .agents import AGENTS_LIST

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
