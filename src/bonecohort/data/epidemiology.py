"""Epidemiology tables -> per-age arrays (imperative shell: reads CSV files).

Files (``bonecohort/data/epidemiology/``, linked from configs/epidemiology; sources in
SOURCES.md there for how each number was read and its caveats):

* ``hip_fracture_incidence.csv``: US hip-fracture incidence per 100,000 person-years by sex and
  5-year band 50-54 ... 85+ (Ettinger 2010 Osteoporos Int 21:25, Table 1, NIS 2006).
* ``other_fracture_ratios.csv``: clinical vertebral, forearm and humerus incidence relative to
  hip by sex and band, ages 65+ (Taylor 2011 Osteoporos Int 22:1263, Medicare 2000-2005).
* ``life_table_us.csv``: probability of death qx by single year of age 50-100 and sex (SSA
  2022 period life table).

Assumptions where the tables are silent (each is a choice, stated here):

* Below 50 no osteoporotic fracture hazard is modelled (the tables start at 50).
* Non-hip ratios below 65: the tables have none. Ratios fall with age (Leslie 2014 JBMR
  29:1067), so carrying the 65-69 ratio back would understate forearm and vertebral fractures in
  the 50s. We extrapolate each site's log ratio linearly in age from its 65-69 -> 75-79 trend
  back to ages 50-64 (e.g. women's forearm/hip ~5.7 at 50-54, ~160 per 100,000).
* Incidence is constant within a band; 85+ is used flat to the end of life.
* Mortality below 50 and above 100: Gompertz extrapolation of the table (log qx linear in age
  with the slope of ages 50-60 below, 90-100 above), qx capped at 0.6.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bonecohort.data import EPIDEMIOLOGY_DIR

MAX_AGE = 121  # arrays cover integer ages 0 .. MAX_AGE - 1
SITES = ("hip", "clinical_vertebral", "forearm", "humerus")
SEX_INDEX = {"F": 0, "M": 1}
DEFAULT_DIR = EPIDEMIOLOGY_DIR


class EpiTables(NamedTuple):
    """Per-age arrays (numpy, float64); index [sex (0 women, 1 men), integer age]."""

    incidence: np.ndarray  # (sites, 2, MAX_AGE) per person-year, site order of SITES
    qx: np.ndarray  # (2, MAX_AGE) probability of death within the year of age


class EpidemiologyError(Exception):
    """A table is missing or malformed (the message names the file, row and field)."""


def read_rows(path: Path) -> list[dict]:
    """The rows of a CSV table as dicts; an ``EpidemiologyError`` naming it if unreadable."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise EpidemiologyError(f"{path}: cannot be read ({exc}).") from None


def number(row, field, path, i, default=None):
    """``row[field]`` as a float (``default`` for an empty cell, if given); an
    ``EpidemiologyError`` naming file, row and field otherwise."""
    if default is not None and not (row.get(field) or "").strip():
        return default
    try:
        return float(row[field])
    except (KeyError, TypeError, ValueError):
        raise EpidemiologyError(f"{path}: row {i + 2} field '{field}': expected a number, got "
                                f"{row.get(field)!r}.") from None


def _band_index(rows, path, value_field, keep=lambda r: True):
    """{(sex, age_lo): (age_hi, value)} for rows passing ``keep``."""
    out = {}
    for i, r in enumerate(rows):
        if not keep(r):
            continue
        if r.get("sex") not in SEX_INDEX:
            raise EpidemiologyError(f"{path}: row {i + 2} field 'sex': expected F or M.")
        out[(r["sex"], int(number(r, "age_lo", path, i)))] = (
            int(number(r, "age_hi", path, i)), number(r, value_field, path, i))
    return out


def load_tables(directory: Path | str = DEFAULT_DIR) -> EpiTables:
    d = Path(directory)
    hip_path, ratio_path, life_path = (d / "hip_fracture_incidence.csv",
                                       d / "other_fracture_ratios.csv", d / "life_table_us.csv")
    hip = _band_index(read_rows(hip_path), hip_path, "hip_per_100k")
    ratio_rows = read_rows(ratio_path)
    incidence = np.zeros((len(SITES), 2, MAX_AGE))
    ages = np.arange(MAX_AGE)
    for (sex, lo), (hi, per_100k) in hip.items():
        incidence[0, SEX_INDEX[sex], (ages >= lo) & (ages <= min(hi, MAX_AGE - 1))] = (
            per_100k / 1e5)
    for s, site in enumerate(SITES[1:], start=1):
        ratios = _band_index(ratio_rows, ratio_path, "per_100k_or_ratio_to_hip",
                             lambda r, site=site: r.get("site") == site and r.get("kind") == "ratio")
        for sex, x in SEX_INDEX.items():
            bands = sorted((lo, hi, v) for (sx, lo), (hi, v) in ratios.items() if sx == sex)
            if not bands or bands[0][0] != 65:
                raise EpidemiologyError(f"{ratio_path}: no {site} ratios from 65 for sex {sex}.")
            ratio = np.zeros(MAX_AGE)
            for lo, hi, v in bands:
                ratio[(ages >= lo) & (ages <= hi)] = v
            by_lo = {lo: v for lo, _, v in bands}
            slope = (np.log(by_lo[75]) - np.log(by_lo[65])) / 10.0  # per year of age
            for lo in (50, 55, 60):
                ratio[lo:lo + 5] = by_lo[65] * np.exp(slope * (lo - 65))
            incidence[s, x] = incidence[0, x] * ratio
    life = read_rows(life_path)
    qx = np.zeros((2, MAX_AGE))
    for sex, x in SEX_INDEX.items():
        table = {int(number(r, "age", life_path, i)): number(r, "qx", life_path, i)
                 for i, r in enumerate(life) if r.get("sex") == sex}
        if not table:
            raise EpidemiologyError(f"{life_path}: no rows for sex {sex}.")
        lo, hi = min(table), max(table)
        for a, q in table.items():
            qx[x, a] = q
        low_slope = (np.log(table[lo + 10]) - np.log(table[lo])) / 10.0
        high_slope = (np.log(table[hi]) - np.log(table[hi - 10])) / 10.0
        qx[x, :lo] = table[lo] * np.exp(low_slope * (ages[:lo] - lo))
        qx[x, hi + 1:] = np.minimum(table[hi] * np.exp(high_slope * (ages[hi + 1:] - hi)), 0.6)
    return EpiTables(incidence=incidence, qx=np.minimum(qx, 0.6))
