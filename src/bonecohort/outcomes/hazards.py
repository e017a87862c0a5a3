"""From BMD trajectories to fractures and deaths (pure JAX, one patient and one arm).

Annual discrete time from entry: year k covers ages [entry + k, entry + k + 1); tables are read
at the integer part of the mid-year age.

Fracture hazard at site s (hip, clinical vertebral, forearm, humerus), FRAX-style
(Kanis 2008 Osteoporos Int 19:385):

    h_s = incidence_s(age, sex) * GR_s(age)^(-z) * (OC/OC*)^gamma * RR_prior^[prior] / c_s(age, sex)

* z = T - Tbar(age, sex): femoral-neck T-score relative to the population mean at that age
  (FRAX uses femoral-neck BMD for every site).
* GR_hip(age): gradient of hip-fracture risk per SD of femoral-neck BMD, 3.68 / 3.07 / 2.78 /
  2.28 / 1.70 at ages 50 / 60 / 70 / 80 / 90 (Johnell 2005 J Bone Miner Res 20:1185; 2.88 in
  women and 2.94 in men at 65), log-interpolated. Other osteoporotic fractures: 1.38-1.41 at 65,
  rising with age (Johnell 2005); here 1.40 x exp(0.005 (age - 65)), the slope an assumption.
* (OC/OC*)^gamma: resorption relative to the reference steady state (active osteoclasts of
  the femoral neck for hip, forearm and humerus, of the spine for vertebral fractures). BMD
  alone under-explains treatment effects (WHI E+P: hip BMD +3.7 % vs +0.14 %, yet hip fracture
  HR 0.67, Cauley 2003 JAMA 290:1729); high turnover weakens bone beyond its density. gamma is
  a calibration parameter (hand-set 0.3; the fitted value is in data/parameters/public.toml,
  fitted with the WHI E+P hazard ratios of configs/targets/public.toml).
* RR_prior = 1.86 after any earlier fracture of the four sites (Kanis 2004 Bone 35:375).
* c_s(age, sex) normalizes so that an untreated reference population reproduces the incidence
  table: the mean of the numerator without ``incidence`` over that population, including the
  expected share with a prior fracture (outcomes/reference.py).

Mortality: life-table hazard -log(1 - qx(age, sex)); after a hip fracture the hazard is
multiplied by 5.75 (women) / 7.95 (men) for 3 months (Haentjens 2010 Ann Intern Med 152:380),
decaying: we use the year average 2.94 / 3.86 (3 months at the peak, 9 months at 2.0 / 2.5) in
the year after the fracture and 1.5 / 1.8 later (excess mortality persists; Haentjens 2010).
The life table already contains deaths after hip fracture; the double count is small at the
population level and ignored.

Two kinds of outcome:
* expected: probabilities of a first hip / first major osteoporotic fracture (MOF) with
  competing mortality, integrated year by year (the FRAX quantity);
* sampled (events.py): events drawn with uniforms that depend only on the patient and the
  year, the same in every arm (common random numbers: identical arms give identical events).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bonecohort.model.params import FractureParams, Site


class FractureSite(IntEnum):
    """Fracture sites, in the order of every per-site hazard and count (``n_<key>`` columns)."""

    HIP = 0
    VERTEBRAL = 1  # clinical vertebral
    FOREARM = 2
    HUMERUS = 3

    @property
    def key(self) -> str:
        return self.name.lower()


N_SITES = len(FractureSite)
# The simulated site whose turnover drives each fracture site's hazard: the spine's for
# vertebral fractures, the femoral neck's for the others.
TURNOVER_SITE = tuple(Site.LUMBAR_SPINE if s == FractureSite.VERTEBRAL else Site.FEMORAL_NECK
                      for s in FractureSite)


class Norm(NamedTuple):
    """Population reference by sex and integer age (arrays (2, ages)); outcomes/reference.py."""

    tbar: jnp.ndarray  # mean femoral-neck T-score at mid-year
    c: jnp.ndarray  # (sites, 2, ages) normalizing constants
    turnover_mean: jnp.ndarray  # (sites, 2, ages) mean (OC/OC*)^gamma
    prior_prevalence: jnp.ndarray  # (2, ages) share with an earlier fracture (from age 50)


GR_AGES = (50.0, 60.0, 70.0, 80.0, 90.0)


def gradients(age, fp: FractureParams):
    """Gradient of risk per SD decrease of femoral-neck BMD, shape (4,), at ``age``."""
    hip = jnp.exp(jnp.interp(age, jnp.asarray(GR_AGES), jnp.log(jnp.asarray(fp.hip_gr))))
    other = fp.other_gr_65 * jnp.exp(fp.other_gr_slope * (age - 65.0))
    return jnp.stack([hip, other, other, other])


def relative_hazards(age, z, turnover, fp: FractureParams):
    """GR^(-z) (OC/OC*)^gamma per site, shape (4,); ``turnover`` (2,) is per BMD site."""
    oc = turnover[jnp.asarray(TURNOVER_SITE)]
    return gradients(age, fp) ** (-z) * oc ** fp.gamma


class Trajectory(NamedTuple):
    """One patient under one arm, per year k = 0..H-1 (mid-year values)."""

    age_index: jnp.ndarray  # (H,) int, integer part of the mid-year age
    age: jnp.ndarray  # (H,) mid-year age
    tscore: jnp.ndarray  # (H,) femoral-neck T-score
    turnover: jnp.ndarray  # (H, 2) OC/OC* at the femoral neck and the spine


def mid_year(at_entry, at_year_ends, axis: int = 0, xp=jnp):
    """Mid-year values of a quantity known at entry and at each year end (years on ``axis``
    of ``at_year_ends``): the mean of the values at the year's start and end. Works on JAX
    (one patient, in the read-out) and numpy arrays (a cohort, on the host)."""
    before_last = [slice(None)] * at_year_ends.ndim
    before_last[axis] = slice(None, -1)
    start = xp.concatenate([xp.expand_dims(at_entry, axis), at_year_ends[tuple(before_last)]],
                           axis=axis)
    return 0.5 * (start + at_year_ends)


def trajectory(age_entry, t_entry, t_end, oc_entry, oc_end, max_age: int) -> Trajectory:
    """Mid-year values from T-scores / turnover at entry and at each year end (H,)."""
    years = t_end.shape[0]
    mid = age_entry + jnp.arange(years, dtype=t_end.dtype) + 0.5
    return Trajectory(jnp.clip(jnp.floor(mid).astype(jnp.int32), 0, max_age - 1), mid,
                      mid_year(t_entry, t_end), mid_year(oc_entry, oc_end))


def site_hazards(traj: Trajectory, sex, incidence, norm: Norm, fp: FractureParams):
    """Annual hazards without the prior-fracture factor, shape (H, 4).

    ``sex``: 0 women, 1 men (int); ``incidence``: (4, 2, ages) per person-year.
    """
    z = traj.tscore - norm.tbar[sex, traj.age_index]
    rel = jax.vmap(relative_hazards, in_axes=(0, 0, 0, None))(traj.age, z, traj.turnover, fp)
    inc = incidence[:, sex, traj.age_index].T  # (H, 4)
    c = norm.c[:, sex, traj.age_index].T
    return inc * rel / c


def death_hazard(traj: Trajectory, sex, qx):
    return -jnp.log1p(-qx[sex, traj.age_index])


def survival_to_year_start(h):
    """exp(-sum of ``h`` over the years before k): surviving hazard ``h`` to the start of
    each year, (H,)."""
    return jnp.exp(-jnp.concatenate([jnp.zeros((1,), h.dtype), jnp.cumsum(h)[:-1]]))


def first_event_probability(h_event, h_death):
    """Probability that the first event happens in each year, competing with death, (H,)."""
    total = h_event + h_death
    share = jnp.where(total > 0, h_event / jnp.where(total > 0, total, 1.0), 0.0)
    return survival_to_year_start(total) * (1.0 - jnp.exp(-total)) * share


class ExpectedYears(NamedTuple):
    """Expected per-year quantities of one patient under one arm, each (H,)."""

    hip_first: jnp.ndarray  # probability of the first hip fracture in year k (from entry)
    mof_first: jnp.ndarray  # probability of the first MOF in year k
    alive: jnp.ndarray  # probability of being alive at the start of year k (life table)
    hip_events: jnp.ndarray  # expected hip fractures in year k, prior fractures counted


def expected_outcomes(h_sites, h_death, fp: FractureParams, prior_at_entry=0.0) -> ExpectedYears:
    """Expected per-year quantities for one patient and arm (``ExpectedYears``), for a
    patient fracture-free and alive at entry; ``hip_events`` counts the raised hazard after a
    prior fracture (probability ``prior_at_entry`` at entry, then the expected ones), for
    incidence checks."""
    h_mof = h_sites.sum(axis=1)
    alive = survival_to_year_start(h_death)
    no_fx = (1.0 - prior_at_entry) * survival_to_year_start(h_mof)
    hip_events = alive * h_sites[:, FractureSite.HIP] * (no_fx + fp.prior_rr * (1.0 - no_fx))
    return ExpectedYears(
        hip_first=first_event_probability(h_sites[:, FractureSite.HIP], h_death),
        mof_first=first_event_probability(h_mof, h_death), alive=alive, hip_events=hip_events)


def window_probability(h_event, h_death, start, years: int):
    """Probability of a first event within ``years`` from year index ``start`` (int), for a
    patient alive and event-free then; NaN if the window leaves the simulated years."""
    H = h_event.shape[0]
    k = jnp.arange(H)
    inside = (k >= start) & (k < start + years)
    p = first_event_probability(jnp.where(inside, h_event, 0.0),
                                jnp.where(inside, h_death, 0.0)).sum()
    return jnp.where((start >= 0) & (start + years <= H), p, jnp.nan)
