"""The posterior of the fitted constants: a Laplace approximation at the fit.

Calibration's objective (``calibrate.Objective``) is read as minus twice a log posterior,

    L(theta) = sum_i w_i r_i(theta)^2 + sum_j ((theta_j - theta0_j) / s_j)^2 = -2 log p(theta | y) + c,

that is, each target's tolerance is taken as one standard deviation of its misfit
(measurement error and model discrepancy together: max(1 pp, stated SE) for BMD changes and
risks; the 95 % half-width on the log scale, i.e. 1.96 SE, for hazard ratios, a deliberately
wide allowance for the model's own error) and the prior on each unconstrained (log / logit)
coordinate is Gaussian with SD s_j around the start. The Laplace approximation
(Tierney & Kadane 1986, JASA 81:82; MacKay 2003, Information Theory, Inference and Learning
Algorithms, ch. 27) replaces the posterior by the Gaussian N(theta_hat, A^-1) with
A = 1/2 Hessian of L at the fit theta_hat:

* ``hessian``: the Hessian of L, by central differences of the exact reverse-mode gradient
  (``jax.grad`` through the virtual trials, the programs calibrate compiled) or, with
  ``method="exact"``, by forward-over-reverse differentiation (``jax.jacfwd`` of
  ``jax.grad``), which compiles a further program per trial;
* ``gauss-newton``: J^T W J + diag(1 / s^2) with J = dr/dtheta (the same forward pass),
  used when the exact A is not positive definite (an optimizer stopped short of a mode).

The posterior is stored in the parameter file (``[posterior]``: the covariance in the
fitted coordinates; its mean is the file's [parameters]) and drawn from by
``Posterior.draws``, whose keys are ``fold_in(fold_in(key(seed), PARAMETER_STREAM), k)``
(patients use ``fold_in(key(seed), patient_id)``, patient ids < 2^31, so the streams differ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.cohort import with_x64
from bonecohort.fit.least_squares import (levenberg_marquardt, prior_sd, residual_jacobian,
                                          simulate_with_jacobian, stacked_residuals,
                                          stacked_rho)
from bonecohort.fit.parameters import Free, from_theta

PARAMETER_STREAM = 2**32 - 1  # fold_in index of the parameter draws under key(seed)
LIKELIHOOD = ("each target's tolerance as one SD of its misfit (calibrate's objective read as "
              "-2 log posterior), Gaussian prior on the fitted coordinates")


@dataclass(frozen=True)
class Posterior:
    """A Gaussian posterior of ``frees`` in their unconstrained coordinates."""

    frees: tuple
    mean: np.ndarray  # theta_hat, the fit
    cov: np.ndarray  # A^-1
    prior_mean: np.ndarray
    prior_sd: np.ndarray
    method: str  # "hessian" or "gauss-newton"

    def sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    def corr(self) -> np.ndarray:
        sd = self.sd()
        return self.cov / np.outer(sd, sd)

    def interval(self, level: float = 0.9) -> np.ndarray:
        """Central ``level`` intervals of each constant on its own scale, shape (p, 2)."""
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + level / 2)
        lo, hi = self.mean - z * self.sd(), self.mean + z * self.sd()
        return np.stack([_natural(self.frees, lo), _natural(self.frees, hi)], axis=1)

    @with_x64
    def draws(self, seed: int, k: int) -> np.ndarray:
        """``k`` draws of theta, shape (k, p); draw j depends on (seed, j) only."""
        chol = np.linalg.cholesky(self.cov)
        base = jax.random.fold_in(jax.random.key(seed), PARAMETER_STREAM)
        z = np.stack([np.asarray(jax.random.normal(jax.random.fold_in(base, j),
                                                   (len(self.frees),), jnp.float64))
                      for j in range(k)]) if k else np.zeros((0, len(self.frees)))
        return self.mean + z @ chol.T

    def models(self, model, seed: int, k: int) -> list:
        """``model`` under each of ``k`` draws (host constants, like a loaded file)."""
        from bonecohort.fit.parameters import _to_numpy

        return [_to_numpy(from_theta(model, self.frees, jnp.asarray(t)))
                for t in self.draws(seed, k)]

    def table(self, level: float = 0.9) -> list:
        """What the targets identify, one row per constant: value, ``level`` interval,
        posterior and prior SD in the fitted coordinate, their ratio (near 1: the targets
        say little beyond the prior) and the constant it is most correlated with."""
        ci, sd, corr = self.interval(level), self.sd(), self.corr()
        rows = []
        for j, f in enumerate(self.frees):
            others = np.abs(np.where(np.eye(len(sd), dtype=bool)[j], 0.0, corr[j]))
            m = int(np.argmax(others)) if len(sd) > 1 else j
            rows.append({"constant": f.path, "transform": f.transform,
                         "value": float(_natural([f], self.mean[j:j + 1])[0]),
                         "lo": float(ci[j, 0]), "hi": float(ci[j, 1]),
                         "posterior_sd": float(sd[j]), "prior_sd": float(self.prior_sd[j]),
                         "sd_ratio": float(sd[j] / self.prior_sd[j])
                         if np.isfinite(self.prior_sd[j]) else float("nan"),
                         "most_correlated_with": self.frees[m].path if m != j else "",
                         "correlation": float(corr[j, m]) if m != j else 0.0})
        return rows

    def strongest_correlations(self, top: int = 8) -> list:
        """The ``top`` pairs of constants by |correlation|: (path, path, correlation)."""
        corr = self.corr()
        pairs = [(abs(corr[i, j]), i, j) for i in range(len(corr)) for j in range(i)]
        return [(self.frees[i].path, self.frees[j].path, float(corr[i, j]))
                for _, i, j in sorted(pairs, reverse=True)[:top]]


def _natural(frees, theta) -> np.ndarray:
    return np.array([float(f.from_unconstrained(jnp.asarray(t))) for f, t in zip(frees, theta)])


def _curvature_fn(loss):
    """theta, *args -> ((d grad / d theta, d sim / d theta), sim): forward over reverse."""
    def grad_and_sim(theta, *args):
        (_, sim), g = jax.value_and_grad(loss, has_aux=True)(theta, *args)
        return (g, sim), sim

    return jax.jit(jax.jacfwd(grad_and_sim, has_aux=True))


def _exact(objective, theta):
    """Hessian of the data part of L and d sim / d theta, forward over reverse per trial."""
    p = theta.shape[0]
    hess, jac = np.zeros((p, p)), np.zeros((len(objective.ts.targets), p))
    sim = np.zeros(len(objective.ts.targets))
    results = objective.call_programs("_curvature", _curvature_fn, jnp.asarray(theta))
    for part, ((h, j), s) in zip(objective.parts, results):  # summed in file order
        n = len(part.idx)
        hess += np.asarray(h, np.float64)
        jac[part.idx] = np.asarray(j, np.float64)[:n]
        sim[part.idx] = np.asarray(s, np.float64)[:n]
    return hess, jac, sim


def _differences(objective, theta, step):
    """The same by central differences of the exact (reverse-mode) gradient and of the
    simulated targets: 2p calls of calibrate's compiled programs, no new compilation.
    Returns the Hessian of each trial's part as well ({trial: Hessian})."""
    p, n = theta.shape[0], len(objective.ts.targets)
    parts = {part.name: np.zeros((p, p)) for part in objective.parts}
    jac, sim = np.zeros((n, p)), np.zeros(n)

    def evaluate(part, at):
        (_, s), g = part.vg(jnp.asarray(at), *objective.arguments(part))
        return np.asarray(s, np.float64)[:len(part.idx)], np.asarray(g, np.float64)

    def at(point):  # every part at ``point``, in file order
        return zip(objective.parts, objective.map_parts(lambda part: evaluate(part, point)))

    for i, e in enumerate(np.eye(p) * step):
        for (part, (s_hi, g_hi)), (_, (s_lo, g_lo)) in zip(at(theta + e), at(theta - e)):
            parts[part.name][:, i] = (g_hi - g_lo) / (2 * step)
            jac[part.idx, i] = (s_hi - s_lo) / (2 * step)
    for part, (s, _) in at(theta):
        sim[part.idx] = s
    return sum(parts.values()), jac, sim, parts


# Central-difference steps in the fitted coordinates: ~cube root of the unit roundoff.
STEPS = {"float32": 1e-2, "float64": 1e-4}


@with_x64
def curvature(objective, theta, method: str = "differences"):
    """(Hessian of the data part of L, dr/dtheta of every target in file order (rows of
    targets not fitted are 0)) at ``theta``. ``method``: "differences" (default) or "exact"
    (forward over reverse: one more program per trial, whose compilation through the scan
    took 107 s for the 12-patient test trial against ~10 s for its gradient; on that trial
    the two Hessians agree to 2e-4 of the largest entry), or "gauss-newton": 2 J^T W J with J
    from the Jacobian programs of ``calibrate --optimizer lm`` (least_squares.py; the
    residuals' own curvature left out, as Levenberg-Marquardt does)."""
    theta = np.asarray(theta, np.float64)
    if method == "gauss-newton":
        sim, j_sim = simulate_with_jacobian(objective, theta)
        jac_r = residual_jacobian(objective, j_sim, sim)
        return 2.0 * jac_r.T @ (objective.weight[:, None] * jac_r), jac_r
    if method == "exact":
        hess, j_sim, sim = _exact(objective, theta)
    else:
        hess, j_sim, sim, _ = _differences(objective, theta, STEPS[objective.dtype_name])
    return 0.5 * (hess + hess.T), residual_jacobian(objective, j_sim, sim)


def _check_determined(a, frees):
    """A ValueError naming the constants the targets leave undetermined (no prior)."""
    vals, vecs = np.linalg.eigh(0.5 * (a + a.T))
    if np.all(vals > 1e-12 * max(vals.max(), 1e-300)):
        return
    worst = vecs[:, np.argmin(vals)]
    names = [frees[i].path for i in np.argsort(-np.abs(worst))[:3]]
    raise ValueError("the targets do not determine the constants along a direction led by "
                     f"{', '.join(names)} and there is no prior to: give a prior (--prior-sd) "
                     "or fit fewer constants.")


def _precision(objective, hess, jac_r, weight):
    """(posterior precision, method): 1/2 ``hess`` + the prior's, or the Gauss-Newton matrix
    J^T W J + the prior's of the targets with ``weight`` where that is not positive definite;
    a ValueError where even that leaves a constant undetermined."""
    prior_precision = np.diag(1.0 / prior_sd(objective) ** 2)
    a = 0.25 * (hess + hess.T) + prior_precision  # half the symmetrized Hessian
    method = "hessian"
    if not np.all(np.linalg.eigvalsh(a) > 0):
        a, method = jac_r.T @ (weight[:, None] * jac_r) + prior_precision, "gauss-newton"
    _check_determined(a, objective.frees)
    return a, method


def laplace(objective, theta, method: str = "differences",
            log=lambda m: None) -> Posterior:
    """The Laplace posterior of ``objective`` at ``theta`` (its fit); ``method`` of the
    Hessian as for ``curvature``."""
    theta = np.asarray(theta, np.float64)
    hess, jac_r = curvature(objective, theta, method)
    a, used = _precision(objective, hess, jac_r, objective.weight)
    if used == "gauss-newton" and method != "gauss-newton":
        log("the Hessian at the fit is not positive definite (the fit is not at a mode); "
            "using the Gauss-Newton approximation")
    cov = np.linalg.inv(a)
    return Posterior(tuple(objective.frees), theta, 0.5 * (cov + cov.T),
                     np.asarray(objective.theta0, np.float64), prior_sd(objective),
                     method if method == "gauss-newton" else used)


Z90 = 1.6449  # two-sided 90 % normal quantile


def fit_scale(v, log_scale):
    """Values on the scale of the misfit: log where ``log_scale`` (hazard ratios)."""
    v = np.asarray(v, np.float64)
    return np.where(log_scale, np.log(np.where(log_scale, v, 1.0)), v)


def predictive_interval(center, spread_sd, tolerance, log_scale, z: float = Z90):
    """(low, high) of the posterior predictive interval of new observations of targets:
    ``center`` (the prediction at the fit) +/- z sqrt(spread_sd^2 + tolerance^2), the spread
    across the constants on the misfit's scale and the tolerance the likelihood's SD."""
    half = z * np.sqrt(np.asarray(spread_sd) ** 2 + np.asarray(tolerance) ** 2)
    lo, hi = fit_scale(center, log_scale) - half, fit_scale(center, log_scale) + half
    return (np.where(log_scale, np.exp(lo), lo), np.where(log_scale, np.exp(hi), hi))


def predictive_bounds(center, draws, tolerance, log_scale, z: float = Z90):
    """``predictive_interval`` with the spread the SD of ``draws`` (k x targets, the targets
    simulated under k draws of the constants)."""
    spread = fit_scale(draws, log_scale).std(axis=0, ddof=1)
    return predictive_interval(center, spread, tolerance, log_scale, z)


@with_x64
def fold_precisions(objective, theta, trials) -> tuple:
    """({trial: (precision without it, method)}, dr / d theta, sim) at ``theta`` from one
    curvature: the precision without trial T is the all-trials one less T's own part,
    A_-T = 1/2 (H - H_T) + diag(1 / s^2) (trial "" : none left out), or the Gauss-Newton
    matrix of the other trials' targets where that is not positive definite."""
    theta = np.asarray(theta, np.float64)
    hess, j_sim, sim, parts = _differences(objective, theta, STEPS[objective.dtype_name])
    jac_r = residual_jacobian(objective, j_sim, sim)
    out = {}
    for trial in trials:
        w = objective.weight.copy()
        for part in objective.parts:
            if part.name == trial:
                w[part.idx] = 0.0
        out[trial] = _precision(objective, hess - parts.get(trial, 0.0), jac_r, w)
    return out, jac_r, sim


def fold_posteriors(objective, theta, folds) -> dict:
    """{trial: Laplace posterior of the fit without that trial} for cross-validation folds
    (fit/crossval.py ``Fold``), from one curvature at the all-trials fit ``theta``
    (``fold_precisions``: the curvature of the other trials is taken where the all-trials
    fit is), each centred on its fold's own fit."""
    precisions, _, _ = fold_precisions(objective, theta, [f.trial for f in folds])
    out = {}
    for fold in folds:
        a, method = precisions[fold.trial]
        cov = np.linalg.inv(a)
        out[fold.trial] = Posterior(tuple(objective.frees), np.asarray(fold.theta, np.float64),
                                    0.5 * (cov + cov.T), np.asarray(objective.theta0),
                                    prior_sd(objective), method)
    return out


def find_mode(objective, theta, iters: int = 30, tol: float = 1e-7):
    """The mode of the posterior from ``theta`` by Levenberg-Marquardt
    (least_squares.levenberg_marquardt) with J by central differences of the compiled
    programs (``curvature``; no new compilation). Returns (theta, L). Adam
    (``calibrate.fit``) stops near, not at, the mode; this is used by the synthetic checks,
    whose many small fits need exact modes."""

    def evaluate(at):
        _, _, sim = objective(at)
        rho = stacked_rho(objective, at, sim)

        def jacobian():
            _, j_sim, s, _ = _differences(objective, at, STEPS[objective.dtype_name])
            return stacked_residuals(objective, at, s, j_sim)[1]
        return rho, jacobian, None

    theta, loss, _, _ = levenberg_marquardt(evaluate, theta, iters, tol, ftol=1e-12)
    return theta, loss


def file_fields(post: Posterior, hessian: str) -> dict:
    """The [posterior] section of a parameter file for ``post``."""
    return {
        "approximation": f"Laplace; Hessian by {hessian}; {post.method} precision",
        "likelihood": LIKELIHOOD,
        "coordinates": [f"{f.path} ({f.transform})" for f in post.frees],
        "prior_mean": [float(v) for v in post.prior_mean],
        "prior_sd": [float(v) if np.isfinite(v) else 0.0 for v in post.prior_sd],
        "covariance": [[float(v) for v in row] for row in post.cov],
    }


def load_posterior(path, model=None) -> Posterior | None:
    """The posterior stored in parameter file ``path`` (None if it has none); its mean is
    the file's [parameters] in their fitted coordinates. ``ConfigError`` naming the file,
    section and field on bad input."""
    import tomllib
    from pathlib import Path

    from bonecohort.config import ConfigError
    from bonecohort.fit.parameters import check_path, load_parameters
    from bonecohort.model.params import hand_set_model

    path = Path(path)
    model = load_parameters(path, hand_set_model() if model is None else model)
    raw = tomllib.loads(path.read_text())
    sec = raw.get("posterior")
    if sec is None:
        return None

    def bad(field, why):
        return ConfigError(f"{path}: [posterior] {field}: {why}.")

    if not isinstance(sec, dict):
        raise bad("", "must be a table")
    frees = tuple(check_path(n, model) for n in raw["parameters"])
    coords = sec.get("coordinates")
    if coords != [f"{f.path} ({f.transform})" for f in frees]:
        raise bad("coordinates", "must list the constants of [parameters] in their order, each "
                  "with its fitted coordinate, e.g. \"hormones.rho_L (log)\"")
    p = len(frees)
    try:
        cov = np.asarray(sec["covariance"], np.float64)
        prior_mean = np.asarray(sec["prior_mean"], np.float64)
        prior_sd = np.asarray(sec["prior_sd"], np.float64)
    except (KeyError, ValueError, TypeError) as exc:
        raise bad("covariance, prior_mean, prior_sd", f"missing or not numbers ({exc})") from None
    if cov.shape != (p, p) or not np.all(np.isfinite(cov)) or not np.allclose(cov, cov.T):
        raise bad("covariance", f"must be a finite symmetric {p} x {p} matrix")
    if np.any(np.linalg.eigvalsh(cov) <= 0):
        raise bad("covariance", "must be positive definite")
    if prior_mean.shape != (p,) or prior_sd.shape != (p,):
        raise bad("prior_mean, prior_sd", f"must hold {p} numbers each")
    # from the file's numbers in float64 (not through the model, whose per-site arrays
    # hold them in the precision JAX had when it was loaded)
    mean = np.array([math.log(v) if f.transform == "log" else math.log(v) - math.log1p(-v)
                     for f, v in ((f, float(raw["parameters"][f.path])) for f in frees)])
    method = "gauss-newton" if "gauss-newton" in str(sec.get("approximation")) else "hessian"
    return Posterior(frees, mean, cov, prior_mean, np.where(prior_sd > 0, prior_sd, np.inf),
                     method)


__all__ = ["Z90", "fit_scale", "predictive_bounds", "predictive_interval", "file_fields", "find_mode", "fold_posteriors",
           "fold_precisions", "load_posterior", "LIKELIHOOD", "PARAMETER_STREAM", "Free", "Posterior", "curvature", "laplace",
           "prior_sd"]
