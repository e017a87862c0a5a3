"""From BMD trajectories to fractures and deaths (pure JAX, one patient and one arm).

Annual discrete time from entry: year k covers ages [entry + k, entry + k + 1); tables are read
at the integer part of the mid-year age.

Fracture hazard at site s (hip, clinical vertebral, forearm, humerus), FRAX-style
(DESIGN.md section 6; Kanis 2008 Osteoporos Int 19:385):

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
  a calibration parameter (hand-set 0.3; the fitted value is in parameters/public.toml,
  fitted with the WHI E+P hazard ratios of configs/targets/public.toml).
* RR_prior = 1.86 after any earlier fracture of the four sites (Kanis 2004 Bone 35:375).
* c_s(age, sex) normalizes so that an untreated reference population reproduces the incidence
  table: the mean of the numerator without ``incidence`` over that population, including the
  expected share with a prior fracture (reference.py).

Mortality: life-table hazard -log(1 - qx(age, sex)); after a hip fracture the hazard is
multiplied by 5.75 (women) / 7.95 (men) for 3 months (Haentjens 2010 Ann Intern Med 152:380),
decaying: we use the year average 2.94 / 3.86 (3 months at the peak, 9 months at 2.0 / 2.5) in
the year after the fracture and 1.5 / 1.8 later (excess mortality persists; Haentjens 2010).
The life table already contains deaths after hip fracture; the double count is small at the
population level and ignored.

Two kinds of outcome:
* expected: probabilities of a first hip / first major osteoporotic fracture (MOF) with
  competing mortality, integrated year by year (the FRAX quantity);
* sampled: events drawn with uniforms that depend only on the patient and the year, the same in
  every arm (common random numbers: identical arms give identical events).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

N_SITES = 4  # hip, clinical vertebral, forearm, humerus
TURNOVER_SITE = (0, 1, 0, 0)  # BMD-model site (0 femoral neck, 1 lumbar spine) per fracture site


class FractureParams(NamedTuple):
    """Fracture and mortality constants (sources in the module docstring)."""

    hip_gr: tuple = (3.68, 3.07, 2.78, 2.28, 1.70)  # per SD at ages 50, 60, 70, 80, 90
    other_gr_65: float = 1.40
    other_gr_slope: float = 0.005  # 1/yr, log scale
    gamma: float = 0.3  # turnover exponent (calibration parameter)
    prior_rr: float = 1.86
    hip_death_rr_first: tuple = (2.94, 3.86)  # women, men; year after a hip fracture
    hip_death_rr_later: tuple = (1.5, 1.8)


class Norm(NamedTuple):
    """Population reference by sex and integer age (arrays (2, ages)); see reference.py."""

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


def trajectory(age_entry, t_entry, t_end, oc_entry, oc_end, max_age: int) -> Trajectory:
    """Mid-year values from T-scores / turnover at entry and at each year end (H,)."""
    years = t_end.shape[0]
    mid = age_entry + jnp.arange(years, dtype=t_end.dtype) + 0.5
    t_start = jnp.concatenate([t_entry[None], t_end[:-1]])
    oc_start = jnp.concatenate([oc_entry[None], oc_end[:-1]], axis=0)
    return Trajectory(jnp.clip(jnp.floor(mid).astype(jnp.int32), 0, max_age - 1), mid,
                      0.5 * (t_start + t_end), 0.5 * (oc_start + oc_end))


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


def expected_outcomes(h_sites, h_death, fp: FractureParams, prior_at_entry=0.0):
    """Expected per-year quantities for one patient and arm (all shape (H,)):

    ``hip_first`` / ``mof_first``: probability of the first hip / first MOF in year k (from
    entry, fracture-free and alive at entry); ``alive``: probability of being alive at the
    start of year k (life table); ``hip_events``: expected hip fractures in year k, counting
    the raised hazard after a prior fracture (probability ``prior_at_entry`` at entry, then
    the expected ones), for incidence checks.
    """
    h_mof = h_sites.sum(axis=1)
    mof_first = first_event_probability(h_mof, h_death)
    alive = survival_to_year_start(h_death)
    no_fx = (1.0 - prior_at_entry) * survival_to_year_start(h_mof)
    hip_events = alive * h_sites[:, 0] * (no_fx + fp.prior_rr * (1.0 - no_fx))
    return {"hip_first": first_event_probability(h_sites[:, 0], h_death),
            "mof_first": mof_first, "alive": alive, "hip_events": hip_events}


def window_probability(h_event, h_death, start, years: int):
    """Probability of a first event within ``years`` from year index ``start`` (int), for a
    patient alive and event-free then; NaN if the window leaves the simulated years."""
    H = h_event.shape[0]
    k = jnp.arange(H)
    inside = (k >= start) & (k < start + years)
    p = first_event_probability(jnp.where(inside, h_event, 0.0),
                                jnp.where(inside, h_death, 0.0)).sum()
    return jnp.where((start >= 0) & (start + years <= H), p, jnp.nan)


class Uniforms(NamedTuple):
    death: jnp.ndarray  # (H,)
    fracture: jnp.ndarray  # (H, 4)
    prior: jnp.ndarray  # (), prior fracture at entry


def event_uniforms(key, years: int, dtype) -> Uniforms:
    """Uniforms of one patient for sampled events; the same in every arm."""
    kd, kf, kp = jax.random.split(key, 3)
    u = lambda k, shape: jax.random.uniform(k, shape, jnp.float32).astype(dtype)  # noqa: E731
    return Uniforms(u(kd, (years,)), u(kf, (years, N_SITES)), u(kp, ()))


def sample_events(h_sites, h_death, sex, u: Uniforms, fp: FractureParams, by_age_mask,
                  prior_at_entry=0.0):
    """Sampled fractures and death for one patient and arm.

    The patient enters with a prior fracture with probability ``prior_at_entry`` (the share
    in the reference population of that age and sex, so that fractures before entry, which
    are not simulated, still raise the hazard). A patient who dies in year k is exposed to
    fracture for half of it. Returns a dict:
    ``fractures`` (4,) counts over the horizon, ``fractures_by_age`` (4,) counts in years with
    ``by_age_mask``, ``first_hip_year`` / ``first_mof_year`` / ``death_year`` (int, -1 for
    none), ``life_years``.
    """
    rr_first = jnp.asarray(fp.hip_death_rr_first)[sex]
    rr_later = jnp.asarray(fp.hip_death_rr_later)[sex]

    def year(state, inputs):
        alive, prior, years_since_hip = state
        h, mu, ud, uf, counted = inputs
        mult = jnp.where(years_since_hip == 1, rr_first,
                         jnp.where(years_since_hip > 1, rr_later, 1.0))
        dies = alive & (ud < 1.0 - jnp.exp(-mu * mult))
        exposure = jnp.where(dies, 0.5, 1.0)
        p = 1.0 - jnp.exp(-h * exposure * jnp.where(prior, fp.prior_rr, 1.0))
        fx = alive & (uf < p)
        hip = fx[0]
        since = jnp.where(years_since_hip > 0, years_since_hip + 1,
                          jnp.where(hip, 1, years_since_hip))
        out = (fx, fx & counted, dies, jnp.where(alive, exposure, 0.0))
        return (alive & ~dies, prior | fx.any(), since), out

    init = (jnp.asarray(True), u.prior < prior_at_entry, jnp.asarray(0))
    _, (fx, fx_by_age, dies, exposed) = jax.lax.scan(
        year, init, (h_sites, h_death, u.death, u.fracture, by_age_mask))

    def first(flags):
        return jnp.where(flags.any(), jnp.argmax(flags), -1)

    return {"fractures": fx.sum(axis=0), "fractures_by_age": fx_by_age.sum(axis=0),
            "first_hip_year": first(fx[:, 0]), "first_mof_year": first(fx.any(axis=1)),
            "death_year": first(dies), "life_years": exposed.sum()}


class OutcomeSetup(NamedTuple):
    """Everything the outcome read-out needs besides the simulation (a pytree of arrays,
    except the static ``probability_ages`` tuple)."""

    incidence: jnp.ndarray  # (4, 2, ages)
    qx: jnp.ndarray  # (2, ages)
    norm: Norm
    fracture: FractureParams
    tscore_mean: float  # g/cm2, T-score reference (femoral neck)
    tscore_sd: float
    by_age: float  # years; events counted "by age" happen before it
    probability_ages: tuple = ()  # static: ages for 10-year probabilities


EVENT_STREAM = 100  # fold_in index of the event uniforms under the patient's key


def tscore(bmd, setup: OutcomeSetup):
    return (bmd - setup.tscore_mean) / setup.tscore_sd


def arm_hazards(patient, bmd_entry, t_entry, bv_rel, oc_entry, oc, setup: OutcomeSetup):
    """Trajectory and annual hazards of one patient under one arm.

    ``bv_rel`` (sites, H) and ``oc`` (sites, H) as from ``simulate_patient`` for that arm.
    Returns (trajectory, fracture hazards (H, 4), death hazard (H,)).
    """
    fn = 0
    sex = patient.male.astype(jnp.int32)
    t_end = tscore(bmd_entry * bv_rel[fn], setup)
    traj = trajectory(patient.age_entry, t_entry, t_end, oc_entry, oc.T, setup.qx.shape[1])
    h = site_hazards(traj, sex, setup.incidence, setup.norm, setup.fracture)
    return traj, h, death_hazard(traj, sex, setup.qx)


def prior_at_entry(patient, setup: OutcomeSetup):
    """Probability of a fracture before entry: the reference population's share at that age."""
    age = jnp.clip(jnp.floor(patient.age_entry).astype(jnp.int32), 0, setup.qx.shape[1] - 1)
    return setup.norm.prior_prevalence[patient.male.astype(jnp.int32), age]


def patient_outcomes(patient, sim: dict, setup: OutcomeSetup, key):
    """Fracture and death outcomes of one patient in every arm (leading arm axis).

    ``sim``: output of ``simulate_patient``; ``key``: the patient's key
    ``fold_in(key(seed), patient_id)``.
    """
    fn = 0
    sex = patient.male.astype(jnp.int32)
    bmd_entry = patient.peak_fn_bmd * sim["bv_entry"][fn]
    t_entry = tscore(bmd_entry, setup)
    years = sim["bv_rel"].shape[-1]
    u = event_uniforms(jax.random.fold_in(key, EVENT_STREAM), years, bmd_entry.dtype)
    fp = setup.fracture
    prior = prior_at_entry(patient, setup)

    def one_arm(bv_rel, oc):
        traj, h, mu = arm_hazards(patient, bmd_entry, t_entry, bv_rel, sim["oc_entry"], oc,
                                  setup)
        h_mof = h.sum(axis=1)
        expected = expected_outcomes(h, mu, fp)
        ten = min(10, years)
        out = {
            "exp_p10_hip": window_probability(h[:, 0], mu, 0, ten),
            "exp_p10_mof": window_probability(h_mof, mu, 0, ten),
            "exp_hip_horizon": expected["hip_first"].sum(),
            "exp_mof_horizon": expected["mof_first"].sum(),
        }
        for age in setup.probability_ages:
            start = jnp.ceil(age - patient.age_entry).astype(jnp.int32)
            out[f"exp_p10_hip_age{age:g}"] = window_probability(h[:, 0], mu, start, 10)
            out[f"exp_p10_mof_age{age:g}"] = window_probability(h_mof, mu, start, 10)
        out.update(sample_events(h, mu, sex, u, fp, traj.age < setup.by_age, prior))
        return out

    per_arm = jax.vmap(one_arm)(sim["bv_rel"], sim["oc"])
    return {"tscore_entry": t_entry, **per_arm}


# FRAX probabilities are for a patient *without* clinical risk factors, whose hazard lies
# below the population average that incidence tables describe. Population-average multiplier
# of the FRAX risk factors this model does not simulate (parental hip fracture, current
# smoking, glucocorticoids, rheumatoid arthritis, alcohol >= 3 units/day, and prior fractures
# before 50 or outside the four sites): sum of prevalence x (BMD-adjusted RR - 1) as products,
# with US women 65+ prevalences of about 15 %, 10 %, 3 %, 2 %, 2 % and 6 % and hip RRs of
# about 2.3, 1.6, 2.25, 1.7, 1.7 and 1.6 (Kanis 2007 Osteoporos Int 18:1033 and the
# meta-analyses it pools). Assumption, hip 1.40, other sites 1.10.
UNMODELLED_RISK_FACTORS = (1.40, 1.10, 1.10, 1.10)


def frax_style_probability(age, sex: int, t_score, setup: OutcomeSetup, years: int = 10,
                           no_risk_factors: bool = True):
    """10-year (``years``) probability of a first hip and a first MOF for a patient of
    ``age`` and femoral-neck ``t_score`` with average turnover, keeping her or his position
    in the population (z = T - Tbar(age)) as the years pass, competing with death.
    Returns (p_hip, p_mof)."""
    dtype = setup.qx.dtype
    mid = age + jnp.arange(years, dtype=dtype) + 0.5
    idx = jnp.clip(jnp.floor(mid).astype(jnp.int32), 0, setup.qx.shape[1] - 1)
    z = t_score - setup.norm.tbar[sex, jnp.floor(age).astype(jnp.int32)]
    traj = Trajectory(idx, mid, setup.norm.tbar[sex, idx] + z, jnp.ones((years, 2), dtype))
    h = site_hazards(traj, sex, setup.incidence, setup.norm, setup.fracture)
    h = h * setup.norm.turnover_mean[:, sex, idx].T
    if no_risk_factors:
        h = h / jnp.asarray(UNMODELLED_RISK_FACTORS, dtype)
    mu = death_hazard(traj, sex, setup.qx)
    return (window_probability(h[:, 0], mu, 0, years),
            window_probability(h.sum(axis=1), mu, 0, years))
