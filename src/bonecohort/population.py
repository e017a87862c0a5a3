"""Virtual patients: covariates and parameter draws for one patient (pure JAX).

Every draw for patient ``i`` comes from ``fold_in(key(seed), i)`` and then from
``fold_in(that_key, draw_index)``, so a patient's values do not depend on chunking, devices or
on how many other patients are simulated.

Distributions (sources in each field's comment):
* sex: male with probability ``male_fraction`` (study design: 0 women only, 1 men only)
* age at entry ~ Uniform(age_min, age_max)  (study design)
* age at final menstrual period ~ Normal(51, 3.5) truncated to [40, 60]
  (median natural menopause 51-52 y, Gold 2013 SWAN Am J Epidemiol 178:70)
* postmenopausal serum estradiol ~ LogNormal(log 10 pg/mL, 0.35)  (5-15 pg/mL; SWAN,
  Randolph 2011 JCEM 96:746)
* peak femoral-neck BMD at age 30 ~ Normal(0.858, 0.120) g/cm2 in women: NHANES III white
  women 20-29 y, the WHO/FRAX T-score reference; Normal(0.934, 0.137) in men: NHANES III
  white men 20-29 y (Looker 1998 Osteoporos Int 8:468)
* uterus intact with probability ``uterus_intact_fraction`` (0.8: about one in five US women
  aged 50-59 has had a hysterectomy, Merrill 2008 Womens Health Issues 18:18)
* surgical menopause (bilateral oophorectomy) with probability ``surgical_fraction`` at an age
  ~ Uniform(surgery_age_min, surgery_age_max) if that is before the natural FMP
* men's serum testosterone at 30 ~ LogNormal(log 550 ng/dL, 0.3): harmonized reference range
  of men 19-39 y, 264-916 ng/dL (Travison 2017 JCEM 102:1161); falling ~1 %/yr with age
  (Harman 2001 JCEM 86:724). Women: 30 ng/dL (Davison 2005 JCEM 90:3847).
* hypogonadism: with probability ``hypogonadal_fraction`` a man's testosterone falls to
  ``hypogonadal_factor`` of its value from an onset age ~ Uniform(40, 75) (late-onset
  hypogonadism, ~10-20 % of men over 60 by total T < 300 ng/dL; Harman 2001)
* one Uniform(0, 1) per regimen slot, for discontinuation times (persistence); slot j is the
  j-th regimen of an arm in every arm, so arms share them (common random numbers)
* turnover scale, RANKL sensitivity (rho_L) and mechanostat scale ~ LogNormal(0, sd) per
  patient: inter-individual variability on the model's main rates. The sds are assumptions
  (0.25, 0.20, 0.20) chosen so that 3-year spine losses in untreated early-postmenopausal women
  spread over a few percent, as in SWAN (Greendale 2012 JBMR 27:111, SD of change ~4 %).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bonecohort.model.params import NHANES_MEN, NHANES_WOMEN


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
    peak_fn_bmd_mean: float = NHANES_WOMEN.mean
    peak_fn_bmd_sd: float = NHANES_WOMEN.sd
    turnover_sdlog: float = 0.25
    rankl_sensitivity_sdlog: float = 0.20
    mech_sdlog: float = 0.20
    male_fraction: float = 0.0
    peak_fn_bmd_mean_male: float = NHANES_MEN.mean
    peak_fn_bmd_sd_male: float = NHANES_MEN.sd
    uterus_intact_fraction: float = 0.8
    surgical_fraction: float = 0.0
    surgery_age_min: float = 40.0
    surgery_age_max: float = 50.0
    t30_median: float = 550.0  # ng/dL, men
    t30_sdlog: float = 0.3
    t_female: float = 30.0  # ng/dL
    t_decline: float = 0.01  # 1/yr
    hypogonadal_fraction: float = 0.1
    hypogonadal_onset_min: float = 40.0
    hypogonadal_onset_max: float = 75.0
    hypogonadal_factor: float = 0.35


REGIMEN_SLOTS = 8  # most regimens per arm (one persistence draw each)


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
    male: jnp.ndarray  # 1.0 man, 0.0 woman
    uterus_intact: jnp.ndarray  # 1.0 / 0.0 (women)
    surgery_age: jnp.ndarray  # years; bilateral oophorectomy, +inf if none before the FMP
    t30: jnp.ndarray  # ng/dL, serum testosterone at 30
    hypogonadal_onset: jnp.ndarray  # years; +inf if never hypogonadal
    persistence_u: jnp.ndarray  # (REGIMEN_SLOTS,) uniforms for discontinuation times


def sample_patient(seed, patient_id, spec: PopulationSpec, dtype=jnp.float32) -> Patient:
    """Draw patient ``patient_id`` of the population seeded by ``seed`` (ints).

    Standard draws are made in float32 whatever ``dtype`` is, then cast, so float32 and
    float64 runs of the same seed simulate the same patients.
    """
    key = jax.random.fold_in(jax.random.key(seed), patient_id)
    k = [jax.random.fold_in(key, i) for i in range(15)]
    f32 = jnp.float32
    normal = lambda kk: jax.random.normal(kk, (), f32).astype(dtype)  # noqa: E731
    age = jax.random.uniform(k[0], (), f32, spec.age_min, spec.age_max).astype(dtype)
    z_fmp = jax.random.truncated_normal(
        k[1], (spec.fmp_min - spec.fmp_mean) / spec.fmp_sd,
        (spec.fmp_max - spec.fmp_mean) / spec.fmp_sd, (), f32).astype(dtype)
    uniform = lambda kk, lo=0.0, hi=1.0: jax.random.uniform(  # noqa: E731
        kk, (), f32, lo, hi).astype(dtype)
    male = (uniform(k[7]) < spec.male_fraction).astype(dtype)
    fmp = spec.fmp_mean + spec.fmp_sd * z_fmp
    surgery = uniform(k[9], spec.surgery_age_min, spec.surgery_age_max)
    surgical = (uniform(k[8]) < spec.surgical_fraction) & (surgery < fmp) & (male == 0)
    hypo = (uniform(k[11]) < spec.hypogonadal_fraction) & (male == 1)
    onset = uniform(k[12], spec.hypogonadal_onset_min, spec.hypogonadal_onset_max)
    peak = jnp.where(male == 1, spec.peak_fn_bmd_mean_male + spec.peak_fn_bmd_sd_male * normal(k[3]),
                     spec.peak_fn_bmd_mean + spec.peak_fn_bmd_sd * normal(k[3]))
    inf = jnp.asarray(jnp.inf, dtype)
    return Patient(
        patient_id=jnp.asarray(patient_id),
        age_entry=age,
        fmp_age=fmp,
        e2_post=spec.e2_post_median * jnp.exp(spec.e2_post_sdlog * normal(k[2])),
        peak_fn_bmd=peak,
        turnover_scale=jnp.exp(spec.turnover_sdlog * normal(k[4])),
        rankl_sensitivity=jnp.exp(spec.rankl_sensitivity_sdlog * normal(k[5])),
        mech_scale=jnp.exp(spec.mech_sdlog * normal(k[6])),
        male=male,
        uterus_intact=((uniform(k[10]) < spec.uterus_intact_fraction) & (male == 0)).astype(dtype),
        surgery_age=jnp.where(surgical, surgery, inf),
        t30=jnp.where(male == 1, spec.t30_median * jnp.exp(spec.t30_sdlog * normal(k[13])),
                      spec.t_female),
        hypogonadal_onset=jnp.where(hypo, onset, inf),
        persistence_u=jax.random.uniform(k[14], (REGIMEN_SLOTS,), f32).astype(dtype),
    )
