"""One patient's simulated life course -> fractures, deaths and probabilities (pure JAX).

``patient_outcomes`` reads the BMD trajectories of both simulated sites and their resorption
from a ``LifeCourse`` (year-end read-outs) in every arm and returns ``PatientOutcomes``:
expected probabilities, the annual hazards of first fractures (hazards.py) and sampled events
(events.py). Hazards use T-scores in the units of the FRAX reference
(``OutcomeSetup.tscore_mean`` / ``tscore_sd``: NHANES III young white women, for both sexes,
as the gradients of risk are expressed; Kanis 2008 Bone 42:467), the spine's by the stated
assumption of ``hazards.site_tscores``; reported T-scores of men use the men's reference
(shell/tables.py).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bonecohort.model.params import BmdReference, FractureParams, Site
from bonecohort.outcomes.economics import Economics, EconomicsSetup, patient_economics
from bonecohort.outcomes.events import (
    SampledEvents,
    event_uniforms,
    harm_uniforms,
    sample_events,
)
from bonecohort.outcomes.harms import (
    COMPONENTS,
    HarmSetup,
    background_hazard,
    harm_years,
    yearly_exposure,
)
from bonecohort.outcomes.hazards import (
    FractureSite,
    Norm,
    Trajectory,
    death_hazard,
    expected_outcomes,
    first_event_probability,
    kind_hazards,
    site_hazards,
    site_tscores,
    trajectory,
    window_probability,
)


class OutcomeSetup(NamedTuple):
    """Everything the outcome read-out needs besides the simulation (a pytree of arrays,
    except the static ``probability_ages`` tuple)."""

    incidence: jnp.ndarray  # (4, 2, ages) per person-year
    qx: jnp.ndarray  # (2, ages)
    norm: Norm
    fracture: FractureParams
    tscore_mean: float  # g/cm2, FRAX T-score reference (femoral neck)
    tscore_sd: float
    by_age: float  # years; events counted "by age" happen before it
    probability_ages: tuple = ()  # static: ages for 10-year probabilities
    harms: HarmSetup | None = None  # None: fractures and deaths only
    economics: EconomicsSetup | None = None  # None: no QALYs and costs


class ArmOutcomes(NamedTuple):
    """Expected probabilities of one patient under one arm (a batch adds leading axes)."""

    p10_hip: jnp.ndarray  # () 10-year probability of a first hip fracture from entry
    p10_mof: jnp.ndarray  # () the same for a first major osteoporotic fracture
    hip_horizon: jnp.ndarray  # () expected first hip fractures to the horizon
    mof_horizon: jnp.ndarray  # () expected first MOF to the horizon
    p10_hip_from_age: jnp.ndarray  # (probability ages,) from each age; NaN outside the run
    p10_mof_from_age: jnp.ndarray  # (probability ages,)
    events: SampledEvents  # without its per-year fields (used here, not returned)
    first_hazards: jnp.ndarray  # (H, 5 [+ O]) per year: first fracture of each
    # ``hazards.KINDS``, then, with harms, the first event of each ``harms.HARMS``
    death_hazard: jnp.ndarray  # (H,) per year, life table
    harm_expected: jnp.ndarray | None  # (O,) expected first harm events to the horizon
    economics: Economics | None


class PatientOutcomes(NamedTuple):
    tscore_entry: jnp.ndarray  # () femoral-neck T-score at entry (FRAX reference)
    arms: ArmOutcomes  # leading arm axis


EVENT_STREAM = 100  # fold_in index of the event uniforms under the patient's key
HARM_STREAM = 101  # and of the harm-event uniforms
TEN_YEARS = 10


def tscore(bmd, setup: OutcomeSetup):
    """Femoral-neck T-score in the FRAX reference's units."""
    return BmdReference(setup.tscore_mean, setup.tscore_sd).tscore(bmd)


def arm_hazards(patient, bmd_entry, bmd_rel, oc_entry, oc, setup: OutcomeSetup):
    """Trajectory and annual hazards of one patient under one arm.

    ``bmd_entry`` (sites,): BMD at entry relative to peak bone mass; ``bmd_rel`` (sites, H)
    and ``oc`` (sites, H): relative to entry and resorption, as in a ``LifeCourse`` for that
    arm. Returns (trajectory, fracture hazards (H, 4), death hazard (H,)).
    """
    sex = patient.male.astype(jnp.int32)
    peak_t = tscore(patient.peak_fn_bmd, setup)
    ref = (setup.tscore_mean, setup.tscore_sd)
    t_entry = site_tscores(peak_t, bmd_entry, ref)
    t_end = site_tscores(peak_t, (bmd_entry[:, None] * bmd_rel).T, ref)
    traj = trajectory(patient.age_entry, t_entry, t_end, oc_entry, oc.T, setup.qx.shape[1])
    h = site_hazards(traj, sex, setup.incidence, setup.norm, setup.fracture)
    return traj, h, death_hazard(traj, sex, setup.qx)


def prior_at_entry(patient, setup: OutcomeSetup):
    """Probability of a fracture before entry: the reference population's share at that age."""
    age = jnp.clip(jnp.floor(patient.age_entry).astype(jnp.int32), 0, setup.qx.shape[1] - 1)
    return setup.norm.prior_prevalence[patient.male.astype(jnp.int32), age]


def patient_outcomes(patient, life, setup: OutcomeSetup, key, arms: tuple = ()
                     ) -> PatientOutcomes:
    """Fracture, harm, death and economic outcomes of one patient in every arm.

    ``life``: the patient's ``LifeCourse`` read at year ends; ``key``: the patient's key
    ``fold_in(key(seed), patient_id)``; ``arms``: the study's arms (static), whose
    treatments drive the harm hazards and drug costs (needed with ``setup.harms`` or
    ``setup.economics``).
    """
    t_entry = tscore(patient.peak_fn_bmd * life.bmd_entry[Site.FEMORAL_NECK], setup)
    years = life.bmd_rel.shape[-1]
    u = event_uniforms(jax.random.fold_in(key, EVENT_STREAM), years, t_entry.dtype)
    hu = harm_uniforms(jax.random.fold_in(key, HARM_STREAM), years, t_entry.dtype)
    after = (setup.harms.after_years if setup.harms is not None
             else jnp.zeros((len(COMPONENTS),), t_entry.dtype))
    exposures = [yearly_exposure(arms[a] if arms else None, patient, years, after)
                 for a in range(life.bmd_rel.shape[0])]
    exposure = jax.tree.map(lambda *v: jnp.stack(v), *exposures)
    return PatientOutcomes(t_entry, jax.vmap(
        lambda b, o, e: _one_arm(patient, life, setup, u, hu, b, o, e))(
            life.bmd_rel, life.oc, exposure))


def _from_ages(patient, setup: OutcomeSetup, h_event, mu):
    starts = [jnp.ceil(age - patient.age_entry).astype(jnp.int32)
              for age in setup.probability_ages]
    values = [window_probability(h_event, mu, s, TEN_YEARS) for s in starts]
    return jnp.stack(values) if values else jnp.zeros((0,), h_event.dtype)


def _one_arm(patient, life, setup: OutcomeSetup, u, hu, bmd_rel, oc, exposure
             ) -> ArmOutcomes:
    """``ArmOutcomes`` of one patient under one arm (``patient_outcomes``); ``exposure``:
    the arm's ``harms.Exposure``."""
    sex = patient.male.astype(jnp.int32)
    fp = setup.fracture
    years = bmd_rel.shape[-1]
    traj, h, mu = arm_hazards(patient, life.bmd_entry, bmd_rel, life.oc_entry, oc, setup)
    hip, mof = h[:, FractureSite.HIP], h.sum(axis=1)
    expected = expected_outcomes(h, mu, fp)
    prior = prior_at_entry(patient, setup)
    first = kind_hazards(h, prior, fp)
    hy = hu_used = background = harm_expected = None
    if setup.harms is not None:
        hy, hu_used = harm_years(patient, traj.age_index, exposure, setup.harms), hu
        background = background_hazard(setup.harms, sex, traj.age_index)
        harm_expected = jax.vmap(first_event_probability, (1, None))(hy.hazard, mu).sum(axis=1)
        first = jnp.concatenate([first, hy.hazard], axis=1)
    ev = sample_events(h, mu, sex, u, fp, traj.age < setup.by_age, prior, hy, hu_used,
                       background)
    econ = None
    if setup.economics is not None:
        flags = jnp.concatenate([ev.harm_flags, ev.fracture_flags], axis=1)
        econ = patient_economics(ev.exposed, flags, exposure.taken, sex, traj.age_index,
                                 setup.economics)
    ten = min(TEN_YEARS, years)
    return ArmOutcomes(
        p10_hip=window_probability(hip, mu, 0, ten), p10_mof=window_probability(mof, mu, 0, ten),
        hip_horizon=expected.hip_first.sum(), mof_horizon=expected.mof_first.sum(),
        p10_hip_from_age=_from_ages(patient, setup, hip, mu),
        p10_mof_from_age=_from_ages(patient, setup, mof, mu),
        events=ev._replace(exposed=None, fracture_flags=None, harm_flags=None),
        first_hazards=first, death_hazard=mu, harm_expected=harm_expected, economics=econ)


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
    in the population (z = T - Tbar(age)) as the years pass, competing with death. The
    spine's z is taken equal to the femoral neck's (assumption: no spine BMD is given).
    Returns (p_hip, p_mof)."""
    dtype = setup.qx.dtype
    mid = age + jnp.arange(years, dtype=dtype) + 0.5
    idx = jnp.clip(jnp.floor(mid).astype(jnp.int32), 0, setup.qx.shape[1] - 1)
    z = t_score - setup.norm.tbar[Site.FEMORAL_NECK, sex, jnp.floor(age).astype(jnp.int32)]
    traj = Trajectory(idx, mid, setup.norm.tbar[:, sex, idx].T + z,
                      jnp.ones((years, len(Site)), dtype))
    h = site_hazards(traj, sex, setup.incidence, setup.norm, setup.fracture)
    h = h * setup.norm.turnover_mean[:, sex, idx].T
    if no_risk_factors:
        h = h / jnp.asarray(UNMODELLED_RISK_FACTORS, dtype)
    mu = death_hazard(traj, sex, setup.qx)
    return (window_probability(h[:, 0], mu, 0, years),
            window_probability(h.sum(axis=1), mu, 0, years))
