"""One patient's life course under each arm of a study (pure JAX; vmapped outside).

Time line of a patient, in years of age, on a fixed grid of ``steps_per_year`` steps a year:

    entry - prefix_years ... entry ............................ entry + horizon_years
    |---- natural history (shared by arms) ----|---- one branch per arm ----------|

The prefix starts at peak bone mass: ``prefix_years = ceil(age_max - 30)``, so every patient
starts at an age between 29 and 30, at steady state with her or his own untreated hormones.
Bone volume is normalized to 1 at the start; the site's BMD is its peak value times BV.
Treatment starts at entry or later, so the natural history is simulated once and each arm
continues from the state at entry; arms are vmapped (one compiled branch for all arms), or
run one after the other where a fit's padded plan says how many steps are live
(``simulate_plan``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bonecohort.exposure.endogenous import StepInputs, hormones_at, no_treatment
from bonecohort.exposure.protocol import (combined_inputs, exposure_rows, ovary_fraction,
                                          regimens_taken, step_inputs, surgery_switch,
                                          switch_ages)
from bonecohort.model.hormones import hormone_action
from bonecohort.model.params import PEAK_BONE_AGE, ModelParams, SiteParams
from bonecohort.model.site import (DAYS_PER_YEAR, JACOBIAN_PATTERN, OCA, bmd, site_rates,
                                   steady_state_vector)
from bonecohort.population import Patient
from bonecohort.solve.adaptive import integrate_segments
from bonecohort.solve.elimination import jacobian_pattern, with_jacobian_pattern
from bonecohort.solve.rosenbrock import METHODS, integrate_steps


class Grid(NamedTuple):
    prefix_years: int
    horizon_years: int
    steps_per_year: int = 12
    solver: str = "rodas3"  # a key of rosenbrock.METHODS
    outputs_per_year: int = 1  # read-outs after entry: 1 (year ends) or 12 (month ends)
    prefix_steps_per_year: int = 4  # steps a year of the natural-history prefix (0: the same)
    rtol: float = 0.0  # > 0: error-controlled steps to this tolerance instead (adaptive.py)
    max_steps_per_year: int = 200  # limit of controlled steps (accepted and rejected)

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
        return with_jacobian_pattern(lambda t, y, u: self.rates(y, self.drive(t, u), site),
                                     jacobian_pattern(self.rates))


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
        action = hormone_action(hormones, ref, hp, site.er_gain, patient.rankl_sensitivity,
                                site.serm_odds)
        return site_rates(y, model.core, steady, site, action,
                          log_set_point=-site.age_loss * (age - life_start))

    return SiteODE(drive, with_jacobian_pattern(rates, JACOBIAN_PATTERN))


def site_rhs(patient: Patient, model: ModelParams, steady, site: SiteParams, age0, life_start):
    """Right-hand side ``rates(t, y, u)`` of one site of ``patient`` (``site_ode``): t in days
    from age ``age0``, ``u`` the ``StepInputs`` of the current step (scalars)."""
    return site_ode(patient, model, steady, age0, life_start).rhs(patient_sites(patient, site))


def step_edges(first_age, years: int, steps_per_year: int):
    """Start and end ages (years) of each step of ``years`` years from ``first_age``."""
    k = jnp.arange(years * steps_per_year + 1, dtype=first_age.dtype)
    edges = first_age + k / steps_per_year
    return edges[:-1], edges[1:]


class StepGrid(NamedTuple):
    """Edges of one stretch of steps: ages (years), times (days from its first age) and,
    for each edge of the uniform grid, its position among all edges."""

    ages: jnp.ndarray  # (edges,)
    days: jnp.ndarray  # (edges,)
    uniform_at: jnp.ndarray  # (years * steps_per_year + 1,) int


def step_grid(first_age, years: int, steps_per_year: int, switches=()) -> StepGrid:
    """``steps_per_year`` equal steps a year from ``first_age``, with the ages ``switches``
    (clipped to the stretch) inserted as extra edges, so that exposures that change only at
    those ages are constant in every step (``protocol.switch_ages``)."""
    k = jnp.arange(years * steps_per_year + 1)
    dtype = first_age.dtype
    ages = first_age + k.astype(dtype) / steps_per_year
    days = k.astype(dtype) * (DAYS_PER_YEAR / steps_per_year)
    if not switches:
        return StepGrid(ages, days, k)
    sw = jnp.clip(jnp.stack(switches).astype(dtype), ages[0], ages[-1])
    sw_days = (sw - first_age) * DAYS_PER_YEAR
    order = jnp.argsort(jnp.concatenate([days, sw_days]), stable=True)
    before = jnp.sum(sw_days[None, :] < days[:, None], axis=1)
    return StepGrid(jnp.concatenate([ages, sw])[order],
                    jnp.concatenate([days, sw_days])[order], k + before)


def _padded_switches(arms: tuple, patient) -> list:
    """``switch_ages`` of every arm (None: untreated), padded to a common count (repeating
    the surgery)."""
    per_arm = [switch_ages(arm, patient) for arm in arms]
    most = max(len(s) for s in per_arm)
    return [s + [s[0]] * (most - len(s)) for s in per_arm]


def simulate_patient(patient: Patient, model: ModelParams, steady, arms: tuple, grid: Grid):
    """Simulate both sites of one patient through the natural history and every arm.

    ``steady``: Pivonka steady state (OBp*, OBa*, OCa*) in pM, shape (3,). Time runs in days
    from peak bone mass (``life_start``); fixed steps (``fixed_plan``) or, with
    ``grid.rtol > 0``, error-controlled ones (``_controlled_steps``).
    Returns a ``LifeCourse`` (its fields document shapes and units).
    """
    if grid.rtol > 0:
        return life_course(patient, model, steady, patient.age_entry - grid.prefix_years,
                           lambda ode, y0: _controlled_steps(patient, model, arms, grid, ode,
                                                             y0))
    return simulate_plan(patient, model, steady, fixed_plan(patient, arms, grid),
                         arm_exposures(arms, model.agents), grid.solver)


def life_course(patient: Patient, model: ModelParams, steady, life_start, solve):
    """The ``LifeCourse`` of ``patient`` from peak bone mass at age ``life_start``;
    ``solve(ode, y0)`` integrates it and returns the state at entry and the read-outs (arms,
    read-outs, sites, 2)."""
    dtype = patient.age_entry.dtype
    ode = site_ode(patient, model, steady, life_start, life_start)
    y0 = steady_state_vector(dtype, (model.sites.turnover.shape[0],))
    y_entry, reads = solve(ode, y0)
    yearly = jnp.moveaxis(reads, 1, 2)  # (arms, sites, read-outs, (bmd, oca))
    at_entry = hormones_at(patient.age_entry, patient, no_treatment(dtype), model.endocrine,
                           model.hormones)
    bmd_entry = bmd(y_entry)
    return LifeCourse(bmd_entry=bmd_entry, bmd_rel=yearly[..., 0] / bmd_entry[None, :, None],
                      oc_entry=y_entry[:, OCA], oc=yearly[..., 1], e2_entry=at_entry.e2,
                      t_entry=at_entry.t)


def _stacked(trees):
    return jax.tree.map(lambda *v: jnp.stack(v), *trees)


class FixedPlan(NamedTuple):
    """One patient's fixed steps and the share of each regimen taken in them: data that does
    not depend on the model's constants (the fit stacks a trial's plans and passes them to
    one compiled program). Times are days from peak bone mass (``life_start``, an age)."""

    life_start: jnp.ndarray  # ()
    pre_t: jnp.ndarray  # (Kp,) start of each natural-history step
    pre_h: jnp.ndarray  # (Kp,) its length (0: a padding step, skipped)
    pre_ovary: jnp.ndarray  # (Kp,) ``protocol.ovary_fraction``
    t: jnp.ndarray  # (arms, K) the same after entry, per arm
    h: jnp.ndarray  # (arms, K)
    ovary: jnp.ndarray  # (arms, K)
    taken: jnp.ndarray  # (arms, K, regimens) ``protocol.regimens_taken``
    out_steps: jnp.ndarray  # (arms, read-outs) int: step after which each read-out is taken

    def prefix(self) -> "PrefixPlan":
        """The natural history's steps of this plan."""
        return PrefixPlan(self.life_start, self.pre_t, self.pre_h, self.pre_ovary)


class PrefixPlan(NamedTuple):
    """The natural history's fixed steps alone (``FixedPlan.prefix``; ``prefix_plan``)."""

    life_start: jnp.ndarray
    t: jnp.ndarray
    h: jnp.ndarray
    ovary: jnp.ndarray

    def prefix(self) -> "PrefixPlan":
        return self


def _prefix_rate(grid: Grid):
    """Steps a year of the natural history, and whether the surgery needs its own edge (a
    switch falls on an edge anyway when every month edge is one: protocol.snap_months)."""
    spy_prefix = grid.prefix_steps_per_year or grid.steps_per_year
    return spy_prefix, spy_prefix % 12 != 0


def prefix_plan(patient, grid: Grid) -> PrefixPlan:
    """``prefix_steps_per_year`` equal steps from peak bone mass to entry, the surgery as an
    extra edge where the grid is coarser than a month (``step_grid``)."""
    spy_prefix, surgery_edge = _prefix_rate(grid)
    life_start = patient.age_entry - grid.prefix_years
    pre = step_grid(life_start, grid.prefix_years, spy_prefix,
                    [surgery_switch(patient)] if surgery_edge else [])
    return PrefixPlan(life_start, pre.days[:-1], jnp.diff(pre.days),
                      ovary_fraction(pre.ages[:-1], pre.ages[1:], patient))


def prefix_steps(grid: Grid) -> int:
    """The number of steps of ``prefix_plan`` (the surgery's edge included)."""
    spy_prefix, surgery_edge = _prefix_rate(grid)
    return grid.prefix_years * spy_prefix + int(surgery_edge)


def fixed_plan(patient, arms: tuple, grid: Grid) -> FixedPlan:
    """``steps_per_year`` equal steps after entry and ``prefix_plan``'s before, with the
    switches as extra edges where the grid is coarser than a month (``step_grid``);
    regimens padded to the arm with most (taking none)."""
    spy = grid.steps_per_year
    pre = prefix_plan(patient, grid)
    offset = jnp.asarray(grid.prefix_years * DAYS_PER_YEAR, pre.life_start.dtype)
    switches = _padded_switches(arms, patient) if spy % 12 else [[] for _ in arms]
    grids = [step_grid(patient.age_entry, grid.horizon_years, spy, sw) for sw in switches]
    grids = _stacked([g._replace(days=g.days + offset) for g in grids])
    most = max(len(arm.regimens) for arm in arms)
    a, b = grids.ages[:, :-1], grids.ages[:, 1:]
    taken = jnp.stack([regimens_taken(a[j], b[j], patient, arm, most)
                       for j, arm in enumerate(arms)])
    per_output = spy // grid.outputs_per_year
    return FixedPlan(pre.life_start, pre.t, pre.h, pre.ovary, grids.days[:, :-1],
                     jnp.diff(grids.days, axis=1),
                     ovary_fraction(a, b, patient), taken,
                     grids.uniform_at[:, per_output::per_output] - 1)


def arm_exposures(arms: tuple, agents):
    """``protocol.exposure_rows`` of each arm's regimens, padded like ``fixed_plan``'s taken
    shares: (arms, regimens, 6)."""
    most = max(len(arm.regimens) for arm in arms)
    return jnp.stack([exposure_rows(arm.regimens, agents, most) for arm in arms])


def simulate_plan(patient, model: ModelParams, steady, plan: FixedPlan, exposures,
                  solver: str, live=None) -> LifeCourse:
    """``life_course`` on the fixed steps of ``plan`` with the regimens' ``exposures`` (arms,
    regimens, 6; ``arm_exposures``) and the Rosenbrock method ``solver``; with ``plan`` a
    ``PrefixPlan``, the natural history alone (the LifeCourse of no arm: its read-out fields
    have an empty arms axis).

    ``live``: None, or (steps of the natural history, steps of each arm (arms,)) that run, the
    same for every patient (not batched): the rest of a plan padded to shapes shared with
    other trials is skipped (``rosenbrock.integrate_steps``), and the arms run one after the
    other so that a padded arm (0 steps) costs nothing (fit/trial_program.py)."""
    sites = patient_sites(patient, model.sites)
    pre_live, arm_live = (None, None) if live is None else live

    def solve(ode, y0):
        def run(t, h, inputs, y_start, out_steps=None, n=None):
            return integrate_steps(ode.rates, ode.drive, y_start, sites, t, h, inputs,
                                   METHODS[solver], out_steps, _readout, n)

        pre = plan.prefix()
        y_entry, _ = run(pre.t, pre.h, combined_inputs(pre.ovary), y0, None, pre_live)
        if isinstance(plan, PrefixPlan):
            return y_entry, jnp.zeros((0, 0) + y_entry.shape[:1] + (2,), y_entry.dtype)
        inputs = jax.vmap(combined_inputs)(plan.ovary, plan.taken, exposures)
        arms = (plan.t, plan.h, inputs, plan.out_steps)

        def arm_reads(t, h, u, out_steps, n=None):
            return run(t, h, u, y_entry, out_steps, n)[1]

        if arm_live is None:
            return y_entry, jax.vmap(arm_reads)(*arms)
        return y_entry, jax.lax.map(lambda a: arm_reads(*a), arms + (arm_live,))

    return life_course(patient, model, steady, plan.life_start, solve)


# First step of a controlled stretch, at peak bone mass and after each switch (days). At the
# default rtol 1e-4 the controller's first accepted step after a switch was 4.2-5.1 days in
# the default study; restarting from a month cost 4 rejected steps per switch, and from the
# step grown before the switch (a year or more) 5 (benchmarks/RESULTS.md, 2026-12-07).
SWITCH_STEP_DAYS = 4.0


def _stops(first_age, last_age, life_start, switches):
    """Stops of a controlled stretch from ``first_age`` to ``last_age``: the ``switches``
    inside it, sorted, as days from ``life_start``, and their ages."""
    sw = jnp.clip(jnp.stack(switches).astype(first_age.dtype), first_age, last_age)
    ages = jnp.sort(jnp.concatenate([first_age[None], sw, last_age[None]]))
    return (ages - life_start) * DAYS_PER_YEAR, ages


def _controlled_steps(patient, model, arms, grid: Grid, ode: SiteODE, y0):
    """Error-controlled steps (solve/adaptive.py, ``grid.rtol``) that land on every switch,
    with read-outs at the ends of each year (or month) after entry. Returns the state at entry
    and the read-outs (arms, read-outs, sites, 2).

    Segments: the natural history (untreated) to entry, then each arm from entry, one after
    the other in one loop (``integrate_segments``): under vmap over patients a patient moves
    on to her next segment as soon as she finishes one, and the loop runs for the largest
    total of steps in the batch (arms side by side would all wait for the slowest arm)."""
    sites = patient_sites(patient, model.sites)
    life_start = patient.age_entry - grid.prefix_years
    tableau = METHODS[grid.solver]
    h0 = jnp.asarray(SWITCH_STEP_DAYS, y0.dtype)
    limit = grid.max_steps_per_year * (grid.prefix_years + grid.horizon_years)
    days, inputs, out_days = _segments(patient, model, arms, grid, life_start)
    y_entry, reads, _ = integrate_segments(ode.rates, ode.drive, y0, sites, days, inputs, tableau,
                                           grid.rtol, h0, limit, _readout, out_days)
    return y_entry, reads[1:]


def _segments(patient, model, arms, grid: Grid, life_start):
    """Stops (segments, S) in days from ``life_start`` and exposures (segments, S - 1) of the
    natural history and of each arm, padded to one S; the read-out times (days), all after
    entry (none falls in the natural history)."""
    n_out = grid.horizon_years * grid.outputs_per_year
    ends = patient.age_entry + jnp.arange(1, n_out + 1, dtype=life_start.dtype) / \
        grid.outputs_per_year
    segments = (None,) + tuple(arms)
    spans = [(life_start, patient.age_entry)] + [(patient.age_entry, ends[-1])] * len(arms)
    days, ages = _stacked([_stops(a, b, life_start, sw) for (a, b), sw
                           in zip(spans, _padded_switches(segments, patient))])
    inputs = _stacked([step_inputs(ages[j][:-1], ages[j][1:], patient, seg, model.agents)
                       for j, seg in enumerate(segments)])
    return days, inputs, (ends - life_start) * DAYS_PER_YEAR


def _readout(y):
    """What a life course keeps of the sites' states (sites, state) at a read-out: BMD and
    active osteoclasts, (sites, 2)."""
    return jnp.stack([bmd(y), y[..., OCA]], axis=-1)
