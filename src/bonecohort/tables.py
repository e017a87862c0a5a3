"""Per-patient outcome tables from simulation outputs (host side, polars).

One row per patient and arm. Columns (units):
  patient_id, arm, sex ("female"/"male"), age_entry (y), fmp_age (y, natural final menstrual
  period; null for men), surgery_age (y, bilateral oophorectomy; null if none),
  uterus_intact (women), e2_post (pg/mL; women), t30 (ng/dL, testosterone at 30),
  hypogonadal_onset (y; null if never; men), peak_fn_bmd (g/cm2),
  fn_bmd_entry (g/cm2), fn_tscore_entry, fn_tscore_end (T-score at the horizon),
  fn_pct_y{k}, ls_pct_y{k}: % change of femoral-neck / lumbar-spine BMD from entry to the end
  of year k after entry, k = 1..horizon.

T-scores use the NHANES III femoral-neck reference of white women aged 20-29 (mean 0.858,
SD 0.120 g/cm2; Looker 1998 Osteoporos Int 8:468), the WHO/FRAX convention, for both sexes.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .model.params import SITE_NAMES

FN_REFERENCE_MEAN = 0.858  # g/cm2, NHANES III white women 20-29 y
FN_REFERENCE_SD = 0.120  # g/cm2
SITE_PREFIX = {"femoral_neck": "fn", "lumbar_spine": "ls"}


def t_score(bmd):
    return (bmd - FN_REFERENCE_MEAN) / FN_REFERENCE_SD


def patient_table(patients, outputs, arm_names, n_valid: int) -> pl.DataFrame:
    """Build the per-patient table for the first ``n_valid`` rows of one chunk."""
    p = {k: np.asarray(v)[:n_valid] for k, v in patients._asdict().items()
         if k != "persistence_u"}
    bv_entry = np.asarray(outputs["bv_entry"])[:n_valid]
    bv_rel = np.asarray(outputs["bv_rel"])[:n_valid]  # (n, arms, sites, years)
    fn = SITE_NAMES.index("femoral_neck")
    fn_entry = p["peak_fn_bmd"] * bv_entry[:, fn]
    male = p["male"] == 1.0
    finite_or_null = lambda v, keep: pl.Series(np.where(keep & np.isfinite(v), v, np.nan)  # noqa
                                               ).fill_nan(None)
    frames = []
    for a, arm in enumerate(arm_names):
        cols = {
            "patient_id": p["patient_id"].astype(np.uint32),
            "arm": np.full(n_valid, arm, dtype=object),
            "sex": np.where(male, "male", "female").astype(object),
            "age_entry": p["age_entry"],
            "fmp_age": finite_or_null(p["fmp_age"], ~male),
            "surgery_age": finite_or_null(p["surgery_age"], ~male),
            "uterus_intact": finite_or_null(p["uterus_intact"], ~male).cast(pl.Boolean),
            "e2_post": finite_or_null(p["e2_post"], ~male),
            "t30": p["t30"],
            "hypogonadal_onset": finite_or_null(p["hypogonadal_onset"], male),
            "peak_fn_bmd": p["peak_fn_bmd"],
            "fn_bmd_entry": fn_entry,
            "fn_tscore_entry": t_score(fn_entry),
            "fn_tscore_end": t_score(fn_entry * bv_rel[:, a, fn, -1]),
        }
        for s, site in enumerate(SITE_NAMES):
            pct = 100.0 * (bv_rel[:, a, s, :] - 1.0)
            for k in range(pct.shape[1]):
                cols[f"{SITE_PREFIX[site]}_pct_y{k + 1}"] = pct[:, k]
        frames.append(pl.DataFrame(cols))
    return pl.concat(frames)


def nonfinite_patients(patients, outputs, n_valid: int):
    """Patient ids (and their draws) whose outputs contain NaN or inf."""
    bad = np.zeros(n_valid, dtype=bool)
    for v in outputs.values():
        arr = np.asarray(v)[:n_valid]
        bad |= ~np.isfinite(arr.reshape(n_valid, -1)).all(axis=1)
    if not bad.any():
        return []
    p = {k: np.asarray(v)[:n_valid][bad] for k, v in patients._asdict().items()
         if k != "persistence_u"}
    return [{k: float(p[k][i]) for k in p} for i in range(int(bad.sum()))]
