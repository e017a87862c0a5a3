"""Sampled fractures, harm events and deaths of one patient under one arm (pure JAX).

Events are drawn with uniforms that depend only on the patient and the year, the same in every
arm (common random numbers: identical arms give identical events). Mortality: life-table
hazard multiplied after a hip fracture by 2.94 (women) / 3.86 (men) in the year after it and
1.5 / 1.8 later (``FractureParams``; Haentjens 2010 Ann Intern Med 152:380, sources in
hazards.py), less the deaths the harm events cause at their baseline rates (harms.py); a harm
event kills in its year with its case fatality and adds its excess death hazard for
``excess_years`` from the event (half of its own year, in the probability of dying of it
then, and half of the last; ``excess_weight``). With harms, untreated women of the default study (no
uterus) die a little less than the life table says over 30 years (34.6 % vs 35.6 %, 8,192
women): about half is by design (they lack the endometrial deaths the life table's average
woman has), the rest because events before entry, and their excess deaths, are not simulated.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.model.params import FractureParams
from bonecohort.outcomes.harms import HARMS, HarmYears
from bonecohort.outcomes.hazards import N_SITES, FractureSite


class Uniforms(NamedTuple):
    death: jnp.ndarray  # (H,)
    fracture: jnp.ndarray  # (H, 4)
    prior: jnp.ndarray  # (), prior fracture at entry


def uniform(key, shape: tuple, dtype):
    """Float32 uniforms of ``shape`` cast to ``dtype``, drawn as one flat vector and reshaped.

    The values are those of a draw of ``shape`` (threefry numbers the elements in row-major
    order, so a flat draw of the same count reshaped gives the same bits; checked bitwise with
    jax 0.10). The flat draw is what XLA's CPU compiler handles well: vmapped over a chunk, a
    (years, sites) draw became a three-dimensional threefry kernel that took 0.2-0.4 s of
    LLVM time each (four of them, over a third of the outcome code's LLVM time), a flat one ~4x
    less (benchmarks/RESULTS.md).
    """
    size = int(np.prod(shape, dtype=int))
    return jax.random.uniform(key, (size,), jnp.float32).reshape(shape).astype(dtype)


def event_uniforms(key, years: int, dtype) -> Uniforms:
    """Uniforms of one patient for sampled events; the same in every arm."""
    kd, kf, kp = jax.random.split(key, 3)
    return Uniforms(uniform(kd, (years,), dtype), uniform(kf, (years, N_SITES), dtype),
                    uniform(kp, (), dtype))


class HarmUniforms(NamedTuple):
    event: jnp.ndarray  # (H, O)
    fatal: jnp.ndarray  # (H, O)


def harm_uniforms(key, years: int, dtype) -> HarmUniforms:
    """Uniforms of one patient for harm events and their case fatality; the same in every arm
    (a stream of its own, so fracture and death draws do not depend on it)."""
    ke, kf = jax.random.split(key)
    shape = (years, len(HARMS))
    return HarmUniforms(uniform(ke, shape, dtype), uniform(kf, shape, dtype))


class SampledEvents(NamedTuple):
    """Sampled events of one patient under one arm over the horizon."""

    fractures: jnp.ndarray  # (4,) int, fractures per ``FractureSite``
    fractures_by_age: jnp.ndarray  # (4,) int, those before the study's ``by_age``
    first_hip_year: jnp.ndarray  # () int, years after entry (0-based); -1: none
    first_mof_year: jnp.ndarray  # () int; -1: none
    death_year: jnp.ndarray  # () int; -1: alive at the horizon
    life_years: jnp.ndarray  # () years lived within the horizon
    harm_years: jnp.ndarray  # (O,) int, year of the first event of each ``HARMS``; -1: none
    harm_death: jnp.ndarray  # () bool, died of a harm event in its year
    exposed: jnp.ndarray  # (H,) share of each year lived (1, 0.5 in the year of death, 0)
    # (a death from a harm event included)
    fracture_flags: jnp.ndarray  # (H, 4) bool, a fracture of each site in year k
    harm_flags: jnp.ndarray  # (H, O) bool, the first event of each harm in year k


def no_harms(h_death) -> HarmYears:
    """``HarmYears`` of a run without harm outcomes: no events."""
    zeros = jnp.zeros((len(HARMS),), h_death.dtype)
    return HarmYears(jnp.zeros(h_death.shape + (len(HARMS),), h_death.dtype), zeros, zeros,
                     zeros)


def excess_weight(since, years):
    """Share of a year under an event's excess death hazard, ``since`` years after the year of
    the event (0: none yet): the excess lasts ``years`` from the event, taken at mid-year, so
    half of the event's own year (``sample_events``), whole years after, half of year
    ``years``."""
    return jnp.where((since >= 1) & (since < years), 1.0,
                     jnp.where((since >= 1) & (since == years), 0.5, 0.0))


def _year(fp: FractureParams, rr_first, rr_later, hy: HarmYears):
    """One year of the event scan (``sample_events``)."""

    def year(state, inputs):
        alive, prior, years_since_hip, had, since = state
        h, mu, bg, ud, uf, counted, h_harm, uh, ucf = inputs
        mult = jnp.where(years_since_hip == 1, rr_first,
                         jnp.where(years_since_hip > 1, rr_later, 1.0))
        excess = jnp.sum(excess_weight(since, hy.excess_years) * hy.excess)
        other = jnp.maximum(mu * mult - bg, 0.5 * mu * mult)
        dies = alive & (ud < 1.0 - jnp.exp(-(other + excess)))
        exposure = jnp.where(dies, 0.5, 1.0)
        p = 1.0 - jnp.exp(-h * exposure * jnp.where(prior, fp.prior_rr, 1.0))
        fx = alive & (uf < p)
        harm = alive & ~had & (uh < 1.0 - jnp.exp(-h_harm * exposure))
        # dying of the event in its year: case fatality, or the excess hazard of half a year
        p_fatal = 1.0 - (1.0 - hy.case_fatality) * jnp.exp(-0.5 * hy.excess)
        fatal = alive & ~dies & (harm & (ucf < p_fatal)).any()
        hip = fx[FractureSite.HIP]
        since_hip = jnp.where(years_since_hip > 0, years_since_hip + 1,
                              jnp.where(hip, 1, years_since_hip))
        since = jnp.where(since > 0, since + 1, jnp.where(harm, 1, since))
        out = (fx, fx & counted, dies | fatal,
               jnp.where(alive, jnp.where(dies | fatal, 0.5, 1.0), 0.0), harm, fatal)
        return (alive & ~dies & ~fatal, prior | fx.any(), since_hip, had | harm, since), out

    return year


def sample_events(h_sites, h_death, sex, u: Uniforms, fp: FractureParams, by_age_mask,
                  prior_at_entry=0.0, hy: HarmYears | None = None,
                  hu: HarmUniforms | None = None, background=None) -> SampledEvents:
    """Sampled fractures, harm events and death for one patient and arm.

    The patient enters with a prior fracture with probability ``prior_at_entry`` (the share
    in the reference population of that age and sex, so that fractures before entry, which
    are not simulated, still raise the hazard). A patient who dies in year k is exposed to
    fracture and harm events for half of it. ``hy``/``hu``: harm hazards and uniforms (None:
    no harm events); ``background`` (H,): the deaths per year the harm events cause at
    baseline rates, removed from the life table's hazard after its hip-fracture multiplier
    (None: nothing removed; floored at half the hazard). Returns ``SampledEvents``.
    """
    rr_first = jnp.asarray(fp.hip_death_rr_first)[sex]
    rr_later = jnp.asarray(fp.hip_death_rr_later)[sex]
    hy = no_harms(h_death) if hy is None else hy
    if hu is None:
        ones = jnp.ones(hy.hazard.shape, h_death.dtype)
        hu = HarmUniforms(ones, ones)
    background = jnp.zeros_like(h_death) if background is None else background
    zero = jnp.zeros((len(HARMS),), jnp.int32)
    init = (jnp.asarray(True), u.prior < prior_at_entry, jnp.asarray(0),
            jnp.zeros((len(HARMS),), bool), zero)
    _, (fx, fx_by_age, dies, exposed, harm, fatal) = jax.lax.scan(
        _year(fp, rr_first, rr_later, hy), init,
        (h_sites, h_death, background, u.death, u.fracture, by_age_mask, hy.hazard, hu.event,
         hu.fatal))

    def first(flags, axis=0):
        return jnp.where(flags.any(axis=axis), jnp.argmax(flags, axis=axis), -1)

    return SampledEvents(fractures=fx.sum(axis=0), fractures_by_age=fx_by_age.sum(axis=0),
                         first_hip_year=first(fx[:, FractureSite.HIP]),
                         first_mof_year=first(fx.any(axis=1)), death_year=first(dies),
                         life_years=exposed.sum(), harm_years=first(harm), harm_death=fatal.any(),
                         exposed=exposed, fracture_flags=fx, harm_flags=harm)
