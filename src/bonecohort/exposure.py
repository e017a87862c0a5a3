"""Hormone exposure as closed-form functions of age, averaged over integration steps (pure JAX).

Hormone levels are inputs, never ODE states: estradiol's half-life is minutes, bone moves over
months (DESIGN.md section 4). Every function returns the *average* over a step [a, b) (years of
age), so a fixed month-long step sees the rate-averaged exposure rather than a point sample.

Endogenous estradiol in women (pg/mL):

    E2(age) = E2_post + (E2_pre - E2_post) * sigma((FMP - age)/w)

a logistic fall centred on the final menstrual period (FMP). SWAN hormone trajectories
(Randolph 2011 J Clin Endocrinol Metab 96:746) show E2 starting to fall about 2 years before
the FMP, falling fastest around it and levelling off about 2 years after; w = 0.8 y puts
80 % of the fall within FMP +/- 1.8 y. E2_pre = 100 pg/mL cycle-averaged, E2_post 5-15 pg/mL
(DESIGN.md section 4).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class MenopauseParams(NamedTuple):
    """Population constants of the menopause transition (see module docstring)."""

    E2_pre: float = 100.0  # pg/mL, cycle-averaged premenopausal estradiol
    width: float = 0.8  # years, logistic scale of the transition around the FMP


def logistic_fall_average(a, b, centre, width):
    """Average over [a, b) of sigma((centre - age)/width): 1 long before ``centre``, 0 after.

    Closed form: width/(b - a) * [softplus((centre - a)/width) - softplus((centre - b)/width)].
    """
    sp = jax.nn.softplus
    return width / (b - a) * (sp((centre - a) / width) - sp((centre - b) / width))


def window_fraction(a, b, start, stop):
    """Fraction of the step [a, b) that lies inside the window [start, stop)."""
    return jnp.clip((jnp.minimum(b, stop) - jnp.maximum(a, start)) / (b - a), 0.0, 1.0)


def endogenous_estradiol_female(a, b, fmp_age, e2_post, mp: MenopauseParams):
    """Step-averaged endogenous serum estradiol (pg/mL) of a woman over ages [a, b)."""
    return e2_post + (mp.E2_pre - e2_post) * logistic_fall_average(a, b, fmp_age, mp.width)
