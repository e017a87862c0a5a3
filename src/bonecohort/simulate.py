"""One patient's life course under each arm of a study (pure JAX; vmapped outside).

Time line of a patient, in years of age, on a fixed grid of ``steps_per_year`` steps a year:

    entry - prefix_years ... entry ............................ entry + horizon_years
    |---- natural history (shared by arms) ----|---- one branch per arm ----------|

The prefix starts at peak bone mass: ``prefix_years = ceil(age_max - 30)``, so the youngest
patient starts before 30 at the premenopausal steady state (nothing changes before the FMP
in this model, so starting earlier is exact). Bone volume is normalized to 1 at the start;
the site's BMD is its peak value times BV. Treatment starts at entry or later, so the
natural history is simulated once and each arm continues from the state at entry.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .agents import AGENTS
from .exposure import MenopauseParams, endogenous_estradiol_female, window_fraction
from .integrate import integrate
from .model.hormones import estrogen_action
from .model.params import CoreParams, HormoneParams, SiteParams
from .model.site import DAYS_PER_YEAR, site_rates
from .population import Patient


class Regimen(NamedTuple):
    """One agent given from ``start`` for ``duration_years`` (static, hashable).

    start: "fmp" (``start_value`` years after the final menstrual period, or at entry if that
    is later), "age" (at age ``start_value``, or entry if later) or "entry" (``start_value``
    years after entry).
    """

    agent: str
    dose: float
    start: str = "entry"
    start_value: float = 0.0
    duration_years: float = 1e9


class Arm(NamedTuple):
    name: str
    regimens: tuple = ()


class Grid(NamedTuple):
    prefix_years: int
    horizon_years: int
    steps_per_year: int = 12


class ModelParams(NamedTuple):
    """All model constants as one pytree (``sites`` stacked on a leading site axis)."""

    core: CoreParams
    hormones: HormoneParams
    menopause: MenopauseParams
    sites: SiteParams


def regimen_start(reg: Regimen, patient: Patient):
    """Age (years) at which ``reg`` starts for ``patient``; never before entry."""
    if reg.start == "fmp":
        return jnp.maximum(patient.fmp_age + reg.start_value, patient.age_entry)
    if reg.start == "age":
        return jnp.maximum(reg.start_value, patient.age_entry)
    return patient.age_entry + reg.start_value


def regimen_window(reg: Regimen, patient: Patient):
    """(start, stop) ages of ``reg``, snapped to whole months from entry.

    Doses are counted in whole months, and step grids have a whole number of steps a month
    (``steps_per_year`` a multiple of 12), so no step straddles a start or a stop: a switch
    inside a step would cost the linearly implicit method its accuracy.
    """
    def snap(age):
        return patient.age_entry + jnp.round((age - patient.age_entry) * 12.0) / 12.0

    start = regimen_start(reg, patient)
    return snap(start), snap(start + reg.duration_years)


def arm_estradiol(a, b, patient: Patient, arm: Arm, model: ModelParams):
    """Step-averaged serum estradiol (pg/mL) over steps [a, b) under ``arm``."""
    e2 = endogenous_estradiol_female(a, b, patient.fmp_age, patient.e2_post, model.menopause)
    for reg in arm.regimens:
        on = window_fraction(a, b, *regimen_window(reg, patient))
        e2 = e2 + on * reg.dose * AGENTS[reg.agent].e2_per_dose
    return e2


def _step_edges(first_age, years: int, steps_per_year: int):
    k = jnp.arange(years * steps_per_year + 1, dtype=first_age.dtype)
    edges = first_age + k / steps_per_year
    return edges[:-1], edges[1:]


def simulate_patient(patient: Patient, model: ModelParams, steady, arms: tuple, grid: Grid):
    """Simulate both sites of one patient through the natural history and every arm.

    ``steady``: Pivonka steady state (OBp*, OBa*, OCa*) in pM, shape (3,).
    Returns a dict of arrays: ``bv_entry`` (n_sites,), BV at entry relative to peak;
    ``bv_rel`` (n_arms, n_sites, horizon_years), BV at the end of each year after entry
    relative to BV at entry.
    """
    dtype = patient.age_entry.dtype
    h = jnp.asarray(DAYS_PER_YEAR / grid.steps_per_year, dtype)

    def run_site(site: SiteParams, y0, e2):
        site = site._replace(turnover=site.turnover * patient.turnover_scale,
                             mech_gain=site.mech_gain * patient.mech_scale)

        def rates(y, u):
            action = estrogen_action(u, model.hormones, site.er_gain, patient.rankl_sensitivity)
            return site_rates(y, model.core, steady, site, action)

        return integrate(rates, y0, e2.reshape(-1, grid.steps_per_year), h, grid.steps_per_year)

    sites_vmap = jax.vmap(run_site, in_axes=(0, 0, None))
    n_sites = model.sites.turnover.shape[0]
    a, b = _step_edges(patient.age_entry - grid.prefix_years, grid.prefix_years,
                       grid.steps_per_year)
    e2_nat = endogenous_estradiol_female(a, b, patient.fmp_age, patient.e2_post, model.menopause)
    y_entry, _ = sites_vmap(model.sites, jnp.ones((n_sites, 4), dtype), e2_nat)

    a, b = _step_edges(patient.age_entry, grid.horizon_years, grid.steps_per_year)
    bv_rel = []
    for arm in arms:
        _, yearly = sites_vmap(model.sites, y_entry, arm_estradiol(a, b, patient, arm, model))
        bv_rel.append(yearly[:, :, 3] / y_entry[:, 3:4])
    return {"bv_entry": y_entry[:, 3], "bv_rel": jnp.stack(bv_rel)}
