"""Per-patient outcome tables from simulation outputs (host side, numpy -> polars).

One row per patient and arm. Columns (units):

* identity and covariates: patient_id, arm, sex ("female"/"male"), age_entry (y), age_band
  (5-year band at entry), fmp_age (y, natural final menstrual period; null for men),
  surgery_age (y, bilateral oophorectomy; null if none), years_since_menopause (y at entry;
  null for men), uterus_intact (women), e2_post (pg/mL; women), t30 (ng/dL, testosterone at
  30), hypogonadal_onset (y; null if never; men), e2_entry (pg/mL), t_entry (ng/dL)
* BMD: peak_fn_bmd and fn_bmd_entry (g/cm2), fn_tscore_entry, tscore_category_entry
  ("normal" > -1, "osteopenia", "osteoporosis" <= -2.5), fn_tscore_end (T-score at the
  horizon), fn_pct_y{k} / ls_pct_y{k}: % change of femoral-neck / lumbar-spine BMD from entry
  to the end of year k after entry, k = 1..horizon
* expected (outcomes.py): exp_p10_hip / exp_p10_mof (10-year probability of a first hip /
  major osteoporotic fracture from entry, competing with death), exp_hip_horizon /
  exp_mof_horizon (to the horizon), exp_p10_hip_age{A} / exp_p10_mof_age{A} (from age A,
  for a patient alive and fracture-free then; null if the window leaves the simulation)
* sampled, over the horizon: n_hip, n_vertebral, n_forearm, n_humerus, n_mof (fracture
  counts); by the study's ``by_age``: hip_by_age, mof_by_age (counts), hip_any / mof_any (at
  least one), ref_hip_any / ref_mof_any (the same patient in the reference arm, for paired
  contrasts); first_hip_year / first_mof_year / death_year (years after entry, 0-based; null
  if none); died; life_years

T-scores use the NHANES III femoral-neck reference of white women aged 20-29 (mean 0.858,
SD 0.120 g/cm2; Looker 1998 Osteoporos Int 8:468), the WHO/FRAX convention, for both sexes,
unless the study sets another reference.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .model.params import SITE_NAMES

SITE_PREFIX = {"femoral_neck": "fn", "lumbar_spine": "ls"}
FRACTURE_COLUMNS = ("n_hip", "n_vertebral", "n_forearm", "n_humerus")
OSTEOPOROSIS_T = -2.5  # WHO
OSTEOPENIA_T = -1.0


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


def host_arrays(patients, outputs, rows):
    """Patient fields and outputs of the selected ``rows`` of a chunk (already fetched to the
    host once per chunk by the caller), as numpy arrays."""
    p = {k: np.asarray(v)[rows] for k, v in patients._asdict().items() if k != "persistence_u"}
    out = {k: np.asarray(v)[rows] for k, v in outputs.items()}
    return p, out


def fn_bmd_and_tscore_entry(p, out, tscore_ref):
    """Femoral-neck BMD (g/cm2) and T-score at entry, computed on the host so that they do
    not depend on how XLA vectorized the chunk."""
    fn = SITE_NAMES.index("femoral_neck")
    bmd = p["peak_fn_bmd"] * out["bv_entry"][:, fn]
    return bmd, (bmd - tscore_ref[0]) / tscore_ref[1]


MAX_SCREENED_PER_PATIENT = 50  # give up if fewer than 1 in 50 simulated patients is eligible


def eligible_rows(patients, outputs, n_valid: int, eligibility,
                  tscore_ref=(0.858, 0.120)) -> np.ndarray:
    """Indices (among the first ``n_valid``) of patients meeting ``eligibility`` at entry."""
    p, out = host_arrays(patients, outputs, slice(0, n_valid))
    _, t_entry = fn_bmd_and_tscore_entry(p, out, tscore_ref)
    male = p["male"] == 1.0
    since = p["age_entry"] - np.minimum(p["fmp_age"], p["surgery_age"])
    ok = np.ones(n_valid, bool)
    lo, hi = eligibility.years_since_menopause
    if np.isfinite(lo) or np.isfinite(hi):
        ok &= ~male & (since >= lo) & (since <= hi)
    lo, hi = eligibility.tscore
    ok &= (t_entry >= lo) & (t_entry <= hi)
    lo, hi = eligibility.testosterone
    ok &= (out["t_entry"] >= lo) & (out["t_entry"] <= hi)
    if eligibility.uterus != "any":
        ok &= ~male & ((p["uterus_intact"] == 1.0) == (eligibility.uterus == "intact"))
    return np.flatnonzero(ok)


def patient_table(patients, outputs, arm_names, rows, reference_arm: str,
                  tscore_ref=(0.858, 0.120)) -> pl.DataFrame:
    """Build the per-patient table for the chunk ``rows`` (index array)."""
    p, out = host_arrays(patients, outputs, rows)
    n = len(rows)
    male = p["male"] == 1.0
    fn = SITE_NAMES.index("femoral_neck")
    fn_entry, t_entry = fn_bmd_and_tscore_entry(p, out, tscore_ref)
    ref = arm_names.index(reference_arm)
    by_age = out["fractures_by_age"]  # (n, arms, 4)
    menopause = np.minimum(p["fmp_age"], p["surgery_age"])
    common = {
        "patient_id": p["patient_id"].astype(np.uint32),
        "sex": np.where(male, "male", "female").astype(object),
        "age_entry": p["age_entry"],
        "age_band": age_band(p["age_entry"]),
        "fmp_age": _null_where(p["fmp_age"], ~male),
        "surgery_age": _null_where(p["surgery_age"], ~male),
        "years_since_menopause": _null_where(p["age_entry"] - menopause, ~male),
        "uterus_intact": _null_where(p["uterus_intact"], ~male).cast(pl.Boolean),
        "e2_post": _null_where(p["e2_post"], ~male),
        "t30": p["t30"],
        "hypogonadal_onset": _null_where(p["hypogonadal_onset"], male),
        "e2_entry": out["e2_entry"],
        "t_entry": out["t_entry"],
        "peak_fn_bmd": p["peak_fn_bmd"],
        "fn_bmd_entry": fn_entry,
        "fn_tscore_entry": t_entry,
        "tscore_category_entry": tscore_category(t_entry),
    }
    frames = []
    for a, arm in enumerate(arm_names):
        cols = {"patient_id": common["patient_id"], "arm": np.full(n, arm, dtype=object)}
        cols.update({k: v for k, v in common.items() if k != "patient_id"})
        cols["fn_tscore_end"] = (fn_entry * out["bv_rel"][:, a, fn, -1] - tscore_ref[0]) \
            / tscore_ref[1]
        for s, site in enumerate(SITE_NAMES):
            pct = 100.0 * (out["bv_rel"][:, a, s, :] - 1.0)
            for k in range(pct.shape[1]):
                cols[f"{SITE_PREFIX[site]}_pct_y{k + 1}"] = pct[:, k]
        for key in sorted(k for k in out if k.startswith("exp_")):
            cols[key] = _null_where(out[key][:, a], np.ones(n, bool))
        for i, name in enumerate(FRACTURE_COLUMNS):
            cols[name] = out["fractures"][:, a, i].astype(np.int32)
        cols["n_mof"] = out["fractures"][:, a].sum(axis=1).astype(np.int32)
        cols["hip_by_age"] = by_age[:, a, 0].astype(np.int32)
        cols["mof_by_age"] = by_age[:, a].sum(axis=1).astype(np.int32)
        cols["hip_any"] = by_age[:, a, 0] > 0
        cols["mof_any"] = by_age[:, a].sum(axis=1) > 0
        cols["ref_hip_any"] = by_age[:, ref, 0] > 0
        cols["ref_mof_any"] = by_age[:, ref].sum(axis=1) > 0
        for key in ("first_hip_year", "first_mof_year", "death_year"):
            cols[key] = _year_or_null(out[key][:, a])
        cols["died"] = out["death_year"][:, a] >= 0
        cols["life_years"] = out["life_years"][:, a]
        frames.append(pl.DataFrame(cols))
    return pl.concat(frames)


def nonfinite_patients(patients, outputs, rows):
    """Draws of the patients among ``rows`` whose simulated outputs contain NaN or inf
    (window probabilities outside the simulation are NaN by design and not checked)."""
    p, out = host_arrays(patients, outputs, rows)
    bad = np.zeros(len(rows), dtype=bool)
    for key, v in out.items():
        if key.startswith("exp_p10_") and "_age" in key:
            continue
        bad |= ~np.isfinite(v.reshape(len(rows), -1).astype(np.float64)).all(axis=1)
    return [{k: float(p[k][i]) for k in p} for i in np.flatnonzero(bad)]
