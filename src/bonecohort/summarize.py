"""Summaries per arm from the per-patient table (lazy polars; never needs the table in memory)."""

from __future__ import annotations

import polars as pl

REPORT_YEARS = (1, 5, 10, 30)
OSTEOPOROSIS_T = -2.5  # WHO definition, femoral-neck T-score


def report_years(horizon: int):
    years = [y for y in REPORT_YEARS if y <= horizon]
    return years if horizon in years else years + [horizon]


def arm_summary(patients: pl.LazyFrame, horizon: int, arm_order) -> pl.DataFrame:
    """Mean % BMD change from entry at report years, per arm, sex and site, and the share (%)
    with femoral-neck T-score <= -2.5 at entry and at the horizon."""
    aggs = [pl.len().alias("patients")]
    for site, prefix in (("FN", "fn"), ("LS", "ls")):
        for y in report_years(horizon):
            aggs.append(pl.col(f"{prefix}_pct_y{y}").mean().alias(f"{site} %chg y{y}"))
    aggs += [
        (100 * (pl.col("fn_tscore_entry") <= OSTEOPOROSIS_T).mean()).alias("% T<=-2.5 entry"),
        (100 * (pl.col("fn_tscore_end") <= OSTEOPOROSIS_T).mean()).alias(
            f"% T<=-2.5 y{horizon}"),
    ]
    order = pl.DataFrame({"arm": list(arm_order), "_order": list(range(len(arm_order)))})
    out = patients.group_by("arm", "sex").agg(aggs).collect()
    return out.join(order, on="arm").sort("_order", "sex").drop("_order")


def format_summary(summary: pl.DataFrame) -> str:
    with pl.Config(tbl_rows=50, tbl_cols=50, tbl_width_chars=250, float_precision=2,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                   fmt_str_lengths=60):
        return str(summary)


def agent_notes(arms) -> list[str]:
    """One line per agent used in ``arms`` (evidence grade), then any warnings."""
    from .agents import AGENTS

    used = sorted({reg.agent for arm in arms for reg in arm.regimens})
    lines = [f"  {name}: evidence {AGENTS[name].evidence}" for name in used]
    lines += [f"WARNING: {AGENTS[name].warning}" for name in used if AGENTS[name].warning]
    return lines
