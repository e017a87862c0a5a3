"""The untreated reference population that normalizes fracture hazards (host side).

FRAX-style hazards multiply the population incidence by a relative risk that averages to one
over the population of that age and sex (outcomes.py). We obtain that population from the
model itself: a fixed virtual cohort of women and men followed untreated from peak bone mass
through ages 50-110 (seed 0, 2,000 per sex, float32). From it, per sex and integer age:

* Tbar: mean femoral-neck T-score at mid-year;
* c_s: mean of GR_s^(-z) (OC/OC*)^gamma (1 + (RR_prior - 1) P_prior), where P_prior, the
  probability of an earlier fracture, is carried forward year by year from age 50 with the
  normalized hazards themselves;
* the mean turnover factor (for FRAX-style probabilities of a patient at average turnover);
* the share with a prior fracture (fractures before a study's entry are not simulated; a
  patient enters with one with this probability).

The cohort depends only on the model, the fracture constants and the tables, so results are
deterministic; it is computed once, cached in the process and on disk (``_disk_path``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .config import ConfigError, OutcomeOptions
from .epidemiology import MAX_AGE, EpidemiologyError, EpiTables, load_tables
from .outcomes import Norm, OutcomeSetup, relative_hazards
from .population import PopulationSpec
from .protocol import Arm
from .simulate import Grid, ModelParams

REFERENCE_SEED = 0
REFERENCE_PER_SEX = 2000
START_AGE = 50
YEARS = 60

_CACHE: dict = {}


def _simulate_reference(model: ModelParams, tscore_ref):
    from .cohort import chunk_ids, make_chunk_runner

    spec = PopulationSpec(age_min=float(START_AGE), age_max=float(START_AGE), male_fraction=0.5)
    grid = Grid(prefix_years=START_AGE - 30, horizon_years=YEARS)
    runner = make_chunk_runner(REFERENCE_SEED, spec, model, (Arm("none"),), grid, jnp.float32)
    n = 2 * REFERENCE_PER_SEX
    patients, out = runner(chunk_ids(0, n, n))
    fn = 0
    bmd_entry = np.asarray(patients.peak_fn_bmd) * np.asarray(out["bv_entry"])[:, fn]
    bmd = bmd_entry[:, None] * np.asarray(out["bv_rel"])[:, 0, fn, :]  # (n, YEARS)
    t_end = (bmd - tscore_ref[0]) / tscore_ref[1]
    t_start = np.concatenate([((bmd_entry - tscore_ref[0]) / tscore_ref[1])[:, None],
                              t_end[:, :-1]], axis=1)
    oc_end = np.asarray(out["oc"])[:, 0]  # (n, sites, YEARS)
    oc_start = np.concatenate([np.asarray(out["oc_entry"])[:, :, None], oc_end[:, :, :-1]],
                              axis=2)
    return (np.asarray(patients.male), 0.5 * (t_start + t_end),
            np.moveaxis(0.5 * (oc_start + oc_end), 1, 2))  # tscore (n, Y), oc (n, Y, 2)


def build_norm(model: ModelParams, epi: EpiTables, tscore_ref=(0.858, 0.120)) -> Norm:
    """The reference population's norms under ``model`` (its fracture constants included)."""
    from .cohort import fingerprint

    fp = model.fracture
    key = (fingerprint(model), fingerprint(epi), tuple(tscore_ref))
    if key in _CACHE:
        return _CACHE[key]
    stored = _disk_path(key)
    if stored is not None and stored.exists():
        try:
            with np.load(stored) as f:
                _CACHE[key] = Norm(*(f[name] for name in Norm._fields))
            return _CACHE[key]
        except (OSError, ValueError, KeyError):
            pass  # unreadable: compute it again
    male, tscore, oc = _simulate_reference(model, tscore_ref)
    rel_fn = jax.jit(jax.vmap(relative_hazards, in_axes=(None, 0, 0, None)))
    tbar = np.zeros((2, MAX_AGE))
    c = np.ones((4, 2, MAX_AGE))
    turnover_mean = np.ones((4, 2, MAX_AGE))
    prevalence = np.zeros((2, MAX_AGE))
    for sex in (0, 1):
        rows = male == sex
        t, o = tscore[rows], oc[rows]
        prior = np.zeros(t.shape[0])
        for k in range(YEARS):
            age = START_AGE + k
            tbar[sex, age] = t[:, k].mean()
            prevalence[sex, age] = prior.mean()
            z = t[:, k] - tbar[sex, age]
            rel = np.asarray(rel_fn(age + 0.5, z, o[:, k], fp), np.float64)  # (n, 4)
            weight = 1.0 + (fp.prior_rr - 1.0) * prior
            c[:, sex, age] = (rel * weight[:, None]).mean(axis=0)
            oc_site = o[:, k][:, [0, 1, 0, 0]]
            turnover_mean[:, sex, age] = (oc_site ** fp.gamma).mean(axis=0)
            h = epi.incidence[:, sex, age] * rel / c[:, sex, age]
            prior = prior + (1.0 - prior) * (1.0 - np.exp(-h.sum(axis=1)))
        last = START_AGE + YEARS - 1
        tbar[sex, :START_AGE] = tbar[sex, START_AGE]
        tbar[sex, last + 1:] = tbar[sex, last]
        c[:, sex, last + 1:] = c[:, sex, last:last + 1]
        turnover_mean[:, sex, last + 1:] = turnover_mean[:, sex, last:last + 1]
        prevalence[sex, last + 1:] = prevalence[sex, last]
    norm = Norm(tbar=tbar, c=c, turnover_mean=turnover_mean, prior_prevalence=prevalence)
    _CACHE[key] = norm
    if stored is not None:
        try:
            stored.parent.mkdir(parents=True, exist_ok=True)
            tmp = stored.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **norm._asdict())
            os.replace(tmp, stored)
        except OSError:
            pass  # a read-only cache only costs the recomputation
    return norm


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
    """Where earlier processes left this reference population (``cache_dir``). The name
    hashes the model, tables and constants, jax's version and the package's source code, so
    any change of them computes it afresh."""
    where = cache_dir()
    if where is None:
        return None
    h = hashlib.sha256(repr((key, jax.__version__)).encode())
    for src in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(src.read_bytes())
    return where / f"reference-{h.hexdigest()[:32]}.npz"


def outcome_setup(opts: OutcomeOptions, model: ModelParams, where: str = "") -> OutcomeSetup:
    """Tables, the fracture-hazard reference population and constants for a study's
    [outcomes] options (``where``: the config file, for error messages)."""
    try:
        epi = load_tables(opts.tables) if opts.tables else load_tables()
    except EpidemiologyError as exc:
        raise ConfigError(f"{where}: [outcomes] tables: {exc}") from None
    norm = build_norm(model, epi, (opts.tscore_mean, opts.tscore_sd))
    return OutcomeSetup(incidence=epi.incidence, qx=epi.qx, norm=norm, fracture=model.fracture,
                        tscore_mean=opts.tscore_mean, tscore_sd=opts.tscore_sd,
                        by_age=opts.by_age, probability_ages=opts.probability_ages)
