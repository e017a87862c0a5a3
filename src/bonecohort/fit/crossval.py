"""Leave-one-trial-out cross-validation of a fit (out of sample, on the trials' own patients).

For each trial T of a targets file: refit the constants on every other trial, then simulate
T's targets with the refitted constants. A target "held out" is thus predicted by constants
that never saw its trial. The in-sample value of the same target comes from the fit to all
trials. Both use the same virtual patients (each trial screened once with the starting
constants, ``calibrate.Objective``), so in-sample and held-out differ only by what the fit saw.

Each fold runs ``steps`` Adam steps (or Levenberg-Marquardt to the fold's mode,
``optimizer="lm"``) on the objective without T, prior unchanged (centred on the hand-set
constants), from one of two starts:
* cold (``start_theta=None``): the hand-set constants, exactly as the all-trials fit started,
  so nothing of T reaches the fold (the honest estimate; the README reports this one);
* warm: the all-trials fit, cheaper, but a fold cut short by ``steps`` stays biased toward
  the in-sample answer (the fold's loss history is kept to judge that). A fold taken to its
  mode by Levenberg-Marquardt does not depend on its start where the mode is unique.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from bonecohort.cohort import with_x64
from bonecohort.fit.calibrate import Objective, fit, fit_to_mode


def without(objective: Objective, trials) -> Objective:
    """The same objective (population, compiled functions, prior) without ``trials``."""
    new = copy.copy(objective)
    new.parts = [p for p in objective.parts if p[2] not in set(trials)]
    return new


def only(objective: Objective, trials) -> Objective:
    """The objective restricted to ``trials`` (no prior is added by ``simulate``)."""
    new = copy.copy(objective)
    new.parts = [p for p in objective.parts if p[2] in set(trials)]
    return new


@dataclass
class Fold:
    trial: str
    targets: list  # indices of the held-out targets (file order)
    held_out: np.ndarray  # simulated values of those targets by the fold's constants
    loss_start: float  # fold objective at the all-trials constants
    loss: float  # and at the fold's best constants
    steps: int
    theta: np.ndarray


def simulated(objective: Objective, theta, optimizer: str = "adam") -> np.ndarray:
    """Every target's simulated value at ``theta`` (0 for trials not in ``parts``), by the
    programs the optimizer compiles (value-and-grad for adam, the Jacobian's for lm)."""
    if optimizer == "lm":
        from bonecohort.fit.least_squares import simulate_with_jacobian

        return simulate_with_jacobian(objective, theta)[0]
    return objective(theta, with_prior=False)[2]


def cross_validate(objective: Objective, start_theta, steps: int = 40,
                   learning_rate: float = 0.02, log=lambda m: None, trials=None,
                   optimizer: str = "adam", shared=None) -> list:
    """One ``Fold`` per trial with fitted targets (or per name in ``trials``), each refitted
    from ``start_theta`` (None: the objective's start, a cold fold) by ``optimizer``
    (calibrate.fit). Warm Levenberg-Marquardt folds share their first Jacobian: ``shared``,
    ``simulate_with_jacobian`` at ``start_theta`` if the caller has it, else computed here."""
    folds = []
    names = [p[2] for p in objective.parts] if trials is None else list(trials)
    if optimizer != "lm" or start_theta is None:
        shared = None
    elif shared is None:
        from bonecohort.fit.least_squares import simulate_with_jacobian

        shared = simulate_with_jacobian(objective, start_theta)
    for name in names:
        origin = "the hand-set constants" if start_theta is None else "the all-trials fit"
        log(f"fold '{name}': refit without it ({steps} steps from {origin})")
        sub = without(objective, [name])
        if shared is None:
            result = fit(sub, steps, learning_rate, lambda m: log("  " + m), start_theta,
                         optimizer)
        else:
            result = fit_to_mode(sub, steps, lambda m: log("  " + m), start_theta, shared)
        sim = simulated(only(objective, [name]), result.theta, optimizer)
        idx = [i for p in objective.parts if p[2] == name for i in p[0]]
        folds.append(Fold(name, idx, sim[idx], result.loss_start, result.loss, steps,
                          np.asarray(result.theta)))
    return folds


@with_x64
def predictive(objective: Objective, theta, folds: list, k: int, seed: int) -> dict:
    """{target index: (in-sample low, high, held-out low, high)} of the 90 % posterior
    predictive intervals (fit/posterior.py): in sample from the Laplace posterior of the
    all-trials fit ``theta``, held out from each fold's posterior without its trial
    (``fold_posteriors``), each with ``k`` draws of the constants simulating the trial's
    targets on the objective's patients."""
    from bonecohort.fit.posterior import fold_posteriors, predictive_bounds

    whole = Fold("", [], np.zeros(0), 0.0, 0.0, 0, np.asarray(theta))
    posts = fold_posteriors(objective, theta, [whole, *folds])
    out = {}
    for fold in folds:
        held = only(objective, [fold.trial])
        idx = np.asarray(fold.targets)
        args = (objective.tolerance[idx], objective.log_scale[idx])
        bounds = []
        for post, center in ((posts[""], None), (posts[fold.trial], fold.held_out)):
            sims = np.stack([held(t, with_prior=False)[2][idx] for t in post.draws(seed, k)])
            center = held(theta, with_prior=False)[2][idx] if center is None else center
            bounds.append(predictive_bounds(center, sims, *args))
        for j, i in enumerate(idx):
            out[int(i)] = tuple(float(b[j]) for pair in bounds for b in pair)
    return out


@with_x64
def linear_predictive(objective: Objective, theta, held_out: dict) -> dict:
    """The same intervals as ``predictive`` with the spread across the constants by the delta
    method instead of draws, from one curvature at the all-trials fit: the predictive
    variance of targets idx is (J Sigma J^T + 1) tolerance^2, J = d r / d theta there, Sigma the
    all-trials posterior (in sample) or the fold's without the trial (held out).
    ``held_out``: {trial: (target indices, their held-out predictions)} (e.g. a stored
    cross-validation table, whose folds need not be run again). Returns the same dict."""
    from bonecohort.fit.posterior import fold_precisions, predictive_interval

    theta = np.asarray(theta, np.float64)
    precisions, jac_r, sim = fold_precisions(objective, theta, ["", *held_out])
    out = {}
    for trial, (idx, values) in held_out.items():
        idx = np.asarray(idx)
        tol, log = objective.tolerance[idx], objective.log_scale[idx]
        bounds = []
        for a, center in ((precisions[""][0], sim[idx]),
                          (precisions[trial][0], np.asarray(values))):
            # spread of the misfit r across the constants, in the target's own units
            var_r = np.einsum("ij,jk,ik->i", jac_r[idx], np.linalg.inv(a), jac_r[idx])
            bounds += predictive_interval(center, np.sqrt(var_r) * tol, tol, log)
        for j, i in enumerate(idx):
            out[int(i)] = tuple(float(b[j]) for b in bounds)
    return out


def fold_table(objective: Objective, in_sample: np.ndarray, folds: list,
               intervals: dict | None = None) -> list:
    """Rows (one per target with a fold): id, trial, measure, observed, in-sample and
    held-out values, their misfits in units of the tolerance and whether each fits."""
    ts = objective.ts
    rows = []
    for fold in folds:
        for i, value in zip(fold.targets, fold.held_out):
            t = ts.targets[i]
            r_in = float(ts.residual(t, in_sample[i]))
            r_out = float(ts.residual(t, value))
            row = {"id": t.id, "trial": fold.trial, "site": t.site, "measure": t.measure,
                   "observed": t.observed, "in_sample": float(in_sample[i]),
                   "held_out": float(value), "r_in_sample": r_in, "r_held_out": r_out,
                   "fits_in_sample": abs(r_in) <= 1.0, "fits_held_out": abs(r_out) <= 1.0}
            if intervals is not None:
                lo_in, hi_in, lo_out, hi_out = intervals[i]
                row.update(pi_in_lo=lo_in, pi_in_hi=hi_in, pi_out_lo=lo_out, pi_out_hi=hi_out,
                           inside_pi_in_sample=lo_in <= t.observed <= hi_in,
                           inside_pi_held_out=lo_out <= t.observed <= hi_out)
            rows.append(row)
    return rows


__all__ = ["Fold", "cross_validate", "fold_table", "linear_predictive", "only", "predictive",
           "simulated", "without"]
