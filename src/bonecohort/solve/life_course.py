"""One patient's life course under each arm of a study (pure JAX; vmapped outside).

Time line of a patient, in years of age, on a fixed grid of ``steps_per_year`` steps a year:

    entry - prefix_years ... entry ............................ entry + horizon_years
    |---- natural history (shared by arms) ----|---- one branch per arm ----------|

The prefix starts at peak bone mass: ``prefix_years = ceil(age_max - 30)``, so every patient
starts at an age between 29 and 30, at steady state with her or his own untreated hormones.
Bone volume is normalized to 1 at the start; the site's BMD is its peak value times BV.
Treatment starts at entry or later, so the natural history is simulated once and each arm
continues from the state at entry; arms are vmapped (one compiled branch for all arms).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bonecohort.exposure.endogenous import StepInputs, hormones_at, no_treatment
from bonecohort.exposure.protocol import step_inputs
from bonecohort.model.hormones import hormone_action
from bonecohort.model.params import PEAK_BONE_AGE, ModelParams, SiteParams
from bonecohort.model.site import DAYS_PER_YEAR, OCA, bmd, site_rates, steady_state_vector
from bonecohort.population import Patient
from bonecohort.solve.rosenbrock import METHODS, integrate_driven


class Grid(NamedTuple):
    prefix_years: int
    horizon_years: int
    steps_per_year: int = 12
    solver: str = "rodas3"  # a key of rosenbrock.METHODS
    outputs_per_year: int = 1  # read-outs after entry: 1 (year ends) or 12 (month ends)
    prefix_steps_per_year: int = 4  # steps a year of the natural-history prefix (0: the same)

    @staticmethod
    def for_entry_ages(age_max: float, horizon_years: int, **kw) -> "Grid":
        """The grid of a population entering at ages up to ``age_max``: a prefix from peak
        bone mass (``PEAK_BONE_AGE``) long enough for the oldest entrant."""
        return Grid(prefix_years=math.ceil(age_max - PEAK_BONE_AGE),
                    horizon_years=horizon_years, **kw)


class LifeCourse(NamedTuple):
    """What ``simulate_patient`` returns for one patient (a batch adds a leading axis).

    Sites are on the axis named by ``model.params.Site``; read-outs ``k`` are the ends of
    year (or month, ``Grid.outputs_per_year``) ``k + 1`` after entry.
    """

    bmd_entry: jnp.ndarray  # (sites,) BMD at entry relative to peak bone mass (model.site.bmd)
    bmd_rel: jnp.ndarray  # (arms, sites, read-outs) BMD relative to entry
    oc_entry: jnp.ndarray  # (sites,) active osteoclasts / reference steady state at entry
    oc: jnp.ndarray  # (arms, sites, read-outs) the same at each read-out (resorption)
    e2_entry: jnp.ndarray  # () pg/mL, untreated serum estradiol at entry
    t_entry: jnp.ndarray  # () ng/dL, untreated serum testosterone at entry

    def year_ends(self, per_year: int) -> "LifeCourse":
        """Read-outs taken ``per_year`` times a year, reduced to year ends."""
        if per_year == 1:
            return self
        return self._replace(bmd_rel=self.bmd_rel[..., per_year - 1::per_year],
                             oc=self.oc[..., per_year - 1::per_year])


class SiteODE(NamedTuple):
    """One patient's site equations split for ``rosenbrock.integrate_driven``: ``drive(t, u)``
    (serum hormones and age at t days from ``age0`` under step exposures ``u``; the same for
    every site) and ``rates(y, d, site)`` (dy/dt of one site, 1/day, for drive values d)."""

    drive: object
    rates: object

    def rhs(self, site: SiteParams):
        """The site's right-hand side ``rates(t, y, u)`` in one piece (reference solvers)."""
        return lambda t, y, u: self.rates(y, self.drive(t, u), site)


def patient_sites(patient: Patient, site: SiteParams) -> SiteParams:
    """Site constants with the patient's turnover and mechanostat-gain scales applied."""
    return site._replace(turnover=site.turnover * patient.turnover_scale,
                         mech_gain=site.mech_gain * patient.mech_scale)


def site_ode(patient: Patient, model: ModelParams, steady, age0, life_start) -> SiteODE:
    """The site equations of ``patient`` with t in days from age ``age0`` (sites take
    constants already scaled by ``patient_sites``).

    Hormones are evaluated at the instant and act relative to the patient's own untreated
    hormones at ``life_start`` (peak bone mass), where every site is at steady state. The
    mechanostat set point drifts with age-related loss from ``life_start`` (params.SiteParams).
    """
    hp, ep = model.hormones, model.endocrine
    ref = hormones_at(life_start, patient, no_treatment(life_start.dtype), ep, hp)

    def drive(t, u: StepInputs):
        age = age0 + t / DAYS_PER_YEAR
        return hormones_at(age, patient, u, ep, hp), age

    def rates(y, d, site: SiteParams):
        hormones, age = d
        action = hormone_action(hormones, ref, hp, site.er_gain, patient.rankl_sensitivity)
        return site_rates(y, model.core, steady, site, action,
                          log_set_point=-site.age_loss * (age - life_start))

    return SiteODE(drive, rates)


def site_rhs(patient: Patient, model: ModelParams, steady, site: SiteParams, age0, life_start):
    """Right-hand side ``rates(t, y, u)`` of one site of ``patient`` (``site_ode``): t in days
    from age ``age0``, ``u`` the ``StepInputs`` of the current step (scalars)."""
    return site_ode(patient, model, steady, age0, life_start).rhs(patient_sites(patient, site))


def step_edges(first_age, years: int, steps_per_year: int):
    """Start and end ages (years) of each step of ``years`` years from ``first_age``."""
    k = jnp.arange(years * steps_per_year + 1, dtype=first_age.dtype)
    edges = first_age + k / steps_per_year
    return edges[:-1], edges[1:]


def simulate_patient(patient: Patient, model: ModelParams, steady, arms: tuple, grid: Grid):
    """Simulate both sites of one patient through the natural history and every arm.

    ``steady``: Pivonka steady state (OBp*, OBa*, OCa*) in pM, shape (3,).
    Returns a ``LifeCourse`` (its fields document shapes and units).
    """
    dtype = patient.age_entry.dtype
    spy = grid.steps_per_year
    spy_prefix = grid.prefix_steps_per_year or spy
    life_start = patient.age_entry - grid.prefix_years

    sites = patient_sites(patient, model.sites)

    def run_sites(y0, age0, inputs: StepInputs, per_output: int, spy: int):
        ode = site_ode(patient, model, steady, age0, life_start)
        periods = jax.tree.map(lambda v: v.reshape(-1, per_output), inputs)
        y, ys = integrate_driven(ode.rates, ode.drive, y0, sites, jnp.zeros((), dtype),
                                 periods, jnp.asarray(DAYS_PER_YEAR / spy, dtype), per_output,
                                 METHODS[grid.solver])
        return y, jnp.moveaxis(ys, 0, 1)  # (sites, read-outs, state)

    n_sites = model.sites.turnover.shape[0]
    a, b = step_edges(life_start, grid.prefix_years, spy_prefix)
    y_entry, _ = run_sites(steady_state_vector(dtype, (n_sites,)), life_start,
                           step_inputs(a, b, patient, None), spy_prefix, spy_prefix)

    a, b = step_edges(patient.age_entry, grid.horizon_years, spy)
    inputs = [step_inputs(a, b, patient, arm, model.agents) for arm in arms]
    stacked = jax.tree.map(lambda *v: jnp.stack(v), *inputs)
    arms_vmap = jax.vmap(run_sites, in_axes=(None, None, 0, None, None))
    _, yearly = arms_vmap(y_entry, patient.age_entry, stacked, spy // grid.outputs_per_year, spy)
    # yearly: (arms, sites, read-outs, state)
    at_entry = hormones_at(patient.age_entry, patient, no_treatment(dtype), model.endocrine,
                           model.hormones)
    bmd_entry = bmd(y_entry)
    return LifeCourse(bmd_entry=bmd_entry, bmd_rel=bmd(yearly) / bmd_entry[None, :, None],
                      oc_entry=y_entry[:, OCA], oc=yearly[..., OCA], e2_entry=at_entry.e2,
                      t_entry=at_entry.t)
