"""From BMD trajectories to fractures and deaths (pure JAX, one patient and one arm).

Annual discrete time from entry: year k covers ages [entry + k, entry + k + 1); tables are read
at the integer part of the mid-year age.

Fracture hazard at site s (hip, clinical vertebral, forearm, humerus), FRAX-style
(Kanis 2008 Osteoporos Int 19:385):

    h_s = incidence_s(age, sex) * GR_s(age)^(-z_s) * (OC/OC*)^gamma_s * RR_prior^[prior]
          / c_s(age, sex)

* Each fracture site is driven by the BMD of its best predictor among the simulated sites
  (``DRIVING_SITE``): clinical vertebral fractures by the lumbar spine, hip, forearm and
  humerus by the femoral neck. Marshall 1996 BMJ 312:1254 (meta-analysis of prospective
  cohorts of women): per SD decrease of BMD, RR 2.3 (1.9-2.8) of spine BMD for vertebral
  fractures, 2.6 (2.0-3.5) of hip BMD for hip fractures, about 1.5 (1.4-1.6) for the other
  site-fracture pairs.
* z_s = T_s - Tbar_s(age, sex): the driving site's T-score relative to the population mean at
  that age (outcomes/reference.py). Femoral-neck T-scores are in the FRAX reference's units.
  Patients carry only their peak femoral-neck BMD; the spine T-score is stated by assumption
  (``site_tscores``): the patient's peak femoral-neck T-score (her or his position at peak
  bone mass, taken to hold at both sites) plus the spine's change from peak in units of the
  young-adult spine SD as a fraction of its mean, ``CV_SPINE`` = 0.106 / 1.064 (NHANES
  lumbar-spine reference, women aged 21-30, mean (SD) in g/cm2, as tabulated by Varatharajan
  2026 Front Endocrinol 17:1748490, Table 3; the Hologic L1-L4 young-women reference usually
  quoted, ~1.047 +- 0.110, not checked here, gives 0.105).
* GR_hip(age): gradient of hip-fracture risk per SD of femoral-neck BMD, 3.68 / 3.07 / 2.78 /
  2.28 / 1.70 at ages 50 / 60 / 70 / 80 / 90 (Johnell 2005 J Bone Miner Res 20:1185; 2.88 in
  women and 2.94 in men at 65), log-interpolated. GR_vertebral = 2.3 per SD of spine BMD at
  every age (Marshall 1996, pooled). Forearm and humerus, per SD of femoral-neck BMD: 1.38-1.41
  at 65, rising with age (Johnell 2005, other osteoporotic fractures); here 1.40 x
  exp(0.005 (age - 65)), the slope an assumption.
* (OC/OC*)^gamma_s: resorption relative to the reference steady state (active osteoclasts of
  the driving site). BMD alone under-explains treatment effects (WHI E+P: hip BMD +3.7 % vs
  +0.14 %, yet hip fracture HR 0.67, Cauley 2003 JAMA 290:1729); high turnover weakens bone
  beyond its density. gamma_s, one per fracture site, are calibration parameters (hand-set
  0.3; the fitted values are in data/parameters/public.toml, fitted with the WHI E+P hazard
  ratios of configs/targets/public.toml).
* RR_prior = 1.86 after any earlier fracture of the four sites (Kanis 2004 Bone 35:375).
* c_s(age, sex) normalizes so that an untreated reference population reproduces the incidence
  table: the mean of the numerator without ``incidence`` over that population, including the
  expected share with a prior fracture (outcomes/reference.py).
* Expected first fractures for trial read-outs (``kind_hazards``): the hazard of a first
  fracture of one kind (a site, or any of the four: MOF) is raised by RR_prior with the
  probability of an earlier fracture of another site, carried forward from the prior
  prevalence at entry with the other sites' hazards (a first-order approximation that ignores
  the other sites' own raised hazard after a fracture).

Mortality: life-table hazard -log(1 - qx(age, sex)); after a hip fracture the hazard is
multiplied by 5.75 (women) / 7.95 (men) for 3 months (Haentjens 2010 Ann Intern Med 152:380),
decaying: we use the year average 2.94 / 3.86 (3 months at the peak, 9 months at 2.0 / 2.5) in
the year after the fracture and 1.5 / 1.8 later (excess mortality persists; Haentjens 2010).
The life table already contains deaths after hip fracture; the double count is small at the
population level and ignored.

Two kinds of outcome:
* expected: probabilities of a first hip / first major osteoporotic fracture (MOF) with
  competing mortality, integrated year by year (the FRAX quantity), and the annual hazards of
  a first fracture of each kind from which trials read hazard ratios and risks over any
  window (``window_outcomes``);
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
# The simulated site whose BMD and turnover drive each fracture site's hazard: the spine for
# clinical vertebral fractures, the femoral neck for the others (Marshall 1996).
DRIVING_SITE = tuple(Site.LUMBAR_SPINE if s == FractureSite.VERTEBRAL else Site.FEMORAL_NECK
                     for s in FractureSite)
# Young-adult lumbar-spine BMD SD over its mean (NHANES, women 21-30: 0.106 / 1.064 g/cm2;
# see the module docstring), the unit of spine T-scores relative to peak bone mass.
CV_SPINE = 0.106 / 1.064
# Kinds of first fracture read out for trials: each site, and MOF (the first of any of them).
KINDS = tuple(s.key for s in FractureSite) + ("mof",)


class Norm(NamedTuple):
    """Population reference by sex and integer age; outcomes/reference.py."""

    tbar: jnp.ndarray  # (BMD sites, 2, ages) mean T-score of each simulated site at mid-year
    c: jnp.ndarray  # (fracture sites, 2, ages) normalizing constants
    turnover_mean: jnp.ndarray  # (fracture sites, 2, ages) mean (OC/OC*)^gamma
    prior_prevalence: jnp.ndarray  # (2, ages) share with an earlier fracture (from age 50)


GR_AGES = (50.0, 60.0, 70.0, 80.0, 90.0)


def site_tscores(peak_fn_tscore, rel_to_peak, fn_reference, xp=jnp):
    """T-scores of the simulated sites, sites on the last axis (``Site`` order).

    ``peak_fn_tscore``: femoral-neck T-score at peak bone mass (broadcast against
    ``rel_to_peak[..., 0]``); ``rel_to_peak`` (..., sites): BMD relative to peak bone mass;
    ``fn_reference``: (mean, sd) of the femoral-neck reference, g/cm2. Femoral neck: the
    T-score of peak BMD x its change. Spine (assumption, module docstring): the peak
    femoral-neck T-score plus (relative BMD - 1) / ``CV_SPINE``. numpy or JAX."""
    mean, sd = fn_reference
    peak_bmd = mean + sd * peak_fn_tscore
    by_site = {Site.FEMORAL_NECK: (peak_bmd * rel_to_peak[..., Site.FEMORAL_NECK] - mean) / sd,
               Site.LUMBAR_SPINE: peak_fn_tscore
               + (rel_to_peak[..., Site.LUMBAR_SPINE] - 1.0) / CV_SPINE}
    return xp.stack([by_site[s] for s in Site], axis=-1)


def gradients(age, fp: FractureParams):
    """Gradient of risk per SD decrease of the driving site's BMD, shape (4,), at ``age``."""
    hip = jnp.exp(jnp.interp(age, jnp.asarray(GR_AGES), jnp.log(jnp.asarray(fp.hip_gr))))
    other = fp.other_gr_65 * jnp.exp(fp.other_gr_slope * (age - 65.0))
    return jnp.stack([hip, jnp.broadcast_to(fp.vertebral_gr, other.shape), other, other])


def relative_hazards(age, z, turnover, fp: FractureParams):
    """GR_s^(-z_s) (OC/OC*)^gamma_s per fracture site, shape (4,); ``z`` and ``turnover``
    (2,) are per simulated (BMD) site."""
    driving = jnp.asarray(DRIVING_SITE)
    return gradients(age, fp) ** (-z[driving]) * turnover[driving] ** jnp.asarray(fp.gamma)


class Trajectory(NamedTuple):
    """One patient under one arm, per year k = 0..H-1 (mid-year values)."""

    age_index: jnp.ndarray  # (H,) int, integer part of the mid-year age
    age: jnp.ndarray  # (H,) mid-year age
    tscore: jnp.ndarray  # (H, 2) T-scores of the femoral neck and the spine (site_tscores)
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
    """Mid-year values from T-scores / turnover at entry (2,) and at each year end (H, 2)."""
    years = t_end.shape[0]
    mid = age_entry + jnp.arange(years, dtype=t_end.dtype) + 0.5
    return Trajectory(jnp.clip(jnp.floor(mid).astype(jnp.int32), 0, max_age - 1), mid,
                      mid_year(t_entry, t_end), mid_year(oc_entry, oc_end))


def site_hazards(traj: Trajectory, sex, incidence, norm: Norm, fp: FractureParams):
    """Annual hazards without the prior-fracture factor, shape (H, 4).

    ``sex``: 0 women, 1 men (int); ``incidence``: (4, 2, ages) per person-year.
    """
    z = traj.tscore - norm.tbar[:, sex, traj.age_index].T
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


def kind_hazards(h_sites, prior_at_entry, fp: FractureParams):
    """Hazards of a first fracture of each kind (``KINDS``: the four sites, then MOF), (H, 5),
    raised by ``prior_rr`` with the probability of an earlier fracture: for a site, one at
    entry (``prior_at_entry``) or of another site in the simulated years before (with the
    other sites' hazards); for MOF, only one before entry (module docstring)."""
    h_mof = h_sites.sum(axis=1)
    others = h_mof[:, None] - h_sites
    before = jnp.concatenate([jnp.zeros((1, N_SITES), h_sites.dtype),
                              jnp.cumsum(others, axis=0)[:-1]])
    earlier = 1.0 - (1.0 - prior_at_entry) * jnp.exp(-before)
    sites = h_sites * (1.0 + (fp.prior_rr - 1.0) * earlier)
    mof = h_mof * (1.0 + (fp.prior_rr - 1.0) * prior_at_entry)
    return jnp.concatenate([sites, mof[:, None]], axis=1)


def window_outcomes(h_event, h_death, start, end, xp=jnp):
    """First events in the window [``start``, ``end``) years from entry (fractional years;
    the partial years weighted by their share), with annual hazards constant within each
    year, years on the last axis of ``h_event`` and ``h_death`` (any leading axes).

    Returns (``at_start``, ``events``, ``time``): the probability of being alive and
    event-free at ``start`` (from entry), and, for a patient alive and event-free then, the
    probability of a first event within the window competing with death (1 - the
    event-free survival when nobody dies) and the expected event-free years alive in it
    (person-time at risk). events / time is the window's incidence rate. numpy or JAX."""
    k = xp.arange(h_event.shape[-1])
    pre = xp.clip(start - 1.0 * k, 0.0, 1.0)
    w = xp.clip(xp.minimum(end, k + 1.0) - xp.maximum(start, 1.0 * k), 0.0, 1.0)
    total = h_event + h_death
    at_start = xp.exp(-(total * pre).sum(axis=-1))
    cum = xp.cumsum(total * w, axis=-1)
    inside = xp.exp(-(cum - total * w))  # event-free and alive at the year's window start
    leave = 1.0 - xp.exp(-total * w)
    positive = total > 0
    safe = xp.where(positive, total, 1.0)
    events = (inside * leave * xp.where(positive, h_event / safe, 0.0)).sum(axis=-1)
    time = (inside * xp.where(positive, leave / safe, w)).sum(axis=-1)
    return at_start, events, time


def window_probability(h_event, h_death, start, years: int):
    """Probability of a first event within ``years`` from year index ``start`` (int), for a
    patient alive and event-free then; NaN if the window leaves the simulated years."""
    H = h_event.shape[0]
    p = window_outcomes(h_event, h_death, start, start + years)[1]
    return jnp.where((start >= 0) & (start + years <= H), p, jnp.nan)
