"""Per-patient outcome tables from a simulated chunk (host side, numpy -> polars).

One row per patient and arm. Every column name is made here (``pct_column``,
``from_age_column``, ``FRACTURE_COLUMNS``), and summaries and the report take them from here.
Columns (units):

* identity and covariates: patient_id, arm, sex ("female"/"male"), age_entry (y), age_band
  (5-year band at entry), fmp_age (y, natural final menstrual period; null for men),
  surgery_age (y, bilateral oophorectomy; null if none), years_since_menopause (y at entry;
  null for men), uterus_intact (women), e2_post (pg/mL; women), t30 (ng/dL, testosterone at
  30), hypogonadal_onset (y; null if never; men), e2_entry (pg/mL), t_entry (ng/dL)
* BMD: peak_fn_bmd and fn_bmd_entry (g/cm2), fn_tscore_entry, tscore_category_entry
  ("normal" > -1, "osteopenia", "osteoporosis" <= -2.5), fn_tscore_end (T-score at the
  horizon), fn_pct_y{k} / ls_pct_y{k}: % change of femoral-neck / lumbar-spine BMD from entry
  to the end of year k after entry, k = 1..horizon
* expected (outcomes/readout.py): exp_hip_horizon / exp_mof_horizon (expected first hip /
  major osteoporotic fracture to the horizon), exp_p10_hip / exp_p10_mof (10-year probability
  from entry, competing with death), exp_p10_hip_age{A} / exp_p10_mof_age{A} (from age A,
  for a patient alive and fracture-free then; null if the window leaves the simulation)
* sampled, over the horizon: n_hip, n_vertebral, n_forearm, n_humerus, n_mof (fracture
  counts); by the study's ``by_age``: hip_by_age, mof_by_age (counts), hip_any / mof_any (at
  least one), ref_hip_any / ref_mof_any (the same patient in the reference arm, for paired
  contrasts); first_hip_year / first_mof_year / death_year (years after entry, 0-based; null
  if none); died; life_years
* harms (outcomes/harms.py; with ``[outcomes] harms``): <harm>_year (year after entry of the
  first event of each of ``HARMS``: invasive_breast_cancer, endometrial_cancer, dvt, pe,
  stroke, chd, colorectal_cancer; null if none), exp_<harm>_horizon (expected first events
  to the horizon), harm_death (died of a harm event in its year)
* balance (paired with the reference arm): ref_<event> (bool) for each of ``BALANCE``: the
  same patient's event in the reference arm (hip/mof: a first fracture within the horizon,
  death: died within it, harms: a first event)
* economics (outcomes/economics.py): life_years_disc, qalys, costs (discounted, the study's
  [economics] currency) and ref_life_years_disc, ref_qalys, ref_costs (reference arm)

T-scores are by each patient's sex (``config.TScoreReference``): NHANES III femoral neck of
white women aged 20-29 (mean 0.858, SD 0.120 g/cm2) for women, of white men aged 20-29 (0.934,
0.137) for men (Looker 1998 Osteoporos Int 8:468), unless the study sets others.
"""

from __future__ import annotations

import jax
import numpy as np
import polars as pl

from bonecohort.cohort import ChunkResult
from bonecohort.fit.screening import entry_bmd_and_tscore, tscore_by_sex
from bonecohort.model.params import Site
from bonecohort.outcomes.harms import HARMS
from bonecohort.outcomes.hazards import FractureSite

SITE_PREFIX = {Site.FEMORAL_NECK: "fn", Site.LUMBAR_SPINE: "ls"}
FRACTURE_COLUMNS = tuple(f"n_{s.key}" for s in FractureSite)
EVENTS = ("hip", "mof")  # first hip fracture; first major osteoporotic fracture (any site)
BALANCE = ("hip", "mof") + HARMS + ("death",)  # events of the benefit-harm balance sheet
ECONOMICS = ("life_years_disc", "qalys", "costs")
OSTEOPOROSIS_T = -2.5  # WHO
OSTEOPENIA_T = -1.0



class SimulationError(Exception):
    """Numerical failure (NaN/inf) in the simulation; the message lists the patients."""

def pct_column(site: Site, year: int) -> str:
    """% change of BMD at ``site`` from entry to the end of ``year`` after entry."""
    return f"{SITE_PREFIX[site]}_pct_y{year}"


def from_age_column(event: str, age: float) -> str:
    """Expected 10-year probability of a first ``event`` from ``age``."""
    return f"exp_p10_{event}_age{age:g}"


def expected_columns(probability_ages) -> list[str]:
    """The expected-probability columns, in table order."""
    cols = [f"exp_{e}_horizon" for e in EVENTS]
    for e in EVENTS:
        cols += [f"exp_p10_{e}"] + [from_age_column(e, a) for a in sorted(probability_ages)]
    return cols


def tscore_category(t):
    return np.where(t <= OSTEOPOROSIS_T, "osteoporosis",
                    np.where(t <= OSTEOPENIA_T, "osteopenia", "normal")).astype(object)


def age_band(age):
    lo = (np.floor(age / 5.0) * 5).astype(int)
    return np.char.add(np.char.add(lo.astype(str), "-"), (lo + 4).astype(str)).astype(object)


def _null_where(values, keep):
    v = np.asarray(values, np.float64)
    return pl.Series(np.where(keep & np.isfinite(v), v, np.nan)).fill_nan(None)


def _year_or_null(v):
    v = np.asarray(v)
    return _null_where(v, v >= 0).cast(pl.Int32)


def select_rows(result: ChunkResult, rows) -> ChunkResult:
    """The chunk's ``rows`` (index array) as numpy arrays."""
    return jax.tree.map(lambda v: np.asarray(v)[rows], result)


def _covariates(r: ChunkResult, tscore_reference) -> dict:
    p, life = r.patients, r.life
    male = p.male == 1.0
    fn_entry, t_entry = entry_bmd_and_tscore(p, life, tscore_reference)
    menopause = np.minimum(p.fmp_age, p.surgery_age)
    return {
        "sex": np.where(male, "male", "female").astype(object),
        "age_entry": p.age_entry,
        "age_band": age_band(p.age_entry),
        "fmp_age": _null_where(p.fmp_age, ~male),
        "surgery_age": _null_where(p.surgery_age, ~male),
        "years_since_menopause": _null_where(p.age_entry - menopause, ~male),
        "uterus_intact": _null_where(p.uterus_intact, ~male).cast(pl.Boolean),
        "e2_post": _null_where(p.e2_post, ~male),
        "t30": p.t30,
        "hypogonadal_onset": _null_where(p.hypogonadal_onset, male),
        "e2_entry": life.e2_entry,
        "t_entry": life.t_entry,
        "peak_fn_bmd": p.peak_fn_bmd,
        "fn_bmd_entry": fn_entry,
        "fn_tscore_entry": t_entry,
        "tscore_category_entry": tscore_category(t_entry),
    }


def _arm_columns(r: ChunkResult, a: int, ref: int, fn_entry, male, tscore_reference,
                 probability_ages) -> dict:
    life, out = r.life, r.outcomes.arms
    n = len(fn_entry)
    cols = {"fn_tscore_end": tscore_by_sex(fn_entry * life.bmd_rel[:, a, Site.FEMORAL_NECK, -1],
                                           male, tscore_reference)}
    for site in Site:
        pct = 100.0 * (life.bmd_rel[:, a, site, :] - 1.0)
        cols.update({pct_column(site, k + 1): pct[:, k] for k in range(pct.shape[1])})
    expected = {"exp_hip_horizon": out.hip_horizon, "exp_mof_horizon": out.mof_horizon,
                "exp_p10_hip": out.p10_hip, "exp_p10_mof": out.p10_mof}
    for i, age in enumerate(probability_ages):
        expected[from_age_column("hip", age)] = out.p10_hip_from_age[:, :, i]
        expected[from_age_column("mof", age)] = out.p10_mof_from_age[:, :, i]
    for name in expected_columns(probability_ages):
        cols[name] = _null_where(expected[name][:, a], np.ones(n, bool))
    ev = out.events
    for s, name in zip(FractureSite, FRACTURE_COLUMNS):
        cols[name] = ev.fractures[:, a, s].astype(np.int32)
    cols["n_mof"] = ev.fractures[:, a].sum(axis=1).astype(np.int32)
    by_age = ev.fractures_by_age  # (n, arms, 4)
    cols["hip_by_age"] = by_age[:, a, FractureSite.HIP].astype(np.int32)
    cols["mof_by_age"] = by_age[:, a].sum(axis=1).astype(np.int32)
    cols["hip_any"] = by_age[:, a, FractureSite.HIP] > 0
    cols["mof_any"] = by_age[:, a].sum(axis=1) > 0
    cols["ref_hip_any"] = by_age[:, ref, FractureSite.HIP] > 0
    cols["ref_mof_any"] = by_age[:, ref].sum(axis=1) > 0
    for key in ("first_hip_year", "first_mof_year", "death_year"):
        cols[key] = _year_or_null(getattr(ev, key)[:, a])
    cols["died"] = ev.death_year[:, a] >= 0
    cols["life_years"] = ev.life_years[:, a]
    if out.harm_expected is not None:
        for h, name in enumerate(HARMS):
            cols[f"{name}_year"] = _year_or_null(ev.harm_years[:, a, h])
            cols[f"exp_{name}_horizon"] = out.harm_expected[:, a, h]
        cols["harm_death"] = ev.harm_death[:, a]
    for key, flags in balance_events(ev, out.harm_expected is not None).items():
        cols[f"ref_{key}"] = flags[:, ref]
    if out.economics is not None:
        for name in ECONOMICS:
            values = getattr(out.economics, name.removesuffix("_disc"))
            cols[name], cols[f"ref_{name}"] = values[:, a], values[:, ref]
    return cols


def balance_events(ev, harms: bool) -> dict:
    """{event of ``BALANCE``: (n, arms) bool} from a chunk's sampled events."""
    flags = {"hip": ev.first_hip_year >= 0, "mof": ev.first_mof_year >= 0}
    if harms:
        flags.update({name: ev.harm_years[..., h] >= 0 for h, name in enumerate(HARMS)})
    flags["death"] = ev.death_year >= 0
    return flags


def patient_table(result: ChunkResult, arm_names, rows, reference_arm: str, outcomes_opts
                  ) -> pl.DataFrame:
    """The per-patient table of the chunk's ``rows`` (index array); ``outcomes_opts``: the
    study's [outcomes] (T-score reference, probability ages)."""
    r = select_rows(result, rows)
    ref_t = outcomes_opts.tscore_reference
    common = _covariates(r, ref_t)
    male = r.patients.male == 1.0
    frames = []
    for a, arm in enumerate(arm_names):
        cols = {"patient_id": r.patients.patient_id.astype(np.uint32),
                "arm": np.full(len(rows), arm, dtype=object), **common}
        cols.update(_arm_columns(r, a, arm_names.index(reference_arm), common["fn_bmd_entry"],
                                 male, ref_t, outcomes_opts.probability_ages))
        frames.append(pl.DataFrame(cols))
    return pl.concat(frames)


def nonfinite_patients(result: ChunkResult, rows):
    """Draws of the patients among ``rows`` whose simulated outputs contain NaN or inf
    (probabilities from given ages are NaN by design where the window leaves the simulation,
    and are not checked)."""
    r = select_rows(result, rows)
    checked = (r.life, r.outcomes._replace(arms=r.outcomes.arms._replace(
        p10_hip_from_age=None, p10_mof_from_age=None)))
    bad = np.zeros(len(rows), dtype=bool)
    for v in jax.tree.leaves(checked):
        bad |= ~np.isfinite(v.reshape(len(rows), -1).astype(np.float64)).all(axis=1)
    draws = {k: v for k, v in r.patients._asdict().items() if k != "persistence_u"}
    return [{k: float(v[i]) for k, v in draws.items()} for i in np.flatnonzero(bad)]
