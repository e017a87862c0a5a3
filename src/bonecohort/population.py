"""Virtual patients: covariates and parameter draws for one patient (pure JAX).

Every draw for patient ``i`` comes from ``fold_in(key(seed), i)`` and then from
``fold_in(that_key, draw_index)``, so a patient's values do not depend on chunking, devices or
on how many other patients are simulated.

Distributions (women; sources in each field's comment):
* age at entry ~ Uniform(age_min, age_max)  (study design)
* age at final menstrual period ~ Normal(51, 3.5) truncated to [40, 60]
  (DESIGN.md section 4; median natural menopause 51-52 y, Gold 2013 SWAN Am J Epidemiol 178:70)
* postmenopausal serum estradiol ~ LogNormal(log 10 pg/mL, 0.35)  (5-15 pg/mL, DESIGN.md s.4)
* peak femoral-neck BMD at age 30 ~ Normal(0.858, 0.120) g/cm2: NHANES III white women
  20-29 y, the WHO/FRAX T-score reference (Looker 1998 Osteoporos Int 8:468)
* turnover scale, RANKL sensitivity (rho_L) and mechanostat scale ~ LogNormal(0, sd) per
  patient: inter-individual variability on the model's main rates. The sds are assumptions
  (0.25, 0.20, 0.20) chosen so that 3-year spine losses in untreated early-postmenopausal women
  spread over a few percent, as in SWAN (Greendale 2012 JBMR 27:111, SD of change ~4 %).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class PopulationSpec(NamedTuple):
    """Population of a study (static floats)."""

    age_min: float
    age_max: float
    fmp_mean: float = 51.0
    fmp_sd: float = 3.5
    fmp_min: float = 40.0
    fmp_max: float = 60.0
    e2_post_median: float = 10.0
    e2_post_sdlog: float = 0.35
    peak_fn_bmd_mean: float = 0.858
    peak_fn_bmd_sd: float = 0.120
    turnover_sdlog: float = 0.25
    rankl_sensitivity_sdlog: float = 0.20
    mech_sdlog: float = 0.20


class Patient(NamedTuple):
    """One virtual patient (scalars; a batch has a leading patient axis)."""

    patient_id: jnp.ndarray
    age_entry: jnp.ndarray  # years
    fmp_age: jnp.ndarray  # years
    e2_post: jnp.ndarray  # pg/mL
    peak_fn_bmd: jnp.ndarray  # g/cm2 at age 30
    turnover_scale: jnp.ndarray  # -, multiplies both sites' turnover
    rankl_sensitivity: jnp.ndarray  # -, multiplies rho_L
    mech_scale: jnp.ndarray  # -, multiplies both sites' mechanostat exponent


def sample_patient(seed, patient_id, spec: PopulationSpec, dtype=jnp.float32) -> Patient:
    """Draw patient ``patient_id`` of the population seeded by ``seed`` (ints).

    Standard draws are made in float32 whatever ``dtype`` is, then cast, so float32 and
    float64 runs of the same seed simulate the same patients.
    """
    key = jax.random.fold_in(jax.random.key(seed), patient_id)
    k = [jax.random.fold_in(key, i) for i in range(7)]
    f32 = jnp.float32
    normal = lambda kk: jax.random.normal(kk, (), f32).astype(dtype)  # noqa: E731
    age = jax.random.uniform(k[0], (), f32, spec.age_min, spec.age_max).astype(dtype)
    z_fmp = jax.random.truncated_normal(
        k[1], (spec.fmp_min - spec.fmp_mean) / spec.fmp_sd,
        (spec.fmp_max - spec.fmp_mean) / spec.fmp_sd, (), f32).astype(dtype)
    return Patient(
        patient_id=jnp.asarray(patient_id),
        age_entry=age,
        fmp_age=spec.fmp_mean + spec.fmp_sd * z_fmp,
        e2_post=spec.e2_post_median * jnp.exp(spec.e2_post_sdlog * normal(k[2])),
        peak_fn_bmd=spec.peak_fn_bmd_mean + spec.peak_fn_bmd_sd * normal(k[3]),
        turnover_scale=jnp.exp(spec.turnover_sdlog * normal(k[4])),
        rankl_sensitivity=jnp.exp(spec.rankl_sensitivity_sdlog * normal(k[5])),
        mech_scale=jnp.exp(spec.mech_sdlog * normal(k[6])),
    )
