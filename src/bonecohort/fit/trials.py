"""Virtual trials: simulate the trials of a targets file and read out each target's statistic.

Each trial's arms are simulated on the same virtual patients (common random numbers): ids are
screened in order, as a study does, until the trial's ``patients`` meet its eligibility
(on their natural history alone, one program for all trials: entry_screen.py); then the
eligible patients' arms are simulated by the trial's chunk program (cohort.py).
BMD read-outs are taken at month ends after entry (``Grid.outputs_per_year = 12``): a window
from entry is read at its start and end rounded to whole months; a window relative to the
FMP at each woman's FMP + start and FMP + end, rounded to whole months after her entry.

Statistics (targets.py, measures): mean per-patient % change of BMD at the model site over
the window, the difference of two arms' means, the mean divided by the window's years, and,
for fractures, from each patient's annual hazards of a first fracture of the target's kind
and of death (``ArmOutcomes.first_hazards``, ``death_hazard``; outcomes.hazards.
window_outcomes, partial years weighted by their share):

* hazard_ratio: the ratio between the arms of the first-fracture incidence rate over the
  target's window, expected first fractures in the window over expected fracture-free
  person-years alive in it, summed over patients (each weighted by her probability of being
  alive and fracture-free at the window's start);
* cumulative_risk: the percent probability of a first fracture within the window, competing
  with death, among patients alive and fracture-free at its start (same weights);
* lifetime_risk: the same from the window's start to the end of the trial's horizon.

``target_value`` works on JAX or numpy arrays, so the same read-out serves validation and
fitting: ``trial_function`` re-simulates a screened trial's patients (fixed ids, so a fixed
virtual population and a deterministic statistic) as a jitted, differentiable function of
the model's constants. Eligibility and the months of each window are those found at
screening; a fit holds them fixed while the constants move.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.cohort import cast_setup, cast_tree, make_chunk_runner, run_patient
from bonecohort.fit.entry_screen import entry_runner
from bonecohort.fit.screening import screen
from bonecohort.fit.targets import Target, TargetSet, Trial
from bonecohort.model.params import SITE_NAMES
from bonecohort.outcomes.harms import HARMS
from bonecohort.outcomes.hazards import KINDS, window_outcomes
from bonecohort.solve.life_course import prefix_steps

MONTHS = 12


@dataclass
class TrialResult:
    """Host arrays of the eligible patients of one trial."""

    ids: np.ndarray  # (n,) patient ids
    age_entry: np.ndarray  # (n,)
    menopause_age: np.ndarray  # (n,) FMP or oophorectomy (women; +inf-free for men: unused)
    bv: np.ndarray  # (n, arms, sites, months + 1): BMD relative to entry at each month end
    hazards: tuple  # (first-fracture hazards (n, arms, years, kinds), death (n, arms, years));
    # () without fracture targets
    screened: int
    patients: object = None  # population.Patient of host arrays (n,)
    months: int | None = None  # months of follow-up read out (None: those of ``bv``)

    @property
    def follow_up_months(self) -> int:
        return self.bv.shape[-1] - 1 if self.months is None else self.months


def with_month_zero(bmd_rel, xp=np):
    """BV at month ends after entry, (..., months), with month 0 (entry, BV 1) prepended."""
    return xp.concatenate([xp.ones(bmd_rel.shape[:-1] + (1,), bmd_rel.dtype), bmd_rel], axis=-1)


def fracture_hazards(outcomes) -> tuple:
    """Annual hazards of a first fracture of each kind and of death, per patient and arm."""
    return outcomes.arms.first_hazards, outcomes.arms.death_hazard


def _screen(trial: Trial, model, setup, dtype, shape: tuple, values: bool):
    """Simulate the natural history of ids in order until ``trial.study.patients`` are
    eligible (entry_screen.py; ``shape``: its chunk size and padded prefix, shared by the
    trials screened together); with ``values``, simulate the eligible patients' arms too
    (BMD at month ends, and the fracture hazards with ``setup``)."""
    study = trial.study
    chunk, steps = shape
    chunks = list(screen(entry_runner(study, model, dtype, steps), study.patients, chunk,
                         study.eligibility, study.outcomes.tscore_reference,
                         f"{study.path}: trial '{trial.name}'"))
    ids = np.concatenate([s.start + s.rows for s in chunks])
    p = jax.tree.map(lambda *v: np.concatenate(v),
                     *[jax.tree.map(lambda v, s=s: np.asarray(v)[s.rows], s.result.patients)
                       for s in chunks])
    res = TrialResult(ids, p.age_entry, np.minimum(p.fmp_age, p.surgery_age), None, (),
                      chunks[-1].screened, p, study.horizon_years * MONTHS)
    if not values:
        return res
    grid = study.grid._replace(outputs_per_year=MONTHS, rtol=0.0)  # fixed steps: scan
    runner = make_chunk_runner(study.seed, study.population, model, study.arms, grid, dtype,
                               setup)
    out = jax.device_get(runner(jnp.asarray(ids, jnp.uint32)))
    return replace(res, bv=with_month_zero(out.life.bmd_rel),
                   hazards=fracture_hazards(out.outcomes) if setup else ())


def window_months(target: Target, res: TrialResult, months: int):
    """Per-patient month indices (start, end) of the target's window after entry."""
    w = target.window
    if w.origin == "entry":
        start = np.full(len(res.ids), round(w.start * MONTHS))
        end = np.full(len(res.ids), round(w.end * MONTHS))
    else:
        base = res.menopause_age - res.age_entry
        start = np.rint((base + w.start) * MONTHS).astype(int)
        end = np.rint((base + w.end) * MONTHS).astype(int)
    if np.any(start < 0) or np.any(end > months):
        bad = int(np.sum((start < 0) | (end > months)))
        raise ValueError(f"target {target.id}: the window falls outside the simulated years "
                         f"of {bad} patient(s) of trial '{target.trial}'; tighten the trial's "
                         "eligibility or lengthen its horizon.")
    return start, end


def kind_hazard(first, kind: str):
    """The annual hazard of a first event of ``kind`` (a fracture kind of ``KINDS``, a harm of
    ``HARMS``, or "vte": the first DVT or PE) from ``ArmOutcomes.first_hazards``, (..., H)."""
    kinds = KINDS + HARMS
    needed = [kinds.index(k) for k in (("dvt", "pe") if kind == "vte" else (kind,))]
    if first.shape[-1] <= max(needed):
        raise ValueError(f"a target reads {kind}, but the trial was simulated without harms "
                         "([outcomes] harms = false)")
    return sum(first[..., i] for i in needed)


def fracture_value(target: Target, arms: list, res: TrialResult, xp=np):
    """A fracture target's statistic (module docstring) from the trial's hazards."""
    first, death = res.hazards
    w = target.window

    def sums(arm):
        a = arms.index(arm)
        at_start, events, time = window_outcomes(kind_hazard(first[:, a], target.fracture),
                                                 death[:, a], w.start, w.end, xp)
        return xp.sum(at_start * events), xp.sum(at_start * time), xp.sum(at_start)

    events, time, at_risk = sums(target.arm)
    if target.measure == "hazard_ratio":
        events_c, time_c, _ = sums(target.comparator)
        return (events / time) / (events_c / time_c)
    return 100.0 * events / at_risk


class BmdRead(NamedTuple):
    """How a BMD target reads the trial's month-end BMD (arrays, so that one compiled
    program reads any trial: fit/trial_program.py)."""

    arm: np.ndarray  # () int, the arm read
    site: np.ndarray  # () int, the model site (``model.params.SITE_NAMES``)
    comparator: np.ndarray  # () int, the arm subtracted where ``compare`` is 1
    compare: np.ndarray  # () 1.0 for a difference vs the comparator, else 0.0
    per: np.ndarray  # () divisor: the window's years for an annualized change, else 1
    start: np.ndarray  # (n,) int, each patient's window start (months after entry)
    end: np.ndarray  # (n,) int


def bmd_read(target: Target, arms: list, res: TrialResult) -> BmdRead:
    """The ``BmdRead`` of a BMD target on the trial's patients (``window_months``)."""
    start, end = window_months(target, res, res.follow_up_months)
    difference = target.measure == "pct_change_difference_vs_comparator"
    return BmdRead(np.asarray(arms.index(target.arm)),
                   np.asarray(SITE_NAMES.index(target.model_site)),
                   np.asarray(arms.index(target.comparator) if difference else 0),
                   np.asarray(1.0 if difference else 0.0),
                   np.asarray(target.window.years if target.measure == "annualized_pct_change"
                              else 1.0), start, end)


def bmd_statistic(bv, read: BmdRead, weight=None, xp=np):
    """Mean per-patient % change of BMD over each patient's window (module docstring), minus
    the comparator's where asked, per year where asked. ``bv``: (n, arms, sites, months + 1);
    ``weight`` (n,): patients' weights (None: all 1)."""
    rows = xp.arange(bv.shape[0])
    w = xp.ones(bv.shape[0], bv.dtype) if weight is None else weight

    def change(arm):
        b = bv[rows, arm, read.site]
        return xp.sum(w * 100.0 * (b[rows, read.end] / b[rows, read.start] - 1.0)) / xp.sum(w)

    return (change(read.arm) - read.compare * change(read.comparator)) / read.per


def target_value(target: Target, trial: Trial, res: TrialResult, xp=np):
    """The simulated statistic of ``target`` (same units as its observed value)."""
    arms = [a.name for a in trial.study.arms]
    if target.fracture:
        return fracture_value(target, arms, res, xp)
    return bmd_statistic(res.bv, bmd_read(target, arms, res), None, xp)


def trial_function(trial: Trial, targets, res: TrialResult, setup, steady, dtype):
    """Jitted ``model -> (len(targets),)`` simulated statistics of ``targets`` (all of
    ``trial``) on the patients of ``res``. ``steady``: the Pivonka steady state in ``dtype``
    (the core constants are not differentiated); ``setup``: the fracture OutcomeSetup when a
    target reads fractures (its reference population is held fixed, its fracture constants
    are the model's)."""
    study = trial.study
    grid = study.grid._replace(outputs_per_year=MONTHS, rtol=0.0)  # fixed steps: scan
    ids = jnp.asarray(res.ids, jnp.uint32)
    seed = jnp.asarray(study.seed, jnp.uint32)
    setup_d = None if setup is None else cast_setup(setup, dtype)

    def values(model):
        model_d = cast_tree(model, dtype)
        s = None if setup_d is None else setup_d._replace(fracture=model_d.fracture)
        out = jax.vmap(lambda pid: run_patient(seed, pid, study.population, model_d, steady,
                                               study.arms, grid, s))(ids)
        now = replace(res, bv=with_month_zero(out.life.bmd_rel, jnp),
                      hazards=fracture_hazards(out.outcomes) if s is not None else ())
        return jnp.stack([target_value(t, trial, now, jnp) for t in targets])

    return jax.jit(values)


def run_trials(ts: TargetSet, model, setup_for, dtype=jnp.float32, log=lambda m: None,
               values: bool = True):
    """Screen and simulate every trial of ``ts``; ``setup_for(trial)`` gives the fracture
    OutcomeSetup of a trial with hazard-ratio targets. Returns {trial name: TrialResult};
    without ``values``, only the eligible patients (a fit simulates them itself)."""
    results = {}
    shape = (max(trial.study.patients for trial in ts.trials.values()),
             max(prefix_steps(trial.study.grid) for trial in ts.trials.values()))
    for name, trial in ts.trials.items():
        needs = any(t.trial == name and t.fracture for t in ts.targets)
        results[name] = _screen(trial, model, setup_for(trial) if needs else None, dtype,
                                shape, values)
        log(f"trial '{name}': {trial.study.patients:,} eligible of "
            f"{results[name].screened:,} simulated")
    return results
