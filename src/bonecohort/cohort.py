"""Batches of patients: sample, simulate and read out one chunk (jitted; no I/O).

``make_chunk_runner(...)(ids)`` is the only compiled entry point used by the shell: it vmaps
``sample_patient``, ``simulate_patient`` and ``patient_outcomes`` over a padded vector of
patient ids and returns per-patient arrays. Padding ids are simulated and discarded by the
caller, so every chunk has the same shape and compiles once.
"""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from .model.cells import steady_state
from .outcomes import OutcomeSetup, patient_outcomes
from .population import PopulationSpec, sample_patient
from .simulate import Grid, ModelParams, simulate_patient


def cast_tree(tree, dtype):
    """Cast every float leaf of a pytree of constants to ``dtype`` arrays."""
    return jax.tree.map(lambda v: jnp.asarray(v, dtype), tree)


def reference_steady_state(model: ModelParams, dtype):
    """Pivonka steady state computed in float64, then cast to the simulation dtype."""
    return jnp.asarray(jnp.stack(steady_state(cast_tree(model.core, jnp.float64))), dtype)


def fingerprint(tree) -> str:
    """Content hash of a pytree of constants (for caching compiled functions)."""
    leaves, treedef = jax.tree.flatten(tree)
    h = hashlib.sha256(str(treedef).encode())
    for leaf in leaves:
        a = np.asarray(leaf)
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


_COMPILED: dict = {}


def make_chunk_runner(seed: int, spec: PopulationSpec, model: ModelParams, arms: tuple,
                      grid: Grid, dtype, outcomes: OutcomeSetup | None = None):
    """Return ``ids -> (patients, outputs)`` for this study's seed, arms and grid; with
    ``outcomes``, outputs also hold fractures and deaths (outcomes.py).

    The jitted function takes the seed as an argument and is cached on the study's static
    structure and constants, so runs that differ only in seed (or repeat) compile once per
    process and chunk shape.
    """
    key = (spec, arms, grid, jnp.dtype(dtype).name, fingerprint(model),
           None if outcomes is None else (fingerprint(outcomes._replace(probability_ages=())),
                                          outcomes.probability_ages))
    if key not in _COMPILED:
        _COMPILED[key] = _compile(spec, model, arms, grid, dtype, outcomes)
    run = _COMPILED[key]
    seed_arr = jnp.asarray(seed, jnp.uint32)
    return lambda ids: run(seed_arr, ids)


def _compile(spec, model, arms, grid, dtype, outcomes):
    model_d = cast_tree(model, dtype)
    steady = reference_steady_state(model, dtype)
    setup = None
    if outcomes is not None:
        ages = outcomes.probability_ages
        setup = cast_tree(outcomes._replace(probability_ages=()), dtype)._replace(
            probability_ages=ages, incidence=jnp.asarray(outcomes.incidence, dtype))

    @jax.jit
    def run(seed, ids):
        def one(pid):
            patient = sample_patient(seed, pid, spec, dtype)
            out = simulate_patient(patient, model_d, steady, arms, grid)
            if setup is not None:
                key = jax.random.fold_in(jax.random.key(seed), pid)
                out = {**out, **patient_outcomes(patient, out, setup, key)}
            return patient, out

        return jax.vmap(one)(ids)

    return run


def chunk_ids(start: int, stop: int, chunk_size: int):
    """Patient ids ``start..stop-1`` padded (by repeating the last id) to ``chunk_size``."""
    ids = jnp.arange(start, stop, dtype=jnp.uint32)
    pad = chunk_size - ids.shape[0]
    return jnp.concatenate([ids, jnp.full((pad,), stop - 1, jnp.uint32)]) if pad else ids

