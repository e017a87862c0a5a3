"""Batches of patients: sample, simulate and read out one chunk (jitted; no I/O).

``make_chunk_runner(...)(ids)`` is the only compiled entry point used by the shell: it vmaps
``sample_patient``, ``simulate_patient`` and ``patient_outcomes`` over a padded vector of
patient ids and returns per-patient arrays. Padding ids are simulated and discarded; on a CPU
every block has the same shape and compiles once (see Blocks below).

Devices: the patient axis of a chunk is split into equal shards, one per device, and the
result is one array sharded over a ``jax.sharding.Mesh`` of those devices. Each shard runs
the same single-device executable (dispatched asynchronously, so devices work concurrently)
rather than one SPMD-partitioned program: measured on 4 host devices, the partitioned program
(``jit`` of sharded inputs, or ``shard_map``) changed the last float32 bit of ~10 % of the
outputs, while per-device executables give results bitwise identical to one device.

Blocks: every compiled call computes exactly ``block_size(device, ...)`` patients; a device's share
of a chunk is padded to whole blocks and run block by block, so on a CPU one executable serves
every chunk size. XLA compiles a program per batch shape, and the shape changes how it emits a
fused loop or a reduction (its split over cores, its vector code, the order of a reduction's
additions), so the same patient could get other bits in another batch; one bit in a step's
error norm can turn a step from accepted to rejected. Measured on the default study with one
program per chunk: batches of 128 or 200 differed from 1,024 in 9,171 of 12,000 read-outs (up
to 5.4e-5 relative), and the row sums of a (B, 7) array differed between B = 512 and 1,024.
With blocks, chunks of 128, 200, 700, 1,000 and 3,000 gave the same bits for every output,
whatever a patient's place in the block. The block is large enough that its per-iteration
overhead is small: for a 10,000-patient chunk on two cores, blocks of 1,024 ran 1.2-1.6x
slower than one program over the whole chunk, 3,008 1.1-1.3x, 5,056 as fast (RESULTS.md).
Blocks are run one per device at a time: queued blocks would compete for the same cores
(2.3 s against 1.6 s per chunk). A GPU needs far more patients in flight than a CPU block,
and a fixed block large enough for it would multiply the work of small chunks, so there a
device's share of the chunk is cut into the fewest blocks of at most 2**20 patients (each a
multiple of 64): results then follow the chunk size there as before (not measured on a GPU).
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bonecohort.model.cells import steady_state
from bonecohort.model.params import ModelParams
from bonecohort.outcomes.readout import OutcomeSetup, PatientOutcomes, patient_outcomes
from bonecohort.population import Patient, PopulationSpec, sample_patient
from bonecohort.solve.life_course import Grid, LifeCourse, simulate_patient


class ChunkResult(NamedTuple):
    """One patient's (or, with a leading axis, a chunk's) draws, life course and outcomes."""

    patients: Patient
    life: LifeCourse
    outcomes: PatientOutcomes | None  # None when run without an OutcomeSetup


def with_x64(fn):
    """Run ``fn`` with JAX's 64-bit types enabled, restoring the previous setting after it.

    A study's arrays carry its own dtype (float32 by default), but its Pivonka steady state,
    float64 studies and the fits' coordinates need 64-bit types; the process-wide default is
    left to the caller."""
    enable = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with enable(True):
            return fn(*args, **kwargs)

    return wrapper


def cast_tree(tree, dtype):
    """Cast every float leaf of a pytree of constants to ``dtype`` arrays."""
    return jax.tree.map(lambda v: jnp.asarray(v, dtype), tree)


_steady_state = jax.jit(steady_state)  # one compilation per process, not one per call


@with_x64
def reference_steady_state(model: ModelParams, dtype):
    """Pivonka steady state computed in float64, then cast to the simulation dtype."""
    return jnp.asarray(jnp.stack(_steady_state(cast_tree(model.core, jnp.float64))), dtype)


def cast_setup(setup: OutcomeSetup, dtype) -> OutcomeSetup:
    """``cast_tree`` of an outcome setup, keeping its static ``probability_ages``."""
    return cast_tree(setup._replace(probability_ages=()), dtype)._replace(
        probability_ages=setup.probability_ages)


def fingerprint(tree) -> str:
    """Content hash of a pytree of constants (for caching compiled functions)."""
    leaves, treedef = jax.tree.flatten(tree)
    h = hashlib.sha256(str(treedef).encode())
    for leaf in leaves:
        a = np.asarray(leaf)
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


COMPILED_SLOTS = 8  # compiled chunk programs kept per process (least recently used dropped)
_COMPILED: OrderedDict = OrderedDict()
CPU_BLOCK = 5056  # patients per compiled call on a CPU device (see the module docstring)
ACCELERATOR_BLOCK = 1 << 20  # at most this many per compiled call on a GPU or other accelerator
LANES = 64  # an accelerator's blocks are multiples of this


def block_size(device, per_device: int) -> int:
    """Patients computed by one compiled call on ``device`` when it takes ``per_device``
    patients of a chunk (see the module docstring)."""
    if device.platform == "cpu":
        return CPU_BLOCK
    blocks = -(-per_device // ACCELERATOR_BLOCK)
    return -(-per_device // (blocks * LANES)) * LANES


@with_x64
def make_chunk_runner(seed: int, spec: PopulationSpec, model: ModelParams, arms: tuple,
                      grid: Grid, dtype, outcomes: OutcomeSetup | None = None,
                      devices=None):
    """Return ``ids -> ChunkResult`` for this study's seed, arms and grid; with ``outcomes``,
    the result holds fractures and deaths (outcomes/readout.py). ``devices``: the
    devices that share each chunk (default: the first local device).

    The jitted function takes the seed, the model's constants, its steady state and the
    outcome setup as arguments and is cached on the study's static structure (population,
    arms, grid, dtype, the pytree structure of the constants), so runs that differ only in
    seed or constants (the draws of ``run --parameter-draws``) compile once per process and
    block shape. It is traced and called with 64-bit types enabled (``with_x64``) whatever
    the process's setting, so a chunk's results do not depend on the caller.
    """
    model_d = cast_tree(model, dtype)
    steady = reference_steady_state(model, dtype)
    setup = None if outcomes is None else cast_setup(outcomes, dtype)
    ages = None if outcomes is None else outcomes.probability_ages
    key = (spec, arms, grid, jnp.dtype(dtype).name, ages,
           str(jax.tree.structure((model_d, setup and setup._replace(probability_ages=())))))
    if key not in _COMPILED:
        _COMPILED[key] = _compile(spec, arms, grid, ages)
        while len(_COMPILED) > COMPILED_SLOTS:
            _COMPILED.popitem(last=False)
    _COMPILED.move_to_end(key)
    run = _COMPILED[key]
    devices = list(devices) if devices else jax.local_devices()[:1]
    args = [jax.device_put((jnp.asarray(seed, jnp.uint32), model_d, steady,
                            setup and setup._replace(probability_ages=())), d) for d in devices]
    mesh = Mesh(np.array(devices), ("patients",))

    def call(ids):
        n = ids.shape[0]
        per = -(-n // len(devices))
        block = block_size(devices[0], per)
        per = -(-per // block) * block
        padded = jnp.concatenate([ids, jnp.full((per * len(devices) - n,), ids[-1], ids.dtype)])
        m = per // block
        blocks = [[] for _ in devices]
        for j in range(m):  # one block per device at a time: queued blocks would share the cores
            for k, d in enumerate(devices):
                start = k * per + j * block
                blocks[k].append(run(jax.device_put(padded[start:start + block], d), *args[k]))
            jax.block_until_ready([b[-1] for b in blocks])
        shards = [b[0] if m == 1 else _concatenate(tuple(b)) for b in blocks]
        del blocks  # the joined shards hold the results
        if len(devices) == 1:
            return jax.tree.map(lambda v: v[:n], shards[0])
        sharding = NamedSharding(mesh, PartitionSpec("patients"))
        whole = jax.tree.map(lambda *v: jax.make_array_from_single_device_arrays(
            (per * len(devices),) + v[0].shape[1:], sharding, list(v)), *shards)
        return jax.tree.map(lambda v: v[:n], whole)

    return with_x64(call)


@jax.jit
def _concatenate(blocks: tuple):
    """One device's blocks of results, joined along the patient axis in one program (eager
    concatenation compiles one small program per array shape: seconds on the first chunk)."""
    return jax.tree.map(lambda *v: jnp.concatenate(v), *blocks)


def _compile(spec, arms, grid, ages):
    @jax.jit
    def run(ids, seed, model_d, steady, setup):
        if setup is not None:
            setup = setup._replace(probability_ages=ages)
        return jax.vmap(lambda pid: run_patient(seed, pid, spec, model_d, steady, arms, grid,
                                                setup))(ids)

    return run


def run_patient(seed, pid, spec: PopulationSpec, model: ModelParams, steady, arms: tuple,
                grid: Grid, setup: OutcomeSetup | None):
    """Sample patient ``pid`` and simulate her or him (constants already in the run's dtype);
    with ``setup``, add the outcomes, computed on year-end read-outs."""
    patient = sample_patient(seed, pid, spec, steady.dtype)
    life = simulate_patient(patient, model, steady, arms, grid)
    outcomes = None
    if setup is not None:
        key = jax.random.fold_in(jax.random.key(seed), pid)
        outcomes = patient_outcomes(patient, life.year_ends(grid.outputs_per_year), setup, key,
                                    arms)
    return ChunkResult(patient, life, outcomes)


def chunk_ids(start: int, stop: int, chunk_size: int):
    """Patient ids ``start..stop-1`` padded (by repeating the last id) to ``chunk_size``."""
    ids = jnp.arange(start, stop, dtype=jnp.uint32)
    pad = chunk_size - ids.shape[0]
    return jnp.concatenate([ids, jnp.full((pad,), stop - 1, jnp.uint32)]) if pad else ids

