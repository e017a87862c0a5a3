"""Parameter uncertainty in a study: the study simulated again under draws of the fitted
constants from their posterior (``run --parameter-draws K``).

Draw j of the constants is ``Posterior.draws(seed, K)[j]`` (fit/posterior.py: keys
``fold_in(fold_in(key(seed), 2^32 - 1), j)``); every draw simulates the same virtual patients
(``fold_in(key(seed), patient_id)``) under every arm, so draws and arms share common random
numbers and the spread between draws is the constants' alone. Draws run one after another
through the same compiled chunk program (the constants are its arguments), each streaming its
patients to parquet parts under ``work/draws/draw-J`` that are summarized (lazily) and deleted,
so memory and disk do not grow with K x N. In a distributed run process i of P simulates
draws i, i + P, ... (each on its own devices) and ``summarize`` collects them. Per-draw statistics are written to
``draws_summary.parquet`` and ``draws_outcomes.parquet`` (a ``draw`` column beside the
columns of summary.parquet and outcomes.parquet).

Each draw also draws the harm, utility and cost inputs from their stated intervals
(outcome_inputs.draw_inputs, key ``fold_in(fold_in(fold_in(key(seed), 2^32 - 1), j), 1)``), so
the per-draw QALYs and costs of draws_outcomes.parquet are a probabilistic sensitivity
analysis: the report plots them on the cost-effectiveness plane with the acceptability curve.

Uncertainty intervals (``*_ui_lo``, ``*_ui_hi`` beside each statistic of summary.parquet and
outcomes.parquet): the point estimate (the fit's constants) +/- 1.96 x sqrt(h_mc^2 + s_d^2),
with h_mc the Monte Carlo half-width already given (_lo/_hi; 0 where a statistic has none)
and s_d the standard deviation of the statistic across draws (law of total variance: the
variance of a prediction is the Monte Carlo variance plus the variance of its mean across
constants); on the log scale for relative risks; an NNT's from its risk difference's
(``nnt_bounds``). The interval therefore contains the Monte
Carlo interval and is wider by what the constants are unknown. With few draws s_d is itself
uncertain (its relative SE is ~1/sqrt(2(K - 1))): use K >= 20 for reported numbers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from bonecohort.io import RunDir, atomic_write, write_parquet
from bonecohort.shell.summarize import Z, arm_tables
from bonecohort.shell.tables import SimulationError

RELATIVE = ("_rr",)  # statistics whose interval is taken on the log scale


def _steps_of(study) -> str:
    grid = study.grid
    return (f"steps controlled to rtol {grid.rtol:g}" if grid.rtol > 0
            else f"{grid.steps_per_year} fixed steps a year")


def simulate_draws(study, work: Path, models: list, simulate, log=lambda m: None,
                   share: tuple[int, int] = (0, 1)):
    """Simulate ``study`` under each model of ``models`` (draw j: ``models[j]``) and write
    its per-draw tables to ``work/draws``; ``simulate(study, work, model, j)`` is the runner's
    ``simulate_study`` with draw j of the harm, utility and cost inputs. ``share = (i, P)``: process i of a distributed run simulates draws
    i, i + P, ... A draw whose tables exist (an interrupted run) is not simulated again."""
    root = Path(work) / "draws"
    _claim(root, models)
    index, processes = share
    for j, model in enumerate(models):
        done = _draw_tables(root, j)
        if j % processes != index or all(p.exists() for p in done):
            continue
        sub = root / f"draw-{j}"
        try:
            simulate(study, sub, model, j)
        except SimulationError as exc:
            raise SimulationError(
                f"under parameter draw {j} of the fitted constants: {exc} The study's "
                f"{_steps_of(study)} are too coarse for these constants (a draw far in the "
                "tail of a constant the targets leave open, e.g. a strong RANKL action, makes "
                "the remodeling transients faster): set [study] rtol = 1e-5 (or, with fixed "
                "steps, steps_per_year = 24 or 48).") from None
        tables = arm_tables(pl.scan_parquet(RunDir(sub).parts_glob), study)
        for path, df in zip(done, tables):
            write_parquet(path, df.with_columns(pl.lit(j).alias("draw")))
        shutil.rmtree(sub)
        log(f"parameter draw {j + 1} of {len(models)} simulated")


def _claim(root: Path, models: list):
    """Create ``root`` for these draws; tables left there by draws of other constants (an
    interrupted run with another seed, K or posterior) are removed first."""
    from bonecohort.cohort import fingerprint

    stamp = root / "draws.json"
    mine = json.dumps({"k": len(models), "constants": [fingerprint(m) for m in models]})
    if root.exists() and (not stamp.exists() or stamp.read_text() != mine):
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    if not stamp.exists():
        atomic_write(stamp, mine)


def _draw_tables(root: Path, j: int) -> list:
    return [root / f"{name}-{j}.parquet" for name in ("summary", "outcomes")]


def remove_draws(work: Path):
    """Remove ``work/draws`` (after its tables were summarized, or left from an earlier
    attempt of a run without draws)."""
    shutil.rmtree(Path(work) / "draws", ignore_errors=True)


def missing_draws(work: Path, k: int) -> list:
    """Draws among 0..k-1 whose tables are not in ``work/draws``."""
    return [j for j in range(k)
            if not all(p.exists() for p in _draw_tables(Path(work) / "draws", j))]


def collect_draws(work: Path, k: int):
    """(per-draw summary, per-draw outcomes) of draws 0..k-1 from ``work/draws`` (removed by
    ``remove_draws`` once the run's draws_*.parquet are written)."""
    root = Path(work) / "draws"
    read = [pl.concat([pl.read_parquet(_draw_tables(root, j)[i]) for j in range(k)])
            for i in range(2)]
    return tuple(df.select(["draw"] + [c for c in df.columns if c != "draw"]) for df in read)


def statistics(df: pl.DataFrame, keys) -> list:
    """The float statistics of a summary table that get an uncertainty interval (not their
    own Monte Carlo bounds)."""
    return [c for c, t in df.schema.items() if t.is_float() and c not in keys
            and not c.endswith(("_lo", "_hi", "_nnt", "_nnh"))]


def nnt_bounds(df: pl.DataFrame) -> pl.DataFrame:
    """``<event>_nnt_ui_lo`` / ``_hi`` from the risk difference's uncertainty interval (per
    1000): NNT = 1000 / -RD where the whole interval prevents fractures; the upper bound is
    infinite where the interval reaches 0 or harm."""
    cols = []
    for rd in [c for c in df.columns if c.endswith("_rd_per_1000")]:
        event = rd.removesuffix("_rd_per_1000")
        lo, hi = pl.col(f"{rd}_ui_lo"), pl.col(f"{rd}_ui_hi")
        cols += [pl.when(lo < 0).then(-1000.0 / lo).alias(f"{event}_nnt_ui_lo"),
                 pl.when(hi < 0).then(-1000.0 / hi).when(lo < 0).then(float("inf"))
                 .alias(f"{event}_nnt_ui_hi")]
    return df.with_columns(cols)


def monte_carlo_bounds(stat: str, columns) -> tuple | None:
    """The columns of ``stat``'s Monte Carlo interval (None if it has none): ``<stat>_lo`` /
    ``_hi``, or ``<event>_rd_lo`` / ``_hi`` for a risk difference ``<event>_rd_per_1000``."""
    for base in (stat, stat.removesuffix("_per_1000")):
        if f"{base}_lo" in columns and f"{base}_hi" in columns:
            return f"{base}_lo", f"{base}_hi"
    return None


def with_uncertainty(point: pl.DataFrame, draws: pl.DataFrame, keys) -> pl.DataFrame:
    """``point`` with ``<stat>_ui_lo`` / ``<stat>_ui_hi`` per statistic (module docstring)."""
    stats = statistics(point, keys)
    spread = draws.group_by(keys).agg(
        [(pl.col(c).log() if c.endswith(RELATIVE) else pl.col(c)).std().alias(f"_sd_{c}")
         for c in stats])
    df = point.join(spread, on=list(keys), how="left", maintain_order="left")
    cols = []
    for c in stats:
        log = c.endswith(RELATIVE)
        x = pl.col(c).log() if log else pl.col(c)
        mc = monte_carlo_bounds(c, point.columns)
        half_mc = pl.lit(0.0) if mc is None else (
            (pl.col(mc[1]).log() - pl.col(mc[0]).log()) / 2 if log
            else (pl.col(mc[1]) - pl.col(mc[0])) / 2)
        half = (half_mc.fill_null(0.0) ** 2 + (Z * pl.col(f"_sd_{c}")) ** 2).sqrt()
        lo, hi = x - half, x + half
        if log:  # none for a ratio of 0 (no events in the arm) or without a value
            ok = pl.col(c) > 0
            lo, hi = pl.when(ok).then(lo.exp()), pl.when(ok).then(hi.exp())
        cols += [lo.alias(f"{c}_ui_lo"), hi.alias(f"{c}_ui_hi")]
    return nnt_bounds(df.with_columns(cols).drop([f"_sd_{c}" for c in stats]))


SUMMARY_KEYS = ("arm", "sex")
OUTCOME_KEYS = ("subgroup", "level", "arm")


def draw_record(post, seed: int, k: int, source: str) -> dict:
    """What the manifest records about the draws."""
    thetas = post.draws(seed, k)
    return {"k": k, "seed": seed, "posterior": source,
            "keys": "fold_in(fold_in(key(seed), 2**32 - 1), draw)",
            "constants": [f.path for f in post.frees],
            "draws": [[float(f.from_unconstrained(t)) for f, t in zip(post.frees, row)]
                      for row in thetas],
            "interval": "point +/- 1.96 sqrt(MC half-width^2 + SD across draws^2); log scale "
                        "for relative risks"}


SHIPPED_SOURCE = "bonecohort/data/parameters/public.toml [posterior]"


def posterior_of(path=None):
    """The posterior stored in parameter file ``path`` (default: the shipped fit); a
    ConfigError where it has none."""
    from bonecohort.config import ConfigError
    from bonecohort.data import SHIPPED_PARAMETERS
    from bonecohort.fit.posterior import load_posterior

    path = path or SHIPPED_PARAMETERS
    post = load_posterior(path)
    if post is None:
        raise ConfigError(f"--parameter-draws: {path} has no [posterior]; add one with "
                          "`bonecohort posterior`.")
    return post


def check_draws(k: int) -> int:
    from bonecohort.config import ConfigError

    if not 0 <= k <= 10_000 or (k == 1):
        raise ConfigError(f"--parameter-draws {k}: must be 0 (none) or 2 to 10,000 (a spread "
                          "needs at least two draws).")
    return k


__all__ = ["OUTCOME_KEYS", "SHIPPED_SOURCE", "SUMMARY_KEYS", "posterior_of", "check_draws", "collect_draws", "draw_record",
           "missing_draws", "monte_carlo_bounds", "remove_draws",
           "nnt_bounds", "simulate_draws", "statistics", "with_uncertainty"]
