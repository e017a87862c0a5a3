"""`bonecohort validate`: every target of a targets file against the model (host side).

One row per target: observed, simulated, difference, the fit tolerance, z-score, whether it
fits, its fit weight and whether its number was verified in the source. For BMD targets and
fracture risks the tolerance is max(tolerance_pp, stated se) percentage points and
z = difference / (stated se, else tolerance_pp). For hazard ratios both are on the log
scale: z = (log simulated - log observed) / se(log HR), and the target fits if the simulated
ratio lies inside the published 95 % interval.

``write_validation`` writes the table (parquet, CSV) and the plot, each atomically
(``bonecohort.io.atomic_write``); `bonecohort validate` writes them into the work directory
of ``bonecohort.io.output_dir``, like a run.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import polars as pl

from bonecohort.cohort import with_x64
from bonecohort.fit.parameters import default_model
from bonecohort.fit.posterior import predictive_bounds
from bonecohort.fit.targets import TargetSet
from bonecohort.fit.trials import run_trials, target_value
from bonecohort.io import atomic_write, write_parquet
from bonecohort.model.params import ModelParams
from bonecohort.reference_cache import outcome_setup
from bonecohort.shell.curves import plot_offsets
from bonecohort.shell.svg import figure


@with_x64
def simulate_trials(ts: TargetSet, model: ModelParams | None = None, patients=None,
                    log=lambda m: None, seed=None):
    """(the target set as simulated, ``TrialResult`` per trial) of ``ts`` under ``model``;
    ``patients`` and ``seed`` override those of every trial (None: as in the file)."""
    model = default_model() if model is None else model
    ts = ts.with_patients(patients).with_seed(seed)
    return ts, run_trials(ts, model, lambda trial: outcome_setup(trial.study.outcomes, model),
                          jnp.float32, log)


@with_x64
def validation_table(ts: TargetSet, model: ModelParams | None = None, patients=None,
                     log=lambda m: None, seed=None, results=None) -> pl.DataFrame:
    """Every target of ``ts`` against ``model`` (``simulate_trials``), or against the
    trials already simulated in ``results``."""
    if results is None:
        ts, results = simulate_trials(ts, model, patients, log, seed)
    rows = []
    for t in ts.targets:
        sim = float(target_value(t, ts.trials[t.trial], results[t.trial]))
        tol = ts.tolerance(t)
        diff = sim - t.observed
        fits = bool(abs(ts.residual(t, sim)) <= 1.0)
        if t.measure == "hazard_ratio":
            z = (math.log(sim) - math.log(t.observed)) / t.se
        else:
            z = diff / (t.se or ts.tolerance_pp)
        rows.append({"id": t.id, "trial": t.trial, "arm": t.arm, "comparator": t.comparator,
                     "site": t.site, "model_site": t.model_site, "measure": t.measure,
                     "window": f"{t.window.origin} {t.window.start:+g} to {t.window.end:+g} y",
                     "observed": t.observed, "simulated": sim, "difference": diff,
                     "tolerance": tol, "z": z, "fits": fits, "weight": t.weight,
                     "verified": t.verified, "patients": ts.trials[t.trial].study.patients,
                     "seed": ts.trials[t.trial].study.seed, "source": t.source})
    return pl.DataFrame(rows)


@with_x64
def predictive_intervals(ts: TargetSet, table: pl.DataFrame, post, k: int, seed: int,
                         patients=None, log=lambda m: None, model=None) -> pl.DataFrame:
    """``table`` (``validation_table``) with each target's 90 % posterior predictive interval
    (``pi_lo``, ``pi_hi``) and whether the observed value lies in it (``inside_pi``).

    The trials are simulated again under ``k`` draws of the constants from ``post``
    (``Posterior.draws(seed, k)``); a new observation is the simulated value plus a misfit with
    the likelihood's SD, the target's tolerance (fit/posterior.py), so the interval is
    simulated +/- 1.645 sqrt(s_d^2 + tolerance^2), with s_d the SD across draws; on the log
    scale for hazard ratios. ``model``: the constants the draws replace some of (default:
    ``default_model()``)."""
    base = default_model() if model is None else model
    sims = []
    for j, model in enumerate(post.models(base, seed, k)):
        ts_j, results = simulate_trials(ts, model, patients)
        sims.append([float(target_value(t, ts_j.trials[t.trial], results[t.trial]))
                     for t in ts.targets])
        log(f"parameter draw {j + 1} of {k}: trials simulated")
    lo, hi = predictive_bounds(table["simulated"].to_numpy(), np.asarray(sims),
                               table["tolerance"].to_numpy(),
                               np.array([t.measure == "hazard_ratio" for t in ts.targets]))
    observed = table["observed"].to_numpy()
    return table.with_columns(pl.Series("pi_lo", lo), pl.Series("pi_hi", hi),
                              pl.Series("inside_pi", (observed >= lo) & (observed <= hi)))


def plot_validation(table: pl.DataFrame, path: Path):
    """Simulated against observed, one point per target, identity line; hazard ratios in
    one panel, BMD changes and fracture risks (all in %) in the other; written to ``path`` as
    SVG."""
    fig, axes = figure(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [3, 1]})
    for ax, hr in zip(axes, (False, True)):
        part = table.filter((pl.col("measure") == "hazard_ratio") == hr)
        if part.is_empty():
            ax.set_visible(False)
            continue
        for fits, color in ((True, "tab:green"), (False, "tab:red")):
            sub = part.filter(pl.col("fits") == fits)
            ax.scatter(sub["observed"], sub["simulated"], color=color,
                       label="fits" if fits else "outside tolerance")
            for r in sub.iter_rows(named=True):
                ax.annotate(r["id"], (r["observed"], r["simulated"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        lo = min(part["observed"].min(), part["simulated"].min())
        hi = max(part["observed"].max(), part["simulated"].max())
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        ax.set_xlabel("observed" + (" hazard ratio" if hr else " (% BMD change or % risk)"))
        ax.set_ylabel("simulated")
        ax.set_title("fracture hazard ratios" if hr else "BMD and fracture-risk targets")
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="svg"))


VALIDATION_FILES = ("validation.parquet", "validation.csv", "validation.svg")
CURVE_FILES = ("curves.parquet", "offsets.svg")


def write_validation(table: pl.DataFrame, folder: Path, curves: pl.DataFrame | None = None,
                     ts: TargetSet | None = None) -> list:
    """The table as ``validation.parquet`` and ``validation.csv`` and its plot as
    ``validation.svg`` in ``folder``; with ``curves`` (shell/curves.py) also
    ``curves.parquet`` and, where ``ts`` has offset targets, ``offsets.svg``. Returns the
    names written."""
    parquet, csv, svg = (folder / name for name in VALIDATION_FILES)
    write_parquet(parquet, table)
    atomic_write(csv, table.write_csv())
    plot_validation(table, svg)
    written = list(VALIDATION_FILES)
    if curves is not None:
        write_parquet(folder / CURVE_FILES[0], curves)
        written.append(CURVE_FILES[0])
        if ts is not None and plot_offsets(curves, ts, folder / CURVE_FILES[1]):
            written.append(CURVE_FILES[1])
    return written


def format_table(table: pl.DataFrame) -> str:
    lines = [f"{'id':<6} {'measure':<36} {'site':<27} {'observed':>9} {'simulated':>9} "
             f"{'diff':>7} {'z':>6}  fits"]
    for r in table.iter_rows(named=True):
        lines.append(f"{r['id']:<6} {r['measure']:<36} {r['site']:<27} {r['observed']:>9.2f} "
                     f"{r['simulated']:>9.2f} {r['difference']:>7.2f} {r['z']:>6.2f}  "
                     f"{'yes' if r['fits'] else 'no'}")
    kinds = pl.col("measure").replace_strict(
        {"hazard_ratio": "hr", "cumulative_risk": "risk", "lifetime_risk": "risk"},
        default="bmd")

    def count(kind):
        part = table.filter(kinds == kind)
        return f"{int(part['fits'].sum())} of {part.height}"

    lines.append(f"{count('bmd')} BMD targets within tolerance; {count('hr')} hazard ratios "
                 f"inside their 95 % interval; {count('risk')} fracture risks within "
                 "tolerance.")
    if "inside_pi" in table.columns:
        fitted = table.filter(pl.col("weight") > 0)
        lines.append(f"{int(fitted['inside_pi'].sum())} of {fitted.height} fitted targets "
                     f"(in sample) inside their 90 % posterior predictive interval; "
                     f"{int(table['inside_pi'].sum())} of {table.height} in all.")
    return "\n".join(lines)
