"""Eligibility from the natural history alone: one compiled program screens every trial.

A trial enrols the patients whose untreated state at entry meets its [eligibility]
(screening.py). That state is the natural history's: no arm has started, so screening needs
neither the trial's arms nor its follow-up. ``entry_values`` simulates only the prefix from
peak bone mass to entry (``life_course.PrefixPlan``, the fixed steps of the trial's own
programs) with the patients and their steps as data, padded with zero-length steps (which
the integrator skips) to the longest prefix of the trials screened together; so it compiles
once for a whole targets file instead of one full chunk program per trial (the fit's
screening of the 21 public trials: benchmarks/RESULTS.md). Drawing the patients stays one
small program per trial: the population's constants are static there, so that the draws
are exactly those of a study run (population.sample_patient).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bonecohort.cohort import (ChunkResult, cast_tree, reference_steady_state, with_x64)
from bonecohort.population import sample_patient
from bonecohort.solve.life_course import PrefixPlan, prefix_plan, prefix_steps, simulate_plan


class EntryValues(NamedTuple):
    """What eligibility reads of a patient's life course (``screening.eligible_rows``)."""

    bmd_entry: jnp.ndarray  # (sites,) BMD at entry relative to peak bone mass
    t_entry: jnp.ndarray  # () ng/dL, untreated serum testosterone at entry


@functools.partial(jax.jit, static_argnames=("solver",))
def entry_values(patients, pre: PrefixPlan, model, steady, solver: str) -> EntryValues:
    """``EntryValues`` of a batch of patients after their natural history's steps ``pre``
    (constants in the batch's dtype)."""
    life = jax.vmap(lambda p, plan: simulate_plan(p, model, steady, plan, None, solver))(
        patients, pre)
    return EntryValues(life.bmd_entry, life.t_entry)


def padded_prefix(pre: PrefixPlan, steps: int) -> PrefixPlan:
    """One patient's ``pre`` extended to ``steps`` steps by zero-length steps at the end."""
    def pad(v):
        return jnp.pad(v, (0, steps - v.shape[0]))

    return PrefixPlan(pre.life_start, pad(pre.t), pad(pre.h), pad(pre.ovary))


@functools.lru_cache(maxsize=64)
def _patients_program(spec, grid, dtype_name: str, steps: int):
    """Jitted ``(ids, seed) -> (patients, padded prefix plans)`` of one population; cached,
    so that the folds of a cross-validation and repeated screenings compile it once."""
    def one(pid, seed):
        patient = sample_patient(seed, pid, spec, jnp.dtype(dtype_name))
        return patient, padded_prefix(prefix_plan(patient, grid), steps)

    return jax.jit(jax.vmap(one, (0, None)))


def entry_runner(study, model, dtype, steps: int):
    """``ids -> ChunkResult`` of the patients of ``study`` and their ``EntryValues`` (the
    ``run_chunk`` of ``screening.screen``); ``steps``: the padded prefix length, at least
    ``prefix_steps(study.grid)``. Traced with 64-bit types enabled, as the chunk programs."""
    grid = study.grid._replace(rtol=0.0)
    if steps < prefix_steps(grid):
        raise ValueError(f"padded prefix of {steps} steps is shorter than the study's "
                         f"{prefix_steps(grid)}")
    seed = jnp.asarray(study.seed, jnp.uint32)
    prepare = _patients_program(study.population, grid, jnp.dtype(dtype).name, steps)
    model_d = with_x64(cast_tree)(model, dtype)
    steady = reference_steady_state(model, dtype)

    def run(ids):
        patients, pre = prepare(ids, seed)
        return ChunkResult(patients, entry_values(patients, pre, model_d, steady, grid.solver),
                           None)

    return with_x64(run)
