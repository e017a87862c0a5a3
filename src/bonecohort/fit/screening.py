"""Eligibility screening, shared by study runs and virtual trials (host side).

A study or trial takes patients in id order and keeps those whose simulated history meets its
[eligibility] at entry, until it has the patients it asked for; so which patients enter does not
depend on chunking or devices. ``screen`` runs that loop over compiled chunks and yields each
chunk with its eligible rows; the caller decides what to keep (a run writes parquet parts, a
trial stacks arrays).
"""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

import jax
import numpy as np

from bonecohort.cohort import ChunkResult, chunk_ids
from bonecohort.config import ConfigError
from bonecohort.model.params import Site

MAX_SCREENED_PER_PATIENT = 50  # give up if fewer than 1 in 50 simulated patients is eligible


class EligibilityError(ConfigError):
    """Eligibility keeps too few simulated patients to fill the study."""


def entry_bmd_and_tscore(patients, life, tscore_reference):
    """Femoral-neck BMD (g/cm2) and T-score at entry by each patient's own sex reference
    (``config.TScoreReference``), on the host so that they do not depend on how XLA vectorized
    the chunk. Arrays of the chunk's patients."""
    bmd = np.asarray(patients.peak_fn_bmd) * np.asarray(life.bmd_entry)[:, Site.FEMORAL_NECK]
    return bmd, tscore_by_sex(bmd, np.asarray(patients.male) == 1.0, tscore_reference)


def tscore_by_sex(bmd, male, tscore_reference):
    """T-scores of femoral-neck ``bmd`` with the men's reference where ``male``."""
    return np.where(male, tscore_reference.male.tscore(bmd), tscore_reference.female.tscore(bmd))


def eligible_rows(result: ChunkResult, n_valid: int, eligibility,
                  tscore_reference) -> np.ndarray:
    """Indices (among the first ``n_valid``) of patients meeting ``eligibility`` at entry."""
    p = jax.tree.map(lambda v: np.asarray(v)[:n_valid], result.patients)
    life = jax.tree.map(lambda v: np.asarray(v)[:n_valid], result.life)
    _, t_entry = entry_bmd_and_tscore(p, life, tscore_reference)
    male = p.male == 1.0
    since = p.age_entry - np.minimum(p.fmp_age, p.surgery_age)
    ok = np.ones(n_valid, bool)
    lo, hi = eligibility.years_since_menopause
    if np.isfinite(lo) or np.isfinite(hi):
        ok &= ~male & (since >= lo) & (since <= hi)
    lo, hi = eligibility.tscore
    ok &= (t_entry >= lo) & (t_entry <= hi)
    lo, hi = eligibility.testosterone
    ok &= (life.t_entry >= lo) & (life.t_entry <= hi)
    if eligibility.uterus != "any":
        ok &= ~male & ((p.uterus_intact == 1.0) == (eligibility.uterus == "intact"))
    return np.flatnonzero(ok)


class Screened(NamedTuple):
    """One simulated chunk: ids ``start .. start + n_valid - 1`` (host arrays; padding rows
    beyond ``n_valid``), the indices of its patients that enter, and the running totals."""

    start: int
    n_valid: int
    result: ChunkResult
    rows: np.ndarray
    screened: int  # patients simulated so far, this chunk included
    kept: int  # eligible patients kept so far, this chunk included


def screen(run_chunk: Callable, patients: int, chunk: int, eligibility, tscore_reference,
           where: str, done: Callable = lambda start, n_valid: None) -> Iterator[Screened]:
    """Simulate ids in order, ``chunk`` at a time, until ``patients`` meet ``eligibility``.

    ``run_chunk(ids) -> ChunkResult`` (``cohort.make_chunk_runner``). ``done(start, n_valid)``
    may return ``(simulated, kept)`` for a stretch that needs no simulation here (finished
    before an interruption, or another process's), which is then skipped. Without criteria
    exactly ``patients`` ids are simulated; the last chunk is cut short.
    """
    screened = kept = 0
    while kept < patients:
        if screened >= MAX_SCREENED_PER_PATIENT * patients + chunk:
            raise EligibilityError(
                f"{where}: [eligibility]: only {kept:,} of {screened:,} simulated patients "
                f"({100 * kept / screened:.2f} %) are eligible; it needs {patients:,}. "
                "Widen [eligibility] or [population].")
        n_valid = chunk - screened % chunk  # up to the next chunk boundary
        if eligibility.is_open:
            n_valid = min(n_valid, patients - screened)
        skipped = done(screened, n_valid)
        if skipped is not None:
            screened, kept = screened + skipped[0], kept + skipped[1]
            continue
        # one transfer to the host per chunk; everything below works on numpy arrays
        result = jax.device_get(run_chunk(chunk_ids(screened, screened + n_valid, chunk)))
        rows = eligible_rows(result, n_valid, eligibility, tscore_reference)[:patients - kept]
        screened, kept = screened + n_valid, kept + len(rows)
        yield Screened(screened - n_valid, n_valid, result, rows, screened, kept)
