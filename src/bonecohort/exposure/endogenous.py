"""Hormone exposure: endogenous sex steroids as smooth functions of age, plus treatment
exposures that are constant over each integration step (pure JAX, one patient).

Hormone levels are inputs, never ODE states: estradiol's half-life is minutes, bone moves over
months. Treatments enter as ``StepInputs``, the rate-averaged exposure of
each step (agents.py); smooth endogenous trajectories are evaluated at the integrator's stage
times (solve/rosenbrock.py), so the Rosenbrock method sees them to full order.

Women (pg/mL, ng/dL):

    E2 = (E2_pre - E2_post) sigma((FMP - age)/w) * ovary  +  (E2_post + k_arom T_exo)(1 - I)
         + E2_exo
    T  = T_30 exp(-d (age - 30)) + T_exo

The ovarian part falls logistically around the final menstrual period: SWAN trajectories
(Randolph 2011 JCEM 96:746) start to fall ~2 y before the FMP and level off ~2 y after;
w = 0.8 y puts 80 % of the fall within FMP +/- 1.8 y. E2_pre = 100 pg/mL cycle-averaged,
E2_post 5-15 pg/mL (Randolph 2011), made by peripheral aromatization, which an
aromatase inhibitor blocks (fraction I = x/(1 + x)). ``ovary`` drops to 0 at a bilateral
oophorectomy: surgical menopause is abrupt (E2 half-life ~161 min), modelled as a switch at
a step boundary.

Men:

    T  = T_30 exp(-d (age - 30)) h(age) (1 + f_AI I) / (1 + T_exo/T_supp) + T_exo
    E2 = k_arom [T_endo (f_testis + (1 - f_testis)(1 - I)) + T_exo (1 - I)] + E2_exo

with d = 1 %/yr, h the late-onset hypogonadism factor (falls smoothly to
``hypogonadal_factor`` around the onset age), f_AI the rise of T when estrogen feedback is
blocked and f_testis the share of E2 secreted by the testes (params.HormoneParams).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bonecohort.model.hormones import Hormones
from bonecohort.model.params import PEAK_BONE_AGE, EndocrineParams, HormoneParams


class StepInputs(NamedTuple):
    """Exposures held constant over one step (arrays with a leading step axis in a run)."""

    e2: jnp.ndarray  # pg/mL, exogenous estradiol (equivalent)
    t: jnp.ndarray  # ng/dL, exogenous testosterone
    serm_occ: jnp.ndarray  # sum S/K_S
    serm_ago: jnp.ndarray  # sum eps_S S/K_S
    ai: jnp.ndarray  # aromatase inhibitor dose/IC50
    igf: jnp.ndarray  # relative IGF-1 rise
    ovary: jnp.ndarray  # fraction of the step with ovaries in place (women)


def window_fraction(a, b, start, stop):
    """Fraction of the step [a, b) that lies inside the window [start, stop) (0 for an empty
    step)."""
    width = b - a
    inside = jnp.minimum(b, stop) - jnp.maximum(a, start)
    return jnp.where(width > 0, jnp.clip(inside / jnp.where(width > 0, width, 1.0), 0.0, 1.0),
                     0.0)


def hormones_at(age, patient, u: StepInputs, ep: EndocrineParams, hp: HormoneParams):
    """Serum hormones of ``patient`` at ``age`` (years) under step exposures ``u``."""
    inhibited = u.ai / (1.0 + u.ai)
    t_trajectory = patient.t30 * jnp.exp(-ep.t_decline * (age - PEAK_BONE_AGE))
    # women
    ovarian = (ep.E2_pre - patient.e2_post) * jax.nn.sigmoid((patient.fmp_age - age) / ep.width)
    e2_f = (ovarian * u.ovary + (patient.e2_post + hp.k_arom * u.t) * (1.0 - inhibited) + u.e2)
    t_f = t_trajectory + u.t
    # men
    hypo = 1.0 - (1.0 - ep.hypogonadal_factor) * jax.nn.sigmoid(
        (age - patient.hypogonadal_onset) / ep.hypogonadal_width)
    t_endo = (t_trajectory * hypo * (1.0 + hp.ai_t_feedback * inhibited)
              / (1.0 + u.t / hp.T_supp))
    spared = hp.testis_e2_fraction + (1.0 - hp.testis_e2_fraction) * (1.0 - inhibited)
    e2_m = hp.k_arom * (t_endo * spared + u.t * (1.0 - inhibited)) + u.e2
    male = patient.male
    return Hormones(e2=male * e2_m + (1.0 - male) * e2_f,
                    t=male * (t_endo + u.t) + (1.0 - male) * t_f,
                    serm_occ=u.serm_occ, serm_ago=u.serm_ago, igf=u.igf)


def no_treatment(dtype) -> StepInputs:
    """Exposures of an untreated step with ovaries in place (scalars)."""
    zero = jnp.zeros((), dtype)
    return StepInputs(zero, zero, zero, zero, zero, zero, jnp.ones((), dtype))
