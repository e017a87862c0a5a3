"""Sampled fractures and deaths of one patient under one arm (pure JAX).

Events are drawn with uniforms that depend only on the patient and the year, the same in every
arm (common random numbers: identical arms give identical events). Mortality: life-table
hazard, multiplied after a hip fracture by 2.94 (women) / 3.86 (men) in the year after it and
1.5 / 1.8 later (``FractureParams``; Haentjens 2010 Ann Intern Med 152:380, sources in
hazards.py).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bonecohort.model.params import FractureParams
from bonecohort.outcomes.hazards import N_SITES, FractureSite


class Uniforms(NamedTuple):
    death: jnp.ndarray  # (H,)
    fracture: jnp.ndarray  # (H, 4)
    prior: jnp.ndarray  # (), prior fracture at entry


def event_uniforms(key, years: int, dtype) -> Uniforms:
    """Uniforms of one patient for sampled events; the same in every arm."""
    kd, kf, kp = jax.random.split(key, 3)
    u = lambda k, shape: jax.random.uniform(k, shape, jnp.float32).astype(dtype)  # noqa: E731
    return Uniforms(u(kd, (years,)), u(kf, (years, N_SITES)), u(kp, ()))


class SampledEvents(NamedTuple):
    """Sampled events of one patient under one arm over the horizon."""

    fractures: jnp.ndarray  # (4,) int, fractures per ``FractureSite``
    fractures_by_age: jnp.ndarray  # (4,) int, those before the study's ``by_age``
    first_hip_year: jnp.ndarray  # () int, years after entry (0-based); -1: none
    first_mof_year: jnp.ndarray  # () int; -1: none
    death_year: jnp.ndarray  # () int; -1: alive at the horizon
    life_years: jnp.ndarray  # () years lived within the horizon


def sample_events(h_sites, h_death, sex, u: Uniforms, fp: FractureParams, by_age_mask,
                  prior_at_entry=0.0) -> SampledEvents:
    """Sampled fractures and death for one patient and arm.

    The patient enters with a prior fracture with probability ``prior_at_entry`` (the share
    in the reference population of that age and sex, so that fractures before entry, which
    are not simulated, still raise the hazard). A patient who dies in year k is exposed to
    fracture for half of it. Returns ``SampledEvents``.
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
        hip = fx[FractureSite.HIP]
        since = jnp.where(years_since_hip > 0, years_since_hip + 1,
                          jnp.where(hip, 1, years_since_hip))
        out = (fx, fx & counted, dies, jnp.where(alive, exposure, 0.0))
        return (alive & ~dies, prior | fx.any(), since), out

    init = (jnp.asarray(True), u.prior < prior_at_entry, jnp.asarray(0))
    _, (fx, fx_by_age, dies, exposed) = jax.lax.scan(
        year, init, (h_sites, h_death, u.death, u.fracture, by_age_mask))

    def first(flags):
        return jnp.where(flags.any(), jnp.argmax(flags), -1)

    return SampledEvents(fractures=fx.sum(axis=0), fractures_by_age=fx_by_age.sum(axis=0),
                         first_hip_year=first(fx[:, FractureSite.HIP]),
                         first_mof_year=first(fx.any(axis=1)), death_year=first(dies),
                         life_years=exposed.sum())
