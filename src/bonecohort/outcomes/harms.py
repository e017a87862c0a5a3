"""Non-skeletal outcomes of hormonal treatment: hazards of one patient under one arm (pure JAX).

Seven first events (``HARMS``): invasive breast cancer, endometrial cancer, deep-vein
thrombosis, pulmonary embolism, stroke (all stroke, as WHI counts it), coronary heart disease
(myocardial infarction and coronary death, WHI's CHD) and colorectal cancer. Annual discrete
time from entry as for fractures (hazards.py): year k covers ages [entry + k, entry + k + 1).

    h_o(k) = incidence_o(age_k, sex) * exp( sum_c w_c(k) log HR_c,o
                                           + sum_c a_c(k) log HRafter_c,o
                                           + u(k) log HRunopposed_o )

* ``incidence``: US baseline incidence of a first event by sex and single year of age
  (data/epidemiology/harms/baseline_incidence.csv, sources there); endometrial cancer only in
  women with a uterus, at the rate per woman with a uterus.
* Components c are the agents' routes (``COMPONENTS``: "agent.route"); w_c(k) is the share of
  year k on that route times adherence, so a log hazard ratio is taken in proportion to the
  time treated (the trials' hazard ratios are intention-to-treat, a conservative reading).
  A progestogen's hazard ratios describe what adding it to an estrogen changes (WHI E+P over
  WHI E-alone): they act only while an estrogen is taken, w = min(progestogen, estrogen).
* a_c(k): share of year k within ``after_years`` after the route stopped (times adherence),
  for effects that outlast treatment where a trial measured them (IBIS-II); every other
  effect stops with the treatment (assumption, harm_effects.csv and SOURCES.md §4).
* u(k): estrogen taken by a woman with a uterus without a progestogen or bazedoxifene
  covering it (arms with ``allow_unopposed_estrogen``, or a progestogen stopped earlier or
  taken less than the estrogen): unopposed estrogen's endometrial-cancer risk.

The hazard ratios, their intervals and sources: data/epidemiology/harms/harm_effects.csv.
Mortality of the events (case fatality in the event's year, excess annual hazard for some
years after it) enters the sampled deaths (events.py); the life table's hazard is reduced by
the deaths these events cause at their baseline rates (``background_hazard``), so that an
untreated cohort still dies at the life table's rate.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from bonecohort.exposure.agents import AGENTS
from bonecohort.exposure.endogenous import window_fraction
from bonecohort.exposure.protocol import Arm, dose_share, regimen_windows

HARMS = ("invasive_breast_cancer", "endometrial_cancer", "dvt", "pe", "stroke", "chd",
         "colorectal_cancer")
ENDOMETRIAL = HARMS.index("endometrial_cancer")
COMPONENTS = tuple(f"{a.name}.{r}" for a in AGENTS.values() for r in a.routes)


def component(agent: str, route: str) -> int:
    return COMPONENTS.index(f"{agent}.{route}")


class HarmSetup(NamedTuple):
    """Inputs of the harm hazards (arrays; built by outcome_inputs.py from the tables)."""

    incidence: jnp.ndarray  # (O, 2, ages) per person-year, first events
    log_hr: jnp.ndarray  # (C, O) on treatment
    log_hr_after: jnp.ndarray  # (C, O) after stopping, for ``after_years``
    after_years: jnp.ndarray  # (C,) years an after-stopping effect lasts
    log_hr_unopposed: jnp.ndarray  # (O,) unopposed estrogen with a uterus
    case_fatality: jnp.ndarray  # (O, 2) probability of dying of the event in its year
    excess: jnp.ndarray  # (O, 2) excess death hazard per year after the event's year
    excess_years: jnp.ndarray  # (O,) years the excess lasts
    background: jnp.ndarray  # (2, ages) deaths per person-year these events cause at baseline


class HarmYears(NamedTuple):
    """Harm hazards of one patient under one arm and what their events do to survival."""

    hazard: jnp.ndarray  # (H, O) per year
    case_fatality: jnp.ndarray  # (O,)
    excess: jnp.ndarray  # (O,) per year
    excess_years: jnp.ndarray  # (O,)


class Exposure(NamedTuple):
    """Yearly treatment of one patient under one arm (shares of each year times adherence)."""

    taken: jnp.ndarray  # (H, C) on each route (for drug costs)
    effect: jnp.ndarray  # (H, C) weight of each route's hazard ratios
    after: jnp.ndarray  # (H, C) share of the year in each route's after-stopping window
    unopposed: jnp.ndarray  # (H,) unopposed estrogen in a woman with a uterus


def yearly_exposure(arm: Arm | None, patient, years: int, after_years) -> Exposure:
    """``Exposure`` of ``patient`` under ``arm`` (None: untreated) over ``years`` years."""
    dtype = patient.age_entry.dtype
    a = patient.age_entry + jnp.arange(years, dtype=dtype)
    zeros = jnp.zeros((years, len(COMPONENTS)), dtype)
    if arm is None or not arm.regimens:
        return Exposure(zeros, zeros, zeros, jnp.zeros((years,), dtype))
    taken, after = zeros, zeros
    estrogen, opposing, unopposable = (jnp.zeros((years,), dtype) for _ in range(3))
    for reg, (start, stop) in zip(arm.regimens, regimen_windows(arm, patient)):
        c = component(reg.agent, reg.route_name)
        took = dose_share(reg, patient)
        share = window_fraction(a, a + 1.0, start, stop) * took
        taken = taken.at[:, c].add(share)
        after = after.at[:, c].add(window_fraction(a, a + 1.0, stop, stop + after_years[c])
                                   * took * (stop > start))
        agent = AGENTS[reg.agent]
        if agent.is_estrogen:
            estrogen = estrogen + share
            if agent.kind == "estrogen":
                unopposable = unopposable + share
        if agent.opposes_estrogen_in_uterus:
            opposing = opposing + share
    progestogen = jnp.asarray([AGENTS[name.split(".")[0]].kind == "progestogen"
                               for name in COMPONENTS])
    effect = jnp.where(progestogen, jnp.minimum(taken, estrogen[:, None]), taken)
    unopposed = jnp.clip(unopposable - opposing, 0.0, 1.0) * patient.uterus_intact
    return Exposure(taken, effect, jnp.clip(after, 0.0, 1.0), unopposed)


def harm_years(patient, age_index, exposure: Exposure, hs: HarmSetup) -> HarmYears:
    """Annual harm hazards (``HarmYears``) of one patient; ``age_index`` (H,): the table age
    of each year (hazards.Trajectory.age_index)."""
    sex = patient.male.astype(jnp.int32)
    log_m = (exposure.effect @ hs.log_hr + exposure.after @ hs.log_hr_after
             + exposure.unopposed[:, None] * hs.log_hr_unopposed[None, :])
    base = hs.incidence[:, sex, age_index].T  # (H, O)
    uterus = jnp.ones((len(HARMS),), base.dtype).at[ENDOMETRIAL].set(
        patient.uterus_intact * (1.0 - patient.male))
    return HarmYears(base * jnp.exp(log_m) * uterus, hs.case_fatality[:, sex],
                     hs.excess[:, sex], hs.excess_years)


def background_hazard(hs: HarmSetup, sex, age_index):
    """Deaths per person-year the harm events cause at their baseline rates, (H,)."""
    return hs.background[sex, age_index]
