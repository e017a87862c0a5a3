"""Mean BMD curves of the virtual trials, and the figure of what happens after a treatment
stops (host side; written by `bonecohort validate`).

``trial_curves``: one row per trial, arm, simulated site and month after entry: the mean %
change of BMD from entry over the trial's eligible patients (the quantity BMD targets read).
``plot_offsets``: for each trial with a BMD target whose window starts after entry (the
"offset" results: OFF01/OFF02 after 3 years of MHT in PEPI, OFF05 after 5 years of
anastrozole in ATAC), the arms' curves at that target's site with the observed change drawn
from the simulated value at the window's start: a within-arm change as a segment to
start + observed, an annualized rate as a segment of that slope; its tolerance as a bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from bonecohort.fit.targets import BMD_MEASURES, TargetSet
from bonecohort.fit.trials import MONTHS
from bonecohort.io import atomic_write
from bonecohort.model.params import SITE_NAMES
from bonecohort.shell.svg import figure


def trial_curves(ts: TargetSet, results: dict) -> pl.DataFrame:
    """Mean % BMD change from entry per trial, arm, site and month (``results``: the
    ``TrialResult`` of each trial, fit/trials.run_trials)."""
    frames = []
    for name, res in results.items():
        arms = [a.name for a in ts.trials[name].study.arms]
        mean = 100.0 * (np.asarray(res.bv, np.float64).mean(axis=0) - 1.0)  # arms, sites, m
        for a, arm in enumerate(arms):
            for s, site in enumerate(SITE_NAMES):
                months = np.arange(mean.shape[-1])
                frames.append(pl.DataFrame({
                    "trial": name, "arm": arm, "site": site, "month": months,
                    "years": months / MONTHS, "mean_pct_change": mean[a, s]}))
    return pl.concat(frames) if frames else pl.DataFrame()


def offset_targets(ts: TargetSet) -> list:
    """BMD targets of one arm whose window, from entry, starts after entry."""
    return [t for t in ts.targets if t.measure in BMD_MEASURES and t.comparator is None
            and t.window.origin == "entry" and t.window.start > 0]


def _observed_segment(t, curve: pl.DataFrame):
    """(x, y) of the observed change drawn from the simulated value at the window start."""
    at = curve.filter(pl.col("month") == round(t.window.start * MONTHS))["mean_pct_change"]
    y0 = float(at[0])
    length = t.window.end - t.window.start
    change = t.observed * (length if t.measure == "annualized_pct_change" else 1.0)
    return (t.window.start, t.window.end), (y0, y0 + change)


def plot_offsets(curves: pl.DataFrame, ts: TargetSet, path: Path) -> bool:
    """The offset figure (module docstring) as SVG at ``path``; False if no target applies."""
    targets = offset_targets(ts)
    panels = sorted({(t.trial, t.model_site) for t in targets})
    if not panels or curves.is_empty():
        return False
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = figure(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, (trial, site) in zip(axes.ravel(), panels):
        part = curves.filter((pl.col("trial") == trial) & (pl.col("site") == site))
        for arm in part["arm"].unique(maintain_order=True):
            c = part.filter(pl.col("arm") == arm)
            ax.plot(c["years"], c["mean_pct_change"], lw=1.5, label=f"{arm} (simulated)")
        for t in (t for t in targets if (t.trial, t.model_site) == (trial, site)):
            c = part.filter(pl.col("arm") == t.arm)
            (x0, x1), (y0, y1) = _observed_segment(t, c)
            tol = ts.tolerance(t) * ((x1 - x0) if t.measure == "annualized_pct_change" else 1)
            ax.plot([x0, x1], [y0, y1], color="black", lw=2.5)
            ax.errorbar([x1], [y1], yerr=[tol], color="black", capsize=3)
            ax.annotate(f"{t.id} observed", (x1, y1), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("years after entry")
        ax.set_ylabel(f"mean BMD change from entry, % ({site.replace('_', ' ')})")
        ax.set_title(f"{trial}: {site.replace('_', ' ')}", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="svg"))
    return True
