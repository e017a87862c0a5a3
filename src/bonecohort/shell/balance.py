"""Benefit-harm balance and cost-effectiveness per arm (host side, polars and numpy).

Balance sheet (columns of outcomes.parquet, per arm and subgroup): for each event of
``tables.BALANCE`` (first hip fracture, first major osteoporotic fracture, the first event of
each harm, death; all within the horizon, sampled) ``<event>_per_1000`` with its 95 % interval
(normal approximation of a proportion) and ``<event>_diff_per_1000``, the paired difference
from the reference arm on the same patients (mean of per-patient differences +/- 1.96 SD /
sqrt(n)); positive = caused, negative = prevented.

Economics (same table): mean discounted ``life_years_disc``, ``qalys`` and ``costs`` per
patient with 95 % intervals, their paired increments vs the reference arm (``*_inc``) and the
net monetary benefit ``nmb`` = WTP x QALYs - costs and its increment ``nmb_inc``.

Incremental analysis (economics.parquet, ``incremental_analysis``): arms sorted by cost;
strongly dominated arms (costlier and no more effective than another) and extendedly
dominated ones (an ICER above that of a costlier arm) are removed in turn (of two identical
arms, the later in the study counts as dominated); ICERs are between
consecutive remaining arms (Drummond, Methods for the Economic Evaluation of Health Care
Programmes, 4th ed., ch. 4). Acceptability (``acceptability``): the share of parameter draws
in which each arm has the highest net monetary benefit, per willingness to pay.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from bonecohort.shell.tables import BALANCE, ECONOMICS

Z = 1.96


def event_flag(event: str) -> pl.Expr:
    """Per-patient indicator (0/1) of a ``BALANCE`` event in the row's arm."""
    if event in ("hip", "mof"):
        return pl.col(f"first_{event}_year").is_not_null().cast(pl.Float64)
    if event == "death":
        return pl.col("died").cast(pl.Float64)
    return pl.col(f"{event}_year").is_not_null().cast(pl.Float64)


def mean_interval(x: pl.Expr, name: str, scale: float = 1.0) -> list:
    """``scale`` x the mean of ``x`` with its 95 % interval (normal approximation):
    ``name``, ``name_lo``, ``name_hi``."""
    half = Z * x.std() / pl.len().sqrt()
    return [(scale * x.mean()).alias(name), (scale * (x.mean() - half)).alias(f"{name}_lo"),
            (scale * (x.mean() + half)).alias(f"{name}_hi")]


def balance_aggs(columns) -> list:
    """Aggregations of the balance sheet for a per-patient table with ``columns``."""
    aggs = []
    for event in BALANCE:
        if f"ref_{event}" not in columns:
            continue
        flag = event_flag(event)
        aggs += mean_interval(flag, f"{event}_per_1000", 1000.0)
        aggs += mean_interval(flag - pl.col(f"ref_{event}").cast(pl.Float64),
                         f"{event}_diff_per_1000", 1000.0)
    return aggs


def economics_aggs(columns, wtp: float) -> list:
    """Aggregations of the economic columns (none without them)."""
    if "qalys" not in columns:
        return []
    aggs = []
    f64 = lambda name: pl.col(name).cast(pl.Float64)  # noqa: E731 (float32 means vary)
    for name in ECONOMICS:
        aggs += mean_interval(f64(name), name)
        aggs += mean_interval(f64(name) - f64(f"ref_{name}"), f"{name}_inc")
    nmb = wtp * f64("qalys") - f64("costs")
    aggs += mean_interval(nmb, "nmb")
    aggs += mean_interval(nmb - (wtp * f64("ref_qalys") - f64("ref_costs")), "nmb_inc")
    return aggs


def incremental_analysis(arms, costs, qalys) -> list[dict]:
    """ICERs with dominance and extended dominance (module docstring); one dict per arm:
    arm, costs, qalys, status ("reference": the cheapest, "dominated", "extendedly
    dominated", "efficient"), compared_with and icer (cost per QALY gained vs the previous
    efficient arm; None for the reference and dominated arms)."""
    def same(a, b):  # equal to the summaries' 10 significant digits
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)

    order = sorted(range(len(arms)), key=lambda i: (costs[i], -qalys[i], i))
    status = {i: "efficient" for i in order}
    for k, i in enumerate(order):  # strong dominance: another costs no more and gains at
        # least as much (of two identical arms, the later in the study is marked dominated)
        if any((costs[j] <= costs[i] or same(costs[j], costs[i]))
               and (qalys[j] >= qalys[i] or same(qalys[j], qalys[i])) for j in order[:k]):
            status[i] = "dominated"
    while True:
        front = [i for i in order if status[i] == "efficient"]
        icers = [(costs[b] - costs[a]) / (qalys[b] - qalys[a]) for a, b in zip(front, front[1:])]
        bad = [front[k + 1] for k in range(len(icers) - 1) if icers[k] > icers[k + 1]]
        if not bad:
            break
        status[bad[0]] = "extendedly dominated"
    rows = []
    for i in order:
        row = {"arm": arms[i], "costs": costs[i], "qalys": qalys[i], "status": status[i],
               "compared_with": None, "icer": None}
        if status[i] == "efficient":
            k = front.index(i)
            if k == 0:
                row["status"] = "reference"
            else:
                prev = front[k - 1]
                row["compared_with"] = arms[prev]
                row["icer"] = (costs[i] - costs[prev]) / (qalys[i] - qalys[prev])
        rows.append(row)
    return rows


def economics_table(outcomes: pl.DataFrame, wtp: float, currency: str) -> pl.DataFrame:
    """economics.parquet: the incremental analysis of the whole cohort (subgroup "all"),
    with each arm's net monetary benefit at ``wtp``."""
    df = outcomes.filter(pl.col("subgroup") == "all")
    if "qalys" not in df.columns:
        return pl.DataFrame()
    rows = incremental_analysis(df["arm"].to_list(), df["costs"].to_list(), df["qalys"].to_list())
    table = pl.DataFrame(rows, schema_overrides={"icer": pl.Float64, "compared_with": pl.Utf8})
    extra = df.select("arm", "life_years_disc", "costs_inc", "qalys_inc", "nmb", "nmb_inc")
    return table.join(extra, on="arm", how="left").with_columns(
        pl.lit(wtp).alias("willingness_to_pay"), pl.lit(currency).alias("currency"))


def acceptability(draws: pl.DataFrame, wtps) -> pl.DataFrame:
    """Share of draws (``draws``: per-draw outcomes, subgroup "all") in which each arm has
    the highest net monetary benefit, per willingness to pay in ``wtps``."""
    df = draws.filter(pl.col("subgroup") == "all").sort("draw", "arm")
    arms = sorted(df["arm"].unique().to_list())
    k = df["draw"].n_unique()
    costs = df["costs"].to_numpy().reshape(k, len(arms))
    qalys = df["qalys"].to_numpy().reshape(k, len(arms))
    rows = []
    for w in wtps:
        best = np.argmax(w * qalys - costs, axis=1)
        rows += [{"willingness_to_pay": float(w), "arm": a,
                  "probability_best": float(np.mean(best == i))} for i, a in enumerate(arms)]
    return pl.DataFrame(rows)


def balance_sheet(outcomes: pl.DataFrame, reference: str) -> pl.DataFrame:
    """The printed balance sheet: one row per event, the reference arm's rate per 1000 and
    each other arm's paired difference per 1000 (95 % interval; + caused, - prevented)."""
    df = outcomes.filter(pl.col("subgroup") == "all")
    events = [e for e in BALANCE if f"{e}_per_1000" in df.columns]
    if not events:
        return pl.DataFrame()
    def text(rec, col, sign=""):
        values = [rec[col], rec[f"{col}_lo"], rec[f"{col}_hi"]]
        if values[0] is None:
            return "-"
        if None in values:  # one patient: no interval
            return f"{values[0]:{sign}.1f}"
        return (f"{values[0]:{sign}.1f} ({values[1]:{sign}.1f} to {values[2]:{sign}.1f})")

    rows = []
    for e in events:
        row = {"event per 1000": e}
        for rec in df.iter_rows(named=True):
            if rec["arm"] == reference:
                row[f"{reference} (rate)"] = text(rec, f"{e}_per_1000")
            else:
                row[rec["arm"]] = text(rec, f"{e}_diff_per_1000", "+")
        rows.append(row)
    return pl.DataFrame(rows)


def economics_rows(economics: pl.DataFrame) -> pl.DataFrame:
    """The printed cost-effectiveness table (QALYs to 4 decimals, money to units)."""
    if economics.is_empty():
        return economics

    def text(col, fmt):
        return pl.col(col).map_elements(lambda v: None if v is None else fmt.format(v),
                                        return_dtype=pl.Utf8)

    return economics.select(
        "arm", text("life_years_disc", "{:.3f}").alias("LY (disc)"),
        text("qalys", "{:.4f}").alias("QALYs"), text("costs", "{:,.0f}").alias("costs"),
        text("qalys_inc", "{:+.4f}").alias("dQALY"), text("costs_inc", "{:+,.0f}").alias("dcost"),
        "status", text("icer", "{:,.0f}").alias("ICER vs previous"),
        text("nmb_inc", "{:+,.0f}").alias("dNMB"))
