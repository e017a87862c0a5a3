"""Harm, utility and cost tables -> per-age arrays and per-name records (reads CSV files).

Files (``bonecohort/data/epidemiology/harms/``; how each number was read, and its caveats:
SOURCES.md there):

* ``harm_effects.csv``: hazard ratio (95 % interval) of each harm outcome per treatment
  component ("agent.route", or "unopposed_estrogen"), on treatment or for ``after_years``
  after stopping; evidence grade and source per row.
* ``baseline_incidence.csv``: US incidence of first events per 100,000 person-years by sex
  and age band (endometrial cancer per woman with a uterus).
* ``event_mortality.csv``: case fatality in the event's year and excess annual death hazard
  for ``excess_years`` after it, by sex ("both" for both).
* ``utilities.csv`` (rows ``age_norm``): EQ-5D norms by sex and age band;
  ``event_utilities.csv``: utility multipliers in the year of an event and later;
  ``us_costs.csv``: US costs of events (first year, later years) and drugs per year, each
  with its currency year.

Where a row gives no interval, probabilistic analyses use stated default spreads
(``DEFAULT_SPREAD``). Below the youngest band a table's first band is used; bands hold
constant within them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bonecohort.data import EPIDEMIOLOGY_DIR
from bonecohort.data.epidemiology import EpidemiologyError as HarmTableError
from bonecohort.data.epidemiology import number
from bonecohort.data.epidemiology import read_rows as rows

HARMS_DIR = EPIDEMIOLOGY_DIR / "harms"
MAX_AGE = 121
SEXES = {"F": (0,), "M": (1,), "both": (0, 1)}
Z95 = 1.959964
# Spreads used where a row states no interval (assumptions): SD of log hazard ratio log(1.5)/z
# (95 % within x/÷ 1.5), SD of a utility multiplier 0.05, SD of log cost 0.2 (x/÷ 1.48).
DEFAULT_SPREAD = {"log_hr": math.log(1.5) / Z95, "utility": 0.05, "log_cost": 0.2}


class Effect(NamedTuple):
    component: str
    outcome: str
    period: str  # on_treatment or after_stopping
    log_hr: float
    log_hr_sd: float
    after_years: float
    grade: str
    source: str


class HarmTables(NamedTuple):
    effects: tuple  # (Effect, ...)
    incidence: dict  # outcome -> (2, MAX_AGE) per person-year
    mortality: dict  # outcome -> (case_fatality (2,), excess (2,), excess_years)
    utility_norm: np.ndarray  # (2, MAX_AGE)
    utilities: dict  # (outcome, period) -> (multiplier, sd)
    costs: dict  # (item, kind) -> (usd, sd of log, currency year)


def log_sd(row, path, i, lo_field="ci_lo", hi_field="ci_hi", default=None):
    """SD on the log scale from a 95 % interval, or ``default`` when none is given."""
    if not (row.get(lo_field) or "").strip():
        return default
    lo, hi = number(row, lo_field, path, i), number(row, hi_field, path, i)
    return (math.log(hi) - math.log(lo)) / (2 * Z95)


def _effects(path: Path) -> tuple:
    out = []
    for i, r in enumerate(rows(path)):
        if r.get("period") not in ("on_treatment", "after_stopping"):
            raise HarmTableError(f"{path}: row {i + 2} field 'period': expected on_treatment "
                                 f"or after_stopping, got {r.get('period')!r}.")
        out.append(Effect(r["component"], r["outcome"], r["period"],
                          math.log(number(r, "hr", path, i)),
                          log_sd(r, path, i, default=DEFAULT_SPREAD["log_hr"]),
                          number(r, "after_years", path, i, 0.0), r.get("evidence_grade", ""),
                          r.get("source", "")))
    return tuple(out)


def _banded(path: Path, value_field, scale=1.0, key="outcome", keep=lambda r: True) -> dict:
    """{key: (2, MAX_AGE)} from the rows (passing ``keep``) with sex, age_lo, age_hi and a
    value."""
    out = {}
    for i, r in enumerate(rows(path)):
        if not keep(r):
            continue
        if r.get("sex") not in SEXES:
            raise HarmTableError(f"{path}: row {i + 2} field 'sex': expected F, M or both.")
        arr = out.setdefault(r[key], np.full((2, MAX_AGE), np.nan))
        lo, hi = int(number(r, "age_lo", path, i)), int(number(r, "age_hi", path, i))
        for s in SEXES[r["sex"]]:
            arr[s, lo:min(hi, MAX_AGE - 1) + 1] = number(r, value_field, path, i) * scale
    for name, arr in out.items():
        for s in range(2):
            known = np.flatnonzero(~np.isnan(arr[s]))
            if not len(known):
                raise HarmTableError(f"{path}: no rows for '{name}' and sex {'FM'[s]}.")
            arr[s, :known[0]] = arr[s, known[0]]
            arr[s] = np.where(np.isnan(arr[s]), arr[s, known[-1]], arr[s])
    return out


def _mortality(path: Path) -> dict:
    out = {}
    for i, r in enumerate(rows(path)):
        cf, ex, years = out.setdefault(r["outcome"], (np.zeros(2), np.zeros(2), [0.0]))
        for s in SEXES[r["sex"]]:
            cf[s] = number(r, "case_fatality", path, i, 0.0)
            ex[s] = number(r, "excess_annual", path, i, 0.0)
        years[0] = max(years[0], number(r, "excess_years", path, i, 0.0))
    return {k: (cf, ex, years[0]) for k, (cf, ex, years) in out.items()}


def _utilities(path: Path) -> dict:
    out = {}
    for i, r in enumerate(rows(path)):
        m = number(r, "multiplier", path, i)
        sd = DEFAULT_SPREAD["utility"]
        if (r.get("ci_lo") or "").strip():
            sd = (number(r, "ci_hi", path, i) - number(r, "ci_lo", path, i)) / (2 * Z95)
        out[(r["outcome"], r["period"])] = (m, sd)
    return out


def _costs(path: Path) -> dict:
    out = {}
    for i, r in enumerate(rows(path)):
        if not (r.get("value_usd") or "").strip():
            continue
        out[(r["item"], r["kind"])] = (number(r, "value_usd", path, i),
                                       log_sd(r, path, i, default=DEFAULT_SPREAD["log_cost"]),
                                       r.get("currency_year", ""))
    return out


def load_harm_tables(directory: Path | str = HARMS_DIR) -> HarmTables:
    d = Path(directory)
    norm = _banded(d / "utilities.csv", "value", key="kind",
                   keep=lambda r: r.get("kind") == "age_norm")["age_norm"]
    return HarmTables(
        effects=_effects(d / "harm_effects.csv"),
        incidence=_banded(d / "baseline_incidence.csv", "per_100k_person_years", 1e-5),
        mortality=_mortality(d / "event_mortality.csv"),
        utility_norm=norm,
        utilities=_utilities(d / "event_utilities.csv"),
        costs=_costs(d / "us_costs.csv"))
