"""One compiled program for the BMD targets of many virtual trials.

Once a trial is screened (trials.py), what distinguishes it from another trial is data that
the fitted constants do not move: its patients, their fixed steps, the share of each regimen
taken in every step (``life_course.FixedPlan``) and the month indices its targets read.
Only the regimens' exposures depend on the constants (the fitted agent constants), and they
are computed inside the program from a table of every regimen of the targets file
(``protocol.exposure_rows``), each arm's regimen slots pointing into it. So one function
``bmd_values(model, data)`` serves every trial without fracture targets: all trials are
padded to the same shapes (steps, arms, read-outs, regimens and targets that nothing reads;
patients with weight 0) and call one compiled program. The padded steps and arms cost
nothing: each trial carries how many steps of its natural history and of each arm are live,
and the integrator skips the rest by a conditional (``life_course.simulate_plan``'s
``live``), so a 2-year trial padded to a 25-year one runs its own 2 years. The statistics
are those of ``trials.bmd_statistic`` (the same function ``validate`` uses).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.exposure.protocol import exposure_rows
from bonecohort.fit.trials import MONTHS, BmdRead, bmd_read, bmd_statistic, with_month_zero
from bonecohort.population import Patient
from bonecohort.solve.life_course import FixedPlan, fixed_plan, simulate_plan


class TrialData(NamedTuple):
    """Everything ``bmd_values`` needs of one trial (arrays; leading axis P: patients)."""

    patients: Patient  # (P,)
    plans: FixedPlan  # (P, ...)
    slots: np.ndarray  # (arms, regimens) int: row of the regimen table (last row: none)
    weight: np.ndarray  # (P,) 1 for the trial's patients, 0 for padding
    reads: BmdRead  # (T,) per target; start, end (T, P)
    pre_live: np.ndarray  # () int: steps of the natural history that run (the rest: padding)
    arm_live: np.ndarray  # (arms,) int: steps of each arm that run (0: a padded arm)


def regimen_table(trials) -> tuple:
    """Every distinct regimen of the arms of ``trials`` (``Trial`` objects), in file order."""
    seen = []
    for trial in trials:
        for arm in trial.study.arms:
            seen += [r for r in arm.regimens if r not in seen]
    return tuple(seen)


def trial_data(trial, targets, res, table: tuple, dtype) -> TrialData:
    """The data of ``trial``'s screened patients ``res`` (``trials.TrialResult``) and its
    BMD ``targets`` (floats in ``dtype``); ``table``: ``regimen_table`` of the targets file."""
    study = trial.study
    grid = study.grid._replace(outputs_per_year=MONTHS, rtol=0.0)
    plans = jax.jit(jax.vmap(lambda p: fixed_plan(p, study.arms, grid)))(res.patients)
    most = max(len(arm.regimens) for arm in study.arms)
    slots = np.array([[table.index(r) for r in arm.regimens]
                      + [len(table)] * (most - len(arm.regimens)) for arm in study.arms],
                     dtype=np.int32).reshape(len(study.arms), most)
    arms = [a.name for a in study.arms]
    reads = [bmd_read(t, arms, res) for t in targets]
    plans = jax.device_get(plans)
    data = TrialData(res.patients, plans, slots, np.ones(len(res.ids)),
                     jax.tree.map(lambda *v: np.stack(v), *reads),
                     np.asarray(plans.pre_t.shape[-1]),
                     np.full(len(study.arms), plans.t.shape[-1]))
    return jax.tree.map(lambda v: np.asarray(v, dtype) if np.issubdtype(
        np.asarray(v).dtype, np.floating) else np.asarray(v), data)


def _pad(x, shape, value):
    """``x`` padded at the end of each axis to ``shape`` with ``value``."""
    x = np.asarray(x)
    return np.pad(x, [(0, n - s) for n, s in zip(shape, x.shape)], constant_values=value)


def _pad_patients(tree, n):
    """Patient-axis padding with copies of the first patient (finite values, weight 0)."""
    return jax.tree.map(lambda v: np.concatenate(
        [np.asarray(v), np.repeat(np.asarray(v)[:1], n - len(v), axis=0)]), tree)


def padded(data: TrialData, like: list, table_size: int) -> TrialData:
    """``data`` padded to the largest shapes among ``like`` (``TrialData`` of every trial that
    shares the program)."""
    n = max(len(d.weight) for d in like)
    arms = max(d.slots.shape[0] for d in like)
    regimens = max(d.slots.shape[1] for d in like)
    n_targets = max(len(d.reads.arm) for d in like)
    plan = _pad_patients(data.plans, n)

    def most(field):
        return max(getattr(d.plans, field).shape[-1] for d in like)

    pre, steps, outs = most("pre_t"), most("t"), most("out_steps")
    plan = FixedPlan(
        plan.life_start, _pad(plan.pre_t, (n, pre), 0.0), _pad(plan.pre_h, (n, pre), 0.0),
        _pad(plan.pre_ovary, (n, pre), 0.0), _pad(plan.t, (n, arms, steps), 0.0),
        _pad(plan.h, (n, arms, steps), 0.0), _pad(plan.ovary, (n, arms, steps), 0.0),
        _pad(plan.taken, (n, arms, steps, regimens), 0.0),
        _pad(plan.out_steps, (n, arms, outs), -1))
    r = data.reads
    reads = BmdRead(*(_pad(v, (n_targets,), 0) for v in r[:4]),
                    _pad(r.per, (n_targets,), 1.0), _pad(r.start, (n_targets, n), 0),
                    _pad(r.end, (n_targets, n), 0))
    return TrialData(_pad_patients(data.patients, n), plan,
                     _pad(data.slots, (arms, regimens), table_size), _pad(data.weight, (n,), 0.0),
                     reads, data.pre_live, _pad(data.arm_live, (arms,), 0))


def bmd_values(model, steady, table: tuple, solver: str, data: TrialData):
    """Simulated statistics (T,) of the BMD targets of ``data`` under ``model`` (constants
    in the data's dtype); padded targets read 0."""
    exposures = exposure_rows(table, model.agents, len(table) + 1)[data.slots]  # last: none
    live = (data.pre_live, data.arm_live)  # not batched: the same for every patient
    lives = jax.vmap(lambda p, plan: simulate_plan(p, model, steady, plan, exposures, solver,
                                                   live))(data.patients, data.plans)
    bv = with_month_zero(lives.bmd_rel, jnp)
    return jax.vmap(lambda read: bmd_statistic(bv, read, data.weight, jnp))(data.reads)
