"""The fit objective as a least-squares problem, minimized by Levenberg-Marquardt.

calibrate's objective is a sum of squares: L = |rho(theta)|^2 with the stacked residual

    rho = [ sqrt(w_i) r_i(theta) for each fitted target ;  (theta_j - theta0_j) / sd_j ],

r_i the target's misfit in units of its tolerance (targets.misfit) and the second block the
Gaussian prior. Levenberg-Marquardt (Levenberg 1944, Q Appl Math 2:164; Marquardt 1963,
SIAM J Appl Math 11:431; Nielsen's damping update, Madsen, Nielsen & Tingleff 2004,
"Methods for non-linear least squares problems", IMM DTU, section 3.2) steps by
(J^T J + mu diag(J^T J)) delta = -J^T rho, J = d rho / d theta, and takes a step only where
L falls. Near the mode it converges quadratically where Adam creeps: a fit to the mode in
tens of evaluations, which is what leave-one-trial-out cross-validation needs (each fold
at its own mode, so that the held-out prediction does not depend on where the fold
started).

d sim / d theta of one trial comes from one compiled program per part: reverse mode, one
pullback per target the trial reads (a few per trial; ``jacobian_program``), the forward
simulation done once. The same programs give L and its gradient (2 J^T rho).
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.cohort import with_x64


def jacobian_program(loss):
    """``theta, *args -> (sim, d sim / d theta)`` of a part's loss (calibrate.Objective._loss:
    ``loss(theta, *args) -> (L_part, sim)``): the simulation once, then its pullback for
    each simulated target (``jax.vjp`` vmapped over the rows of the identity)."""
    def both(theta, *args):
        sim, pullback = jax.vjp(lambda t: loss(t, *args)[1], theta)
        rows = jax.vmap(pullback)(jnp.eye(sim.shape[0], dtype=sim.dtype))[0]
        return sim, rows

    return jax.jit(both)


@with_x64
def simulate_with_jacobian(objective, theta):
    """(sim, d sim / d theta) of every target in file order (rows of targets not in the
    objective's parts are 0); one program per distinct part loss, cached on the objective."""
    theta = jnp.asarray(theta, jnp.float64)
    n, p = len(objective.ts.targets), theta.shape[0]
    sim, jac = np.zeros(n), np.zeros((n, p))
    results = objective.call_programs("_jacobian", jacobian_program, theta)
    for part, (s, j) in zip(objective.parts, results):
        k = len(part.idx)
        sim[part.idx] = np.asarray(s, np.float64)[:k]
        jac[part.idx] = np.asarray(j, np.float64)[:k]
    return sim, jac


def residual_jacobian(objective, j_sim, sim):
    """dr/dtheta from d sim/dtheta (r is on the log scale for hazard ratios)."""
    log_scale = objective.log_scale
    scale = np.where(log_scale, 1.0 / np.where(log_scale & (sim != 0), sim, 1.0), 1.0)
    return j_sim * (scale / objective.tolerance)[:, None]


def prior_sd(objective) -> np.ndarray:
    """The prior SD of each fitted coordinate (inf where the objective has no prior)."""
    if objective.prior_sd is None:
        return np.full(len(objective.frees), np.inf)
    return np.array([f.prior_sd or objective.prior_sd for f in objective.frees])


def stacked_rho(objective, theta, sim):
    """rho as in the module docstring: the weighted residuals of the fitted targets (hazard
    ratios on the log scale), then the prior's standardized offsets if there is a prior."""
    i = objective.fitted()
    r = objective.residuals(sim)[i] * np.sqrt(objective.weight[i])
    if objective.prior_sd is None:
        return r
    d = (np.asarray(theta, np.float64) - np.asarray(objective.theta0)) / prior_sd(objective)
    return np.concatenate([r, d])


def stacked_residuals(objective, theta, sim, jac_sim):
    """(rho, d rho / d theta) from the simulated targets and their Jacobian
    (``posterior``'s residual Jacobian)."""
    i = objective.fitted()
    jac_r = residual_jacobian(objective, jac_sim, sim)[i] * np.sqrt(objective.weight[i])[:, None]
    if objective.prior_sd is not None:
        jac_r = np.vstack([jac_r, np.diag(1.0 / prior_sd(objective))])
    return stacked_rho(objective, theta, sim), jac_r


def levenberg_marquardt(evaluate, theta, iterations: int = 30, tol: float = 1e-6,
                        ftol: float = 1e-5, log=lambda point, seconds: None, first=None):
    """Minimize |rho|^2 from ``theta``; ``evaluate(theta) -> (rho, J, extra)``, J an array or
    a function of no arguments giving it (computed only at points the method keeps). A step is
    taken where L falls (non-finite L counts as a rise); the damping mu grows 4x on a
    rejected step and shrinks 3x on an accepted one (Marquardt's scaling by diag(J^T J)).
    Stops after ``iterations`` accepted steps, when the largest step is below ``tol``, when
    an accepted step lowers L by less than ``ftol`` of itself (the float32 simulation's own
    noise is ~1e-6 of L), or after 8 rejected steps in a row (no descent left). Returns
    (theta, L, extra at theta, history of (evaluation, L) per accepted point). ``first``:
    ``evaluate(theta)`` already at hand (e.g. shared by cross-validation's warm folds)."""
    theta = np.asarray(theta, np.float64)
    rho, jac, extra = evaluate(theta) if first is None else first
    jac = jac() if callable(jac) else jac
    loss, mu, evals = float(rho @ rho), 1e-3, 1
    history = [(evals, loss, extra)]
    log(history[-1], 0.0)
    t0 = time.perf_counter()
    for _ in range(iterations):
        a, g, rejected = jac.T @ jac, jac.T @ rho, 0
        while True:
            step = -np.linalg.solve(a + mu * np.diag(np.maximum(np.diag(a), 1e-12)), g)
            new = evaluate(theta + step)
            evals += 1
            new_loss = float(new[0] @ new[0])
            if math.isfinite(new_loss) and new_loss <= loss:
                break
            mu, rejected = mu * 4.0, rejected + 1
            if rejected == 8:
                return theta, loss, extra, history
        done = np.max(np.abs(step)) < tol or loss - new_loss <= ftol * loss
        theta, loss, mu = theta + step, new_loss, max(mu / 3.0, 1e-9)
        rho, jac, extra = new
        jac = jac() if callable(jac) else jac
        history.append((evals, loss, extra))
        log(history[-1], time.perf_counter() - t0)
        if done:
            break
    return theta, loss, extra, history


__all__ = ["jacobian_program", "levenberg_marquardt", "prior_sd", "residual_jacobian",
           "simulate_with_jacobian", "stacked_residuals", "stacked_rho"]
