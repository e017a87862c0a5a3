"""Self-contained HTML report of a finished run (imperative shell: reads parquet, writes HTML).

``write_report(run_dir)`` reads the run's parquet files lazily and writes ``report.html`` with
inline SVG plots (matplotlib; no external files, scripts or fonts), the study config and
manifest, the evidence grade of every agent used and a plain-language caution. Every data
series in a plot is an SVG group whose id starts with ``data-`` so that a browser test can
check that each plot has data.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import polars as pl

from bonecohort.config import parse_study
from bonecohort.exposure.agents import AGENTS
from bonecohort.io import RunDir, atomic_write
from bonecohort.model.params import Site
from bonecohort.shell.svg import _svg, _tag, figure
from bonecohort.shell.tables import SITE_PREFIX, pct_column
from bonecohort.shell.report_economics import economics_html, economics_plots

CAUTION = ("This is a research model, not medical advice. Its hormone-action magnitudes and "
           "several other parameters are set by hand or fitted to a few published trials; "
           "results describe simulated populations under stated assumptions and must not "
           "guide the care of any person.")


def bmd_trajectories(patients: pl.LazyFrame, horizon: int, arms) -> str:
    """Median and interquartile range of % BMD change from entry, by arm and site."""
    fig, axes = figure(1, 2, figsize=(10, 3.8), sharey=True)
    years = list(range(0, horizon + 1))
    for ax, site in zip(axes, Site):
        prefix, label = SITE_PREFIX[site], site.key.replace("_", " ")
        cols = [pct_column(site, k) for k in range(1, horizon + 1)]
        q = patients.group_by("arm").agg(
            [pl.col(c).quantile(p).alias(f"{c}_{p}") for c in cols for p in (0.25, 0.5, 0.75)]
        ).collect()
        for i, arm in enumerate(arms):
            row = q.filter(pl.col("arm") == arm).row(0, named=True)
            lo, med, hi = ([0.0] + [row[f"{c}_{p}"] for c in cols] for p in (0.25, 0.5, 0.75))
            color = f"C{i % 10}"
            band = ax.fill_between(years, lo, hi, color=color, alpha=0.2)
            (line,) = ax.plot(years, med, color=color, label=arm)
            _tag(line, f"bmd-{prefix}-{i}")
            _tag(band, f"bmd-iqr-{prefix}-{i}")
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_title(f"{label}: % BMD change (median, IQR)")
        ax.set_xlabel("years after entry")
    axes[0].set_ylabel("% BMD change")
    axes[0].legend(fontsize=7)
    return _svg(fig)


def cumulative_plot(cumulative: pl.DataFrame, arms) -> str:
    fig, axes = figure(1, 2, figsize=(10, 3.8))
    for ax, (col, label) in zip(axes, (("hip_pct", "hip fracture"), ("mof_pct", "MOF"))):
        for i, arm in enumerate(arms):
            d = cumulative.filter(pl.col("arm") == arm).sort("year")
            (line,) = ax.step([0] + d["year"].to_list(), [0.0] + d[col].to_list(),
                              where="post", color=f"C{i % 10}", label=arm)
            _tag(line, f"cum-{col}-{i}")
        ax.set_title(f"first {label}: cumulative incidence (%)")
        ax.set_xlabel("years after entry")
    axes[0].legend(fontsize=7)
    return _svg(fig)


def tscore_histograms(patients: pl.LazyFrame, arms) -> str:
    """Femoral-neck T-score distributions at entry (shared by arms) and at the horizon."""
    fig, ax = figure(figsize=(10, 3.8))
    width = 0.25
    binned = []
    for when, col in (("entry", "fn_tscore_entry"), ("horizon", "fn_tscore_end")):
        b = patients.group_by("arm", (pl.col(col) / width).floor().alias("bin")).agg(
            pl.len().alias("n")).collect()
        binned.append((when, b))
    first = arms[0]
    series = [("entry", first, binned[0][1])] + [("horizon", a, binned[1][1]) for a in arms]
    for j, (when, arm, b) in enumerate(series):
        d = b.filter(pl.col("arm") == arm).sort("bin")
        x = (d["bin"] * width).to_list()
        share = (100 * d["n"] / d["n"].sum()).to_list()
        label = "all arms at entry" if when == "entry" else f"{arm}, horizon"
        style = {"color": "0.3", "ls": "--"} if when == "entry" else {"color": f"C{(j - 1) % 10}"}
        (line,) = ax.step(x, share, where="post", label=label, **style)
        _tag(line, f"tscore-{j}")
    for t in (-2.5, -1.0):
        ax.axvline(t, color="0.7", lw=0.8)
    ax.set_xlabel("femoral-neck T-score")
    ax.set_ylabel("% of patients per 0.25 SD")
    ax.set_title("T-score distribution at entry and at the horizon")
    ax.legend(fontsize=7)
    return _svg(fig)


def forest_plot(outcomes: pl.DataFrame, reference: str) -> str:
    """Relative risk (first fracture by the study's ``by_age``) vs the reference arm."""
    d = outcomes.filter((pl.col("subgroup") == "all") & (pl.col("arm") != reference))
    fig, ax = figure(figsize=(10, 0.6 + 0.45 * max(2, 2 * d.height)))
    y = 0
    labels = []
    for row in d.iter_rows(named=True):
        for event, name in (("hip", "hip"), ("mof", "MOF")):
            rr, lo, hi = row[f"{event}_rr"], row[f"{event}_rr_lo"], row[f"{event}_rr_hi"]
            if rr is None:
                continue
            lo = rr if lo is None else lo
            hi = rr if hi is None else hi
            if row.get(f"{event}_rr_ui_lo") is not None:
                (ui,) = ax.plot([row[f"{event}_rr_ui_lo"], row[f"{event}_rr_ui_hi"]], [y, y],
                                color="0.75", lw=6, solid_capstyle="butt")
                _tag(ui, f"forest-ui-{y}")
            (bar,) = ax.plot([lo, hi], [y, y], color="C0")
            (dot,) = ax.plot([rr], [y], "o", color="C3" if event == "hip" else "C1")
            _tag(bar, f"forest-ci-{y}")
            _tag(dot, f"forest-rr-{y}")
            labels.append(f"{row['arm']} — {name}")
            y += 1
    ax.axvline(1.0, color="0.5", lw=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ui = "; grey: uncertainty interval with the constants' posterior" \
        if "hip_rr_ui_lo" in d.columns else ""
    ax.set_xlabel(f"relative risk vs '{reference}' (blue: paired 95 % Monte Carlo "
                  f"interval{ui})")
    ax.set_title("first fracture by the study's age limit")
    return _svg(fig)


Z90 = 1.6449  # two-sided 90 % normal quantile


def posterior_svg(post) -> str:
    """Left: prior (grey) and posterior (blue) 90 % intervals of each constant, as the
    shift from the prior's centre in the fitted (log / logit) coordinate; right: posterior
    correlations."""
    p = len(post.frees)
    fig, (ax, cx) = figure(1, 2, figsize=(12, 0.8 + 0.28 * p),
                           gridspec_kw={"width_ratios": [1.2, 1]})
    sd, prior_sd = post.sd(), np.where(np.isfinite(post.prior_sd), post.prior_sd, np.nan)
    shift = post.mean - post.prior_mean
    for j in range(p):
        (pr,) = ax.plot([-Z90 * prior_sd[j], Z90 * prior_sd[j]], [j, j], color="0.75", lw=6,
                        solid_capstyle="butt")
        (po,) = ax.plot([shift[j] - Z90 * sd[j], shift[j] + Z90 * sd[j]], [j, j], color="C0")
        (dot,) = ax.plot([shift[j]], [j], "o", color="C0", ms=3)
        for artist, name in ((pr, "prior"), (po, "posterior"), (dot, "mode")):
            _tag(artist, f"posterior-{name}-{j}")
    labels = [f"{f.path} ({f.transform})" for f in post.frees]
    ax.set_yticks(range(p), labels, fontsize=6)
    ax.invert_yaxis()
    ax.axvline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel("fitted coordinate minus prior centre (grey: prior 90 %, blue: posterior 90 %)")
    im = cx.imshow(post.corr(), vmin=-1, vmax=1, cmap="RdBu_r")
    _tag(im, "posterior-correlation")
    cx.set_xticks(range(p), [str(j + 1) for j in range(p)], fontsize=5)
    cx.set_yticks(range(p), [f"{j + 1} {f.path}" for j, f in enumerate(post.frees)], fontsize=5)
    cx.set_title("posterior correlations", fontsize=8)
    fig.colorbar(im, ax=cx, shrink=0.6)
    return _svg(fig)


def write_report(run_dir: Path | str) -> Path:
    """Write ``run_dir/report.html`` from the run's outputs; returns its path."""
    run = RunDir(run_dir)
    manifest = json.loads(run.manifest.read_text())
    study = parse_study(manifest["config"], manifest["config_path"])
    arms = [a.name for a in study.arms]
    patients = pl.scan_parquet(run.parts_glob)
    outcomes = pl.read_parquet(run.summary("outcomes"))
    cumulative = pl.read_parquet(run.summary("cumulative"))
    plots = [
        ("BMD trajectories", bmd_trajectories(patients, study.horizon_years, arms)),
        ("Cumulative fracture incidence", cumulative_plot(cumulative, arms)),
        ("T-score distributions", tscore_histograms(patients, arms)),
        ("Relative risks", forest_plot(outcomes, study.reference_arm)),
    ]
    plots += economics_plots(run, outcomes, study)
    if "parameter_draws" in manifest:  # run with --parameter-draws: the posterior drawn from
        from bonecohort.data import SHIPPED_PARAMETERS
        from bonecohort.fit.posterior import load_posterior

        post = load_posterior(SHIPPED_PARAMETERS)
        if post is not None:
            plots.append(("Posterior of the fitted constants (the parameter draws' source)",
                          posterior_svg(post)))
    page = _page(study, manifest, _headline_rows(outcomes), _agent_rows(study), plots,
                 economics_html(run, study))
    return atomic_write(run.root / "report.html", page)


def _agent_rows(study) -> str:
    esc = html.escape
    used = sorted({r.agent for a in study.arms for r in a.regimens})
    return "".join(
        f"<tr><td>{esc(n)}</td><td>{esc(AGENTS[n].evidence)}</td>"
        f"<td>{esc(AGENTS[n].warning)}</td></tr>" for n in used) or \
        "<tr><td colspan=3>no agents (untreated arms only)</td></tr>"


def _headline_rows(outcomes: pl.DataFrame) -> str:
    esc = html.escape
    cols = ["arm", "patients", "hip_by_age", "mof_by_age", "hip_rr", "hip_rr_lo", "hip_rr_hi",
            "hip_rr_ui_lo", "hip_rr_ui_hi", "mof_rr", "mof_rr_lo", "mof_rr_hi", "mof_rr_ui_lo",
            "mof_rr_ui_hi", "hip_nnt", "deaths_horizon"]
    headline = outcomes.filter(pl.col("subgroup") == "all").select(
        [c for c in cols if c in outcomes.columns])
    return "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in headline.columns) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in headline.iter_rows())


def _page(study, manifest: dict, table: str, agent_rows: str, plots, extra: str = ""
          ) -> str:
    """The report's HTML: headline table, plots, evidence, config and manifest."""
    esc = html.escape
    figures = "".join(f'<figure class="plot"><figcaption>{esc(t)}</figcaption>{svg}</figure>'
                      for t, svg in plots)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>bonecohort report: {esc(study.name)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
.caution {{ border: 2px solid #b33; padding: 0.8em; background: #fff4f4; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; }}
figure {{ margin: 1.5em 0; }} figcaption {{ font-weight: bold; }}
pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }}
</style></head><body>
<h1>Study '{esc(study.name)}'</h1>
<p>{esc(study.description)}</p>
<p class="caution"><strong>Caution.</strong> {esc(CAUTION)}</p>
<p>{study.patients:,} patients, seed {study.seed}, horizon {study.horizon_years} years,
reference arm '{esc(study.reference_arm)}'. Fractures are sampled with common random numbers;
counts are per 1000 patients by age {study.outcomes.by_age:g} (or the horizon); deaths are
counted over the whole horizon.</p>
<table>{table}</table>
{figures}
{extra}
<h2>Agents and evidence</h2>
<table><tr><th>agent</th><th>evidence grade</th><th>warning</th></tr>{agent_rows}</table>
<h2>Study config</h2><pre>{esc(manifest["config"])}</pre>
<h2>Manifest</h2><pre>{esc(json.dumps({k: v for k, v in manifest.items() if k != "config"},
                                         indent=2))}</pre>
<script>
// count the data series drawn in each plot (read by the browser test)
document.querySelectorAll("figure.plot").forEach(function (f, i) {{
  var n = 0;
  f.querySelectorAll("g[id^='data-']").forEach(function (g) {{
    if (g.querySelector("path, use, rect")) {{ n += 1; }}
  }});
  f.setAttribute("data-series", String(n));
}});
document.body.setAttribute("data-ready", "yes");
</script>
</body></html>
"""


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)
