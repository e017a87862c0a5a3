"""Life-years, QALYs and costs of one patient under one arm from the sampled years (pure JAX).

Annual cycles from entry; year k (0-based) is discounted by (1 + r)^-k, so the first year is
not discounted (the convention of annual-cycle cohort models; Drummond, Methods for the
Economic Evaluation of Health Care Programmes, 4th ed., ch. 4), with separate rates for costs
and effects. Years from ``years`` on (the economic horizon) count nothing.

* Life-years: the share of each year lived (1, 0.5 in the year of death).
* Utility of year k: the age- and sex-norm (US EQ-5D, Fryback 2007 Med Care 45:1162) times,
  for each event type (the seven harms, ``harms.HARMS``, then the four fracture sites), its
  first-year multiplier in a year with such an event and its later multiplier in every year
  after one (multiplicative across types, an assumption common to these models).
* Costs of year k: each event's first-year cost in its year, the later annual cost of every
  earlier event type in each year lived after it, and the drug cost of the year: each route's
  annual cost times the share of the year on it and adherence (harms.Exposure.taken); prices
  do not scale with dose (the table's cost is for its stated dose).

Inputs and sources: data/epidemiology/harms/ (event_utilities.csv, us_costs.csv,
utilities.csv age norms), assembled by outcome_inputs.py.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp


class EconomicsSetup(NamedTuple):
    """Inputs of the economic read-out (arrays)."""

    norm: jnp.ndarray  # (2, ages) utility of the general population by sex and age
    first_year: jnp.ndarray  # (T,) utility multiplier in the year of an event of each type
    later: jnp.ndarray  # (T,) multiplier in each later year
    cost_first: jnp.ndarray  # (T,) cost in the year of the event
    cost_later: jnp.ndarray  # (T,) cost per year lived after it
    drug: jnp.ndarray  # (C,) annual cost of each route (harms.COMPONENTS)
    discount_costs: jnp.ndarray  # () per year
    discount_effects: jnp.ndarray  # () per year
    years: jnp.ndarray  # () economic horizon, years from entry


class Economics(NamedTuple):
    life_years: jnp.ndarray  # () discounted
    qalys: jnp.ndarray  # () discounted
    costs: jnp.ndarray  # () discounted


def discount_factors(rate, years: int, horizon):
    """(1 + rate)^-k for k = 0 .. years-1, 0 from the ``horizon`` on."""
    k = jnp.arange(years)
    return jnp.where(k < horizon, (1.0 + rate) ** (-k.astype(jnp.result_type(rate))), 0.0)


def ever_before(flags):
    """True in the years after the first True of each column, (H, T)."""
    seen = jnp.cumsum(flags.astype(jnp.int32), axis=0) - flags.astype(jnp.int32)
    return seen > 0


def patient_economics(exposed, event_flags, taken, sex, age_index, es: EconomicsSetup
                      ) -> Economics:
    """``Economics`` of one patient under one arm. ``exposed`` (H,): share of each year lived;
    ``event_flags`` (H, T): an event of each type in year k; ``taken`` (H, C): share of each
    year on each route; ``age_index`` (H,): table age of each year."""
    years = exposed.shape[0]
    d_e = discount_factors(es.discount_effects, years, es.years)
    d_c = discount_factors(es.discount_costs, years, es.years)
    before = ever_before(event_flags)
    mult = jnp.where(event_flags, es.first_year, jnp.where(before, es.later, 1.0))
    utility = es.norm[sex, age_index] * jnp.prod(mult, axis=1)
    event_costs = event_flags @ es.cost_first + exposed * (before @ es.cost_later)
    drug = exposed * (taken @ es.drug)
    return Economics(life_years=jnp.sum(exposed * d_e), qalys=jnp.sum(exposed * utility * d_e),
                     costs=jnp.sum((event_costs + drug) * d_c))
