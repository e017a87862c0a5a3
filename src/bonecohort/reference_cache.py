"""The fracture-hazard reference population of a model, computed once and kept (shell).

``outcome_setup`` gathers what the outcome read-out needs for a study's [outcomes] options:
the epidemiology tables and the norms of the untreated reference cohort
(outcomes/reference.py). Simulating that cohort takes seconds to a minute, so its norms are
kept in memory (a few models at most) and on disk under ``cache_dir()``, in a file named by
a hash of the model, the tables, the T-score reference, jax's version and the package's
source code (any change computes it afresh). ``BONECOHORT_CACHE=off`` disables the disk.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.cohort import (
    cast_tree,
    chunk_ids,
    fingerprint,
    make_chunk_runner,
    with_x64,
)
from bonecohort.config import ConfigError, OutcomeOptions
from bonecohort.config.economics import EconomicsOptions
from bonecohort.data.epidemiology import EpidemiologyError, EpiTables, load_tables
from bonecohort.exposure.protocol import Arm
from bonecohort.io import atomic_write
from bonecohort.model.params import BmdReference, ModelParams
from bonecohort.outcome_inputs import economics_setup, harm_setup, tables_for
from bonecohort.outcomes.hazards import Norm
from bonecohort.outcomes.readout import OutcomeSetup, frax_style_probability
from bonecohort.outcomes.reference import REFERENCE, build_norm, cohort_years

MEMORY_SLOTS = 4
_MEMORY: OrderedDict = OrderedDict()


def simulate_reference(model: ModelParams, epi: EpiTables, tscore_ref) -> Norm:
    """Simulate the reference cohort under ``model`` and compute its norms."""
    runner = make_chunk_runner(REFERENCE.seed, REFERENCE.spec, model, (Arm("none"),),
                               REFERENCE.grid, jnp.float32)
    n = 2 * REFERENCE.per_sex
    chunk = runner(chunk_ids(0, n, n))
    tscore, oc = cohort_years(chunk.patients, chunk.life, BmdReference(*tscore_ref))
    return build_norm(np.asarray(chunk.patients.male), tscore, oc, epi.incidence,
                      model.fracture)


def cache_dir() -> Path | None:
    """``$BONECOHORT_CACHE`` (``off``: no cache), else ``$XDG_CACHE_HOME/bonecohort`` or
    ``~/.cache/bonecohort``."""
    where = os.environ.get("BONECOHORT_CACHE")
    if where == "off":
        return None
    if not where:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        where = Path(base) / "bonecohort"
    return Path(where)


def _disk_path(key) -> Path | None:
    where = cache_dir()
    if where is None:
        return None
    h = hashlib.sha256(repr((key, jax.__version__)).encode())
    for src in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(src.read_bytes())
    return where / f"reference-{h.hexdigest()[:32]}.npz"


def _read(path: Path | None) -> Norm | None:
    if path is None or not path.exists():
        return None
    try:
        with np.load(path) as f:
            return Norm(*(f[name] for name in Norm._fields))
    except (OSError, ValueError, KeyError):
        return None  # unreadable: compute it again


def _write(path: Path | None, norm: Norm):
    if path is None:
        return
    try:
        atomic_write(path, lambda fh: np.savez(fh, **norm._asdict()))
    except OSError:
        pass  # a read-only or full cache only costs the recomputation


def reference_norm(model: ModelParams, epi: EpiTables, tscore_ref) -> Norm:
    """The reference population's norms under ``model`` (its fracture constants included),
    from memory, from disk, or simulated."""
    key = (fingerprint(model), fingerprint(epi), tuple(tscore_ref))
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    path = _disk_path(key)
    norm = _read(path)
    if norm is None:
        norm = simulate_reference(model, epi, tscore_ref)
        _write(path, norm)
    _MEMORY[key] = norm
    while len(_MEMORY) > MEMORY_SLOTS:
        _MEMORY.popitem(last=False)
    return norm


def outcome_setup(opts: OutcomeOptions, model: ModelParams, where: str = "",
                  economics: EconomicsOptions | None = None, horizon: float = 0.0
                  ) -> OutcomeSetup:
    """Tables, the fracture-hazard reference population and constants for a study's
    [outcomes] options (``where``: the config file, for error messages); with ``opts.harms``
    the harm inputs, and with ``economics`` (the study's [economics]; ``horizon``: its
    horizon in years) the utility and cost inputs (outcome_inputs.py)."""
    try:
        epi = load_tables(opts.tables) if opts.tables else load_tables()
    except EpidemiologyError as exc:
        raise ConfigError(f"{where}: [outcomes] tables: {exc}") from None
    frax = opts.tscore_reference.female
    norm = reference_norm(model, epi, frax)
    harms = econ = None
    if opts.harms or economics is not None:
        tables = tables_for(economics.tables if economics else "", where)
        harms = harm_setup(tables) if opts.harms else None
        econ = None if economics is None else economics_setup(tables, economics, horizon)
    return OutcomeSetup(incidence=epi.incidence, qx=epi.qx, norm=norm, fracture=model.fracture,
                        tscore_mean=frax.mean, tscore_sd=frax.sd, by_age=opts.by_age,
                        probability_ages=opts.probability_ages, harms=harms, economics=econ)


@with_x64
def ten_year_probability(model: ModelParams, age: float, male: bool, tscore: float,
                         opts: OutcomeOptions = OutcomeOptions()):
    """FRAX-style 10-year probabilities (hip, MOF) of a patient of ``age`` whose femoral-neck
    ``tscore`` is by her or his own sex's reference (``opts.tscore_reference``), without
    other clinical risk factors, at average turnover (outcomes/readout.py)."""
    setup = cast_tree(outcome_setup(opts, model)._replace(probability_ages=()), jnp.float64)
    own = opts.tscore_reference.of(male)
    frax_units = opts.tscore_reference.female.tscore(own.mean + tscore * own.sd)
    return frax_style_probability(age, int(male), frax_units, setup)
