"""Summaries per arm and subgroup from the per-patient table (lazy polars).

Every summary is a group-by aggregation over a ``LazyFrame`` (``pl.scan_parquet`` of the
per-patient table), so only the columns it needs are read and the whole table is never held
in memory.

Intervals (95 %):
* rates per 1000: mean of per-patient counts +/- 1.96 SD / sqrt(n) (normal approximation);
* paired contrasts vs the reference arm on the same patients (common random numbers):
  risk difference of "at least one fracture by ``by_age``" = mean of per-patient differences
  +/- 1.96 SD / sqrt(n); relative risk = p_arm / p_ref with var(log RR) = (b + c) / (n_arm n_ref)
  for discordant pairs b, c and event counts n_arm, n_ref (Agresti, Categorical Data
  Analysis, matched pairs); number needed to treat NNT = 1 / (p_ref - p_arm) when the arm
  prevents fractures (NNH = 1 / (p_arm - p_ref) when it causes them).
"""

from __future__ import annotations

import polars as pl

from bonecohort.model.params import Site
from bonecohort.shell.balance import balance_aggs, economics_aggs, mean_interval
from bonecohort.shell.tables import (
    EVENTS,
    FRACTURE_COLUMNS,
    OSTEOPOROSIS_T,
    SITE_PREFIX,
    from_age_column,
    pct_column,
)

REPORT_YEARS = (1, 5, 10, 30)
Z = 1.96
SUBGROUPS = ("all", "sex", "age_band", "tscore_category_entry")  # and, with women, uterus_intact


def report_years(horizon: int):
    years = [y for y in REPORT_YEARS if y <= horizon]
    return years if horizon in years else years + [horizon]


def _ordered(df: pl.DataFrame, arm_order, *more) -> pl.DataFrame:
    order = pl.DataFrame({"arm": list(arm_order), "_order": list(range(len(arm_order)))})
    return df.join(order, on="arm").sort("_order", *more).drop("_order")


def arm_summary(patients: pl.LazyFrame, horizon: int, arm_order) -> pl.DataFrame:
    """Mean % BMD change from entry at report years, per arm, sex and site, and the share (%)
    with femoral-neck T-score <= -2.5 at entry and at the horizon."""
    aggs = [pl.len().alias("patients")]
    for site in Site:
        for y in report_years(horizon):
            # float64 sums: a float32 mean's last bit depends on the order of the threads' sums
            aggs.append(pl.col(pct_column(site, y)).cast(pl.Float64).mean().alias(
                f"{SITE_PREFIX[site].upper()} %chg y{y}"))
    aggs += [
        (100 * (pl.col("fn_tscore_entry") <= OSTEOPOROSIS_T).mean()).alias("% T<=-2.5 entry"),
        (100 * (pl.col("fn_tscore_end") <= OSTEOPOROSIS_T).mean()).alias(
            f"% T<=-2.5 y{horizon}"),
    ]
    return _ordered(patients.group_by("arm", "sex").agg(aggs).collect(), arm_order, "sex")


def _rate(col: str, name: str):
    """Per 1000 patients with a 95 % interval, from per-patient counts."""
    return mean_interval(pl.col(col), name, 1000.0)


def _paired(event: str, label: str):
    arm, ref = pl.col(f"{event}_any"), pl.col(f"ref_{event}_any")
    diff = arm.cast(pl.Int8) - ref.cast(pl.Int8)
    return [
        arm.sum().alias(f"_{label}_a"), ref.sum().alias(f"_{label}_r"),
        (arm & ~ref).sum().alias(f"_{label}_b"), (~arm & ref).sum().alias(f"_{label}_c"),
        diff.mean().alias(f"_{label}_d"), diff.std().alias(f"_{label}_ds"),
    ]


def _contrast(label: str):
    """RR with its interval, risk difference per 1000 with its interval, NNT / NNH."""
    a, r = pl.col(f"_{label}_a"), pl.col(f"_{label}_r")
    b, c = pl.col(f"_{label}_b"), pl.col(f"_{label}_c")
    d, ds, n = pl.col(f"_{label}_d"), pl.col(f"_{label}_ds"), pl.col("patients")
    rr = pl.when(r > 0).then(a / r)
    se = ((b + c) / (a * r)).sqrt()
    se_d = Z * ds / n.sqrt()
    return [
        rr.alias(f"{label}_rr"),
        pl.when((a > 0) & (r > 0)).then(rr * (-Z * se).exp()).alias(f"{label}_rr_lo"),
        pl.when((a > 0) & (r > 0)).then(rr * (Z * se).exp()).alias(f"{label}_rr_hi"),
        (1000 * d).alias(f"{label}_rd_per_1000"),
        (1000 * (d - se_d)).alias(f"{label}_rd_lo"),
        (1000 * (d + se_d)).alias(f"{label}_rd_hi"),
        pl.when(d < 0).then(-1.0 / d).alias(f"{label}_nnt"),
        pl.when(d > 0).then(1.0 / d).alias(f"{label}_nnh"),
    ]


def outcome_summary(patients: pl.LazyFrame, arm_order, probability_ages=(),
                    wtp: float = 100000.0) -> pl.DataFrame:
    """Fractures, deaths and contrasts per arm, overall and by subgroup.

    Columns: subgroup ("all", "sex", "age_band", "tscore_category_entry"), level, arm,
    patients; per 1000 with _lo/_hi: hip, vertebral, forearm, humerus, mof (over the
    horizon), hip_by_age, mof_by_age, deaths_horizon (deaths over the horizon); life_years
    (mean); exp_p10_hip_pct /
    exp_p10_mof_pct (mean expected 10-year probability from entry, %), p10_hip_age{A}_pct /
    p10_mof_age{A}_pct (from age A, among patients whose simulation covers it); hip_* and
    mof_* contrasts vs the reference arm (see module docstring); the balance sheet and
    economic columns of balance.py (``wtp``: willingness to pay per QALY).
    """
    aggs = [pl.len().alias("patients")]
    counts = [(c, c.removeprefix("n_")) for c in FRACTURE_COLUMNS + ("n_mof",)]
    for col, name in counts + [(f"{e}_by_age", f"{e}_by_age") for e in EVENTS]:
        aggs += _rate(col, name)
    aggs += _rate("died", "deaths_horizon")
    aggs += [pl.col("life_years").mean().alias("life_years"),
             (100 * pl.col("exp_p10_hip").mean()).alias("exp_p10_hip_pct"),
             (100 * pl.col("exp_p10_mof").mean()).alias("exp_p10_mof_pct")]
    for event in EVENTS:
        for age in probability_ages:
            col = from_age_column(event, age)
            aggs.append((100 * pl.col(col).mean()).alias(f"{col.removeprefix('exp_')}_pct"))
    aggs += _paired("hip", "hip") + _paired("mof", "mof")
    columns = patients.collect_schema().names()
    aggs += balance_aggs(columns) + economics_aggs(columns, wtp)
    frames = []
    subgroups = SUBGROUPS + (("uterus_intact",) if _has_women(patients) else ())
    for sub in subgroups:
        keys = ["arm"] if sub == "all" else ["arm", sub]
        rows = patients.filter(pl.col("sex") == "female") if sub == "uterus_intact" else patients
        df = rows.with_columns(pl.col("died").cast(pl.Int8)).group_by(keys).agg(aggs)
        df = df.with_columns(_contrast("hip") + _contrast("mof")).collect()
        level = pl.lit("all") if sub == "all" else pl.col(sub).cast(pl.Utf8)
        df = df.with_columns(pl.lit(sub).alias("subgroup"), level.alias("level"))
        frames.append(df.select(["subgroup", "level"] + [c for c in df.columns
                                                          if c not in (sub, "subgroup", "level")
                                                          and not c.startswith("_")]))
    out = pl.concat(frames, how="vertical_relaxed")
    sub_order = pl.DataFrame({"subgroup": list(subgroups), "_s": list(range(len(subgroups)))})
    out = out.join(sub_order, on="subgroup").sort("_s", "level").drop("_s")
    return _ordered(out, arm_order).sort(
        pl.col("subgroup").replace_strict({s: i for i, s in enumerate(subgroups)}), "level",
        maintain_order=True)


def _has_women(patients: pl.LazyFrame) -> bool:
    """Whether the table holds women (whose results are also split by uterus status)."""
    return bool(patients.select((pl.col("sex") == "female").any()).collect().item())


def arm_tables(patients: pl.LazyFrame, study) -> tuple:
    """(``arm_summary``, ``outcome_summary``) of a study's per-patient table: the two tables
    a run reports per arm (and, under parameter draws, per draw)."""
    arms = [a.name for a in study.arms]
    return (arm_summary(patients, study.horizon_years, arms),
            outcome_summary(patients, arms, study.outcomes.probability_ages,
                            study.economics.willingness_to_pay))


def cumulative_incidence(patients: pl.LazyFrame, horizon: int, arm_order) -> pl.DataFrame:
    """Share (%) with a first hip / first major osteoporotic fracture, and dead, by the end
    of each year after entry (sampled events), per arm."""
    aggs = []
    for k in range(horizon):
        aggs += [
            (100 * (pl.col("first_hip_year") <= k).fill_null(False).mean()).alias(f"hip_{k + 1}"),
            (100 * (pl.col("first_mof_year") <= k).fill_null(False).mean()).alias(f"mof_{k + 1}"),
            (100 * (pl.col("death_year") <= k).fill_null(False).mean()).alias(f"dead_{k + 1}"),
        ]
    wide = patients.group_by("arm").agg(aggs).collect()
    rows = []
    for rec in wide.iter_rows(named=True):
        for k in range(1, horizon + 1):
            rows.append({"arm": rec["arm"], "year": k, "hip_pct": rec[f"hip_{k}"],
                         "mof_pct": rec[f"mof_{k}"], "dead_pct": rec[f"dead_{k}"]})
    return _ordered(pl.DataFrame(rows), arm_order, "year")


def tscore_distribution(patients: pl.LazyFrame, arm_order) -> pl.DataFrame:
    """Femoral-neck T-score at entry and at the horizon per arm and sex: mean, SD, shares."""
    frames = []
    for when, col in (("entry", "fn_tscore_entry"), ("horizon", "fn_tscore_end")):
        t = pl.col(col)
        frames.append(patients.group_by("arm", "sex").agg(
            pl.lit(when).alias("time"), pl.len().alias("patients"),
            t.mean().alias("mean"), t.std().alias("sd"),
            t.quantile(0.1).alias("p10"), t.median().alias("median"), t.quantile(0.9).alias("p90"),
            (100 * (t <= -2.5).mean()).alias("osteoporosis_pct"),
            (100 * ((t > -2.5) & (t <= -1.0)).mean()).alias("osteopenia_pct"),
            (100 * (t > -1.0).mean()).alias("normal_pct")).collect())
    return _ordered(pl.concat(frames), arm_order, "sex", "time")


def _nnt(event: str):
    """NNT when the arm prevents fractures, "NNH n" when it causes them, "-" for none."""
    nnt, nnh = pl.col(f"{event}_nnt"), pl.col(f"{event}_nnh")
    return (pl.when(nnt.is_not_null()).then(nnt.round(0).cast(pl.Int64).cast(pl.Utf8))
            .when(nnh.is_not_null()).then(pl.lit("NNH ") + nnh.round(0).cast(pl.Int64)
                                          .cast(pl.Utf8))
            .otherwise(pl.lit("-")))


def headline(outcomes: pl.DataFrame, by_age: float, horizon: int) -> pl.DataFrame:
    """The printed table: overall fracture outcomes per arm (deaths over the ``horizon``)."""
    a = f"{by_age:g}"
    df = outcomes.filter(pl.col("subgroup") == "all")

    ui = "hip_rr_ui_lo" in df.columns  # run with --parameter-draws

    def ci(name, digits=1):
        """value (Monte Carlo interval) [uncertainty interval, with parameter draws]."""
        text = pl.format("{} ({}-{})", *(pl.col(c).round(digits) for c in
                                          (name, f"{name}_lo", f"{name}_hi")))
        if ui:
            text = pl.format("{} [{}-{}]", text, *(pl.col(f"{name}_ui_{e}").round(digits)
                                                   for e in ("lo", "hi")))
        return text

    return df.select(
        "arm", "patients",
        ci("hip_by_age").alias(f"hip/1000 by {a}"),
        ci("mof_by_age").alias(f"MOF/1000 by {a}"),
        ci("hip_rr", 2).alias("hip RR"),
        _nnt("hip").alias("hip NNT"),
        ci("mof_rr", 2).alias("MOF RR"),
        _nnt("mof").alias("MOF NNT"),
        pl.col("deaths_horizon").round(0).alias(f"deaths/1000 in {horizon} y"),
        pl.col("exp_p10_hip_pct").round(2).alias("10y hip %"),
        pl.col("exp_p10_mof_pct").round(2).alias("10y MOF %"),
    )


def format_summary(summary: pl.DataFrame) -> str:
    with pl.Config(tbl_rows=80, tbl_cols=50, tbl_width_chars=250, float_precision=2,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                   fmt_str_lengths=60):
        return str(summary)


def agent_notes(arms, drug_costs=()) -> list[str]:
    """One line per agent used in ``arms`` (evidence grade), agents without harm data or
    (among routes not priced in ``drug_costs``, the study's [economics]) without a price,
    then any warnings."""
    from bonecohort.exposure.agents import AGENTS  # noqa: PLC0415 (host metadata only)

    from bonecohort.outcome_inputs import harm_sources, priced_routes  # noqa: PLC0415

    used = sorted({reg.agent for arm in arms for reg in arm.regimens})
    routes = sorted({f"{reg.agent}.{reg.route_name}" for arm in arms for reg in arm.regimens})
    priced = priced_routes() | {route for route, _ in drug_costs}
    lines = [f"  {name}: evidence {AGENTS[name].evidence}" for name in used]
    lines += [f"  {name}: no harm hazard ratios found; its harms are taken as none"
              for name in used if not harm_sources(name)]
    lines += [f"  {route}: no price in us_costs.csv; its drug cost is 0 (set [economics] "
              f"drug_costs)" for route in routes if route not in priced]
    lines += [f"WARNING: {AGENTS[name].warning}" for name in used if AGENTS[name].warning]
    return lines
