"""Report figures of the benefit-harm balance and the cost-effectiveness (inline SVG).

* Balance sheet: per non-reference arm, the paired difference from the reference arm in first
  events per 1000 over the horizon (95 % intervals), one row per outcome: bars to the right are
  events caused, to the left events prevented.
* Cost-effectiveness plane (with ``--parameter-draws``): each draw's incremental QALYs and
  costs per patient vs the reference arm (draws_outcomes.parquet), the point estimate marked.
* Acceptability curve (with ``--parameter-draws``): the share of draws in which each arm has
  the highest net monetary benefit, by willingness to pay (balance.acceptability).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from bonecohort.shell.balance import acceptability
from bonecohort.shell.svg import _svg, _tag, figure
from bonecohort.shell.tables import BALANCE


def balance_plot(outcomes: pl.DataFrame, reference: str) -> str | None:
    df = outcomes.filter((pl.col("subgroup") == "all") & (pl.col("arm") != reference))
    events = [e for e in BALANCE if f"{e}_diff_per_1000" in df.columns]
    if not events or df.is_empty():
        return None
    fig, ax = figure(figsize=(7.5, 0.45 * len(events) + 1.5))
    y = np.arange(len(events))
    height = 0.8 / df.height
    for k, rec in enumerate(df.iter_rows(named=True)):
        d = np.array([rec[f"{e}_diff_per_1000"] for e in events])
        lo = np.array([rec[f"{e}_diff_per_1000_lo"] for e in events])
        hi = np.array([rec[f"{e}_diff_per_1000_hi"] for e in events])
        pos = y - 0.4 + height * (k + 0.5)
        bars = ax.barh(pos, d, height=height * 0.9, label=rec["arm"],
                       xerr=np.vstack([d - lo, hi - d]), capsize=2)
        for bar in bars.patches:
            _tag(bar, f"balance-{k}")
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(y, [e.replace("_", " ") for e in events], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"first events per 1000 vs '{reference}' (left: prevented, right: caused)")
    ax.legend(fontsize=7, loc="lower right")
    return _svg(fig)


def ce_plane(draws: pl.DataFrame, outcomes: pl.DataFrame, reference: str, wtp: float,
             currency: str) -> str:
    fig, ax = figure(figsize=(6.5, 4.5))
    d = draws.filter((pl.col("subgroup") == "all") & (pl.col("arm") != reference))
    point = outcomes.filter((pl.col("subgroup") == "all") & (pl.col("arm") != reference))
    for k, arm in enumerate(point["arm"].to_list()):
        rows = d.filter(pl.col("arm") == arm)
        dots = ax.scatter(rows["qalys_inc"], rows["costs_inc"], s=8, alpha=0.5, color=f"C{k}",
                          label=arm)
        _tag(dots, f"ce-{k}")
        p = point.filter(pl.col("arm") == arm)
        ax.scatter(p["qalys_inc"], p["costs_inc"], s=60, marker="x", color=f"C{k}")
    lim = ax.get_xlim()
    xs = np.linspace(min(lim[0], 0.0), max(lim[1], 0.0), 2)
    ax.plot(xs, wtp * xs, color="grey", lw=0.8, ls="--",
            label=f"{wtp:,.0f} {currency} per QALY")
    ax.axhline(0.0, color="black", lw=0.6)
    ax.axvline(0.0, color="black", lw=0.6)
    ax.set_xlabel(f"incremental QALYs per patient vs '{reference}'")
    ax.set_ylabel(f"incremental costs per patient ({currency})")
    ax.legend(fontsize=7)
    return _svg(fig)


def ceac(draws: pl.DataFrame, wtp: float, currency: str) -> str:
    grid = np.linspace(0.0, 3.0 * max(wtp, 1.0), 31)
    table = acceptability(draws, grid)
    fig, ax = figure(figsize=(6.5, 4.0))
    for k, arm in enumerate(table["arm"].unique(maintain_order=True).to_list()):
        rows = table.filter(pl.col("arm") == arm)
        (line,) = ax.plot(rows["willingness_to_pay"], rows["probability_best"], label=arm)
        _tag(line, f"ceac-{k}")
    ax.axvline(wtp, color="grey", lw=0.8, ls="--")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"willingness to pay per QALY ({currency})")
    ax.set_ylabel("probability of the highest net monetary benefit")
    ax.legend(fontsize=7)
    return _svg(fig)


def economics_plots(run, outcomes: pl.DataFrame, study) -> list:
    """(title, svg) of the balance sheet and, with parameter draws, the cost-effectiveness
    plane and acceptability curve."""
    plots = []
    sheet = balance_plot(outcomes, study.reference_arm)
    if sheet is not None:
        plots.append(("Benefit-harm balance sheet", sheet))
    path = run.root / "draws_outcomes.parquet"
    if path.exists() and "qalys" in outcomes.columns:
        draws = pl.read_parquet(path)
        e = study.economics
        plots.append(("Cost-effectiveness plane (parameter, harm, utility and cost draws)",
                      ce_plane(draws, outcomes, study.reference_arm, e.willingness_to_pay,
                               e.currency)))
        plots.append(("Cost-effectiveness acceptability curve",
                      ceac(draws, e.willingness_to_pay, e.currency)))
    return plots


def economics_html(run, study) -> str:
    """The report's cost-effectiveness table (economics.parquet), or "" without one."""
    import html

    path = run.summary("economics")
    if not path.exists():
        return ""
    df = pl.read_parquet(path)
    if df.is_empty():
        return ""
    e = study.economics
    cols = [("arm", "arm"), ("life_years_disc", "life-years (disc.)"), ("qalys", "QALYs"),
            ("costs", f"costs ({e.currency})"), ("qalys_inc", "QALYs vs reference"),
            ("costs_inc", "costs vs reference"), ("status", "status"),
            ("icer", "ICER vs previous efficient arm"), ("nmb_inc", "incremental NMB")]

    def cell(v):
        if isinstance(v, float):
            return f"{v:,.4f}" if abs(v) < 100 else f"{v:,.0f}"
        return "" if v is None else str(v)

    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(r[c]))}</td>" for c, _ in cols)
                   + "</tr>" for r in df.iter_rows(named=True))
    return (f"<h2>Cost-effectiveness</h2><p>Per patient, discounted {e.discount_costs:.0%} "
            f"(costs) and {e.discount_effects:.0%} (effects) a year; prices in "
            f"{html.escape(e.currency)} of the years stated per item ({html.escape(e.currency_year)}"
            f"); net monetary benefit at {e.willingness_to_pay:,.0f} per QALY. Arms by cost; "
            "dominated and extendedly dominated arms marked; the ICER is against the previous "
            f"efficient arm.</p><table><tr>{head}</tr>{body}</table>")
