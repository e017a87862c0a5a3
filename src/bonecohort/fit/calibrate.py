"""Fitting the uncertain constants to a targets file by gradients through the simulation.

Objective (one number, deterministic): the sum over targets of the squared misfit in units
of each target's tolerance (``TargetSet.residual``: |r| <= 1 is the fit criterion of
``validate``), plus a weak Gaussian prior on each fitted constant's unconstrained
coordinate around its starting value,

    L(theta) = sum_targets w_i r_i(theta)^2 + sum_j ((theta_j - theta0_j) / prior_sd)^2,

with w_i the target's ``weight`` (default 1). The prior keeps constants the targets cannot
separate (e.g. RANKL vs OPG action) near their hand-set values instead of drifting along flat
directions. Each trial is screened once with
the starting constants (on the natural history alone, one program for every trial:
fit/entry_screen.py); its patients, their eligibility and the months of each window then
stay fixed (trials.trial_function), so L is a smooth function of theta and ``jax.grad``
runs through the whole simulation (scan of implicit steps, fracture read-out).

Optimizer: optax Adam on theta with a cosine-decaying step; the best iterate is kept. The
shell (``fit`` here, CLI in cli.py) prints progress. Programs: the trials without fracture
targets share one value-and-gradient function whose trial data are arguments
(fit/trial_program.py: padded to common shapes, one compiled program); a trial with
fracture targets has its own (``trials.trial_function``).
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import NamedTuple
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.cohort import cast_tree, reference_steady_state, with_x64
from bonecohort.fit.parameters import Free, from_theta, to_theta
from bonecohort.fit.targets import TargetSet, misfit
from bonecohort.fit.trial_program import bmd_values, padded, regimen_table, trial_data
from bonecohort.fit.trials import run_trials, trial_function
from bonecohort.reference_cache import outcome_setup


# Parts evaluated at once: their programs compile side by side on the first call (tracing
# holds Python's lock, XLA does not) and run side by side after (benchmarks/RESULTS.md).
PART_THREADS = 2


class Part(NamedTuple):
    """One trial's piece of the objective: its targets (file order), the compiled
    value-and-grad, the trial, the loss function, the leading data arguments of the loss and
    the number of targets the program reads (padded; 0: as many as ``idx``)."""

    idx: np.ndarray
    vg: object
    name: str
    loss: object
    extra: tuple = ()
    size: int = 0


class Objective:
    """The fit objective of ``ts`` over ``frees``, on a virtual population screened once
    with ``start`` (a ModelParams)."""

    @with_x64
    def __init__(self, ts: TargetSet, start, frees, dtype=jnp.float64,
                 prior_sd: float | None = 1.0, log=lambda m: None):
        self.ts, self.start, self.frees = ts, start, tuple(frees)
        self.dtype_name = jnp.dtype(dtype).name
        self.theta0 = to_theta(start, self.frees)
        self.prior_sd = prior_sd
        setups = {}

        def setup_for(trial):
            setups[trial.name] = outcome_setup(trial.study.outcomes, start)
            return setups[trial.name]

        fitted = {t.trial for t in ts.targets if t.weight > 0}  # weight 0: reported only
        self.screened = run_trials(
            replace(ts, trials={k: v for k, v in ts.trials.items() if k in fitted}),
            start, setup_for, dtype, log, values=False)
        steady = reference_steady_state(start, dtype)
        self.observed = np.array([t.observed for t in ts.targets])
        self.tolerance = np.array([ts.tolerance(t) for t in ts.targets])
        self.log_scale = np.array([t.measure == "hazard_ratio" for t in ts.targets])
        self.weight = np.array([t.weight for t in ts.targets])  # per target, on r^2
        self.parts = []  # Part per fitted trial
        shared = []  # trials without fracture targets: one program (trial_program.py)
        for name, trial in ts.trials.items():
            idx = [i for i, t in enumerate(ts.targets) if t.trial == name and t.weight > 0]
            if not (idx and name in fitted):
                continue
            targets = [ts.targets[i] for i in idx]
            if any(t.fracture for t in targets):
                values = trial_function(trial, targets, self.screened[name], setups.get(name),
                                        steady, dtype)
                loss = self._loss(lambda model, values=values: values(model))
                self.parts.append(Part(np.asarray(idx), jax.jit(jax.value_and_grad(
                    loss, has_aux=True)), name, loss))
            else:
                shared.append((name, idx, targets))
        self._add_shared(shared, steady, dtype)
        self.parts.sort(key=lambda part: part.idx[0])  # file order

    def _add_shared(self, shared, steady, dtype):
        """One value-and-grad program for the trials of ``shared`` ((name, target indices,
        targets)), each padded to the shapes of all (trial_program.py)."""
        if not shared:
            return
        table = regimen_table(self.ts.trials.values())
        solvers = {self.ts.trials[name].study.grid.solver for name, *_ in shared}
        if len(solvers) > 1:
            raise ValueError(f"the trials use different solvers ({sorted(solvers)})")
        datas = [trial_data(self.ts.trials[name], targets, self.screened[name], table, dtype)
                 for name, _, targets in shared]
        solver = solvers.pop()
        loss = self._loss(lambda model, data: bmd_values(cast_tree(model, dtype), steady, table,
                                                         solver, data))
        vg = jax.jit(jax.value_and_grad(loss, has_aux=True))
        for (name, idx, _), data in zip(shared, datas):
            data = padded(data, datas, len(table))
            self.parts.append(Part(np.asarray(idx), vg, name, loss, (data,),
                                   len(data.reads.arm)))

    def _loss(self, values):
        """A part's piece of L: ``loss(theta, *extra, observed, tolerance, log_scale,
        weight) -> (sum of w r^2, simulated values of its targets)``, ``values(model,
        *extra)`` the simulated statistics."""
        def loss(theta, *args):
            *extra, observed, tolerance, log_scale, weight = args
            sim = values(from_theta(self.start, self.frees, theta), *extra)
            r = misfit(sim, observed, tolerance, log_scale, jnp)
            return jnp.sum(weight * r ** 2), sim

        return loss

    def arguments(self, part: "Part"):
        """The arguments a part's loss takes after theta: its data, then its targets' arrays
        (padded to the part's target count: weight 0)."""
        idx, n = part.idx, part.size or len(part.idx)
        pad = n - len(idx)
        return part.extra + (np.pad(self.observed[idx], (0, pad)),
                             np.pad(self.tolerance[idx], (0, pad), constant_values=1.0),
                             np.pad(self.log_scale[idx], (0, pad)),
                             np.pad(self.weight[idx], (0, pad)))

    def retarget(self, observed):
        """The same objective (same population, compiled functions) for other observed
        values, in file order (recovery of known constants from simulated targets)."""
        new = copy.copy(self)
        new.observed = np.asarray(observed, np.float64)
        return new

    def prior(self, theta):
        """Gaussian prior around the start: SD ``Free.prior_sd`` where a constant has its own
        (agents' pharmacology), else ``prior_sd``; None: no prior."""
        if self.prior_sd is None:
            return 0.0, jnp.zeros_like(theta)
        sd = jnp.asarray([f.prior_sd or self.prior_sd for f in self.frees], theta.dtype)
        d = (theta - self.theta0) / sd
        return jnp.sum(d ** 2), 2.0 * d / sd

    def map_parts(self, fn) -> list:
        """``[fn(part) for part in self.parts]``, ``PART_THREADS`` parts at a time (64-bit
        types enabled in each thread); each part's program is deterministic, so the results
        do not depend on the threads. The first part of each distinct program goes first, so
        that on the first call the programs compile side by side instead of a thread waiting
        for another to compile the program they share."""
        parts = self.parts
        first = {}
        for i, part in enumerate(parts):
            first.setdefault(id(part.loss), i)
        order = sorted(range(len(parts)), key=lambda i: (first[id(parts[i].loss)] != i, i))
        with ThreadPoolExecutor(PART_THREADS) as pool:
            done = dict(zip(order, pool.map(with_x64(lambda i: fn(parts[i])), order)))
        return [done[i] for i in range(len(parts))]

    def call_programs(self, name: str, make, theta) -> list:
        """``program(theta, *arguments(part))`` for every part (``map_parts``), ``program``
        being ``make(part.loss)``: one per distinct loss (trials that share a value-and-grad
        program share its derivative programs too), built once and kept on the objective
        under ``name``."""
        cache = self.__dict__.setdefault(name, {})
        for part in self.parts:
            if id(part.loss) not in cache:
                cache[id(part.loss)] = make(part.loss)
        return self.map_parts(lambda part: cache[id(part.loss)](theta, *self.arguments(part)))

    @with_x64
    def __call__(self, theta, with_prior: bool = True):
        """(L, dL/dtheta, simulated value of every target in file order; targets of trials
        left out of ``parts`` stay 0)."""
        theta = jnp.asarray(theta, jnp.float64)
        total, grad = self.prior(theta) if with_prior else (0.0, jnp.zeros_like(theta))
        sim = np.zeros(len(self.ts.targets))
        results = self.map_parts(lambda part: part.vg(theta, *self.arguments(part)))
        for part, ((loss, values), g) in zip(self.parts, results):  # summed in file order
            total, grad = total + loss, grad + g
            sim[part.idx] = np.asarray(values, np.float64)[:len(part.idx)]
        return float(total), np.asarray(grad, np.float64), sim

    def fitted(self) -> np.ndarray:
        """Indices of the targets in ``parts`` (the ones the objective fits)."""
        return np.concatenate([p[0] for p in self.parts]) if self.parts else np.zeros(0, int)

    def residuals(self, sim):
        return misfit(sim, self.observed, self.tolerance, self.log_scale)

    def fits(self, sim) -> int:
        """Targets of ``parts`` within tolerance."""
        i = self.fitted()
        r = misfit(np.asarray(sim)[i], self.observed[i], self.tolerance[i], self.log_scale[i])
        return int(np.sum(np.abs(r) <= 1.0))


@dataclass
class FitResult:
    model: object  # ModelParams with the best constants
    frees: tuple
    theta: np.ndarray
    loss_start: float
    loss: float
    fits_start: int
    fits: int
    steps: int
    history: list  # (step, loss, fits) per step (Levenberg-Marquardt: per accepted point,
    # numbered by objective evaluations)
    seconds: float
    optimizer: str = "adam"


OPTIMIZERS = {
    "adam": "optax.adam, cosine decay to 1 % of the learning rate",
    "lm": "Levenberg-Marquardt (fit/least_squares.py), Jacobian by reverse mode per target",
}


@with_x64
def fit(objective: Objective, steps: int = 150, learning_rate: float = 0.05,
        log=lambda m: None, theta=None, optimizer: str = "adam") -> FitResult:
    """Adam on the unconstrained coordinates from the starting constants, its step size
    decaying from ``learning_rate`` to 1 % of it along a cosine over ``steps`` (so the last
    steps settle instead of oscillating at the step size); keeps the best iterate.
    ``theta``: start elsewhere than at the objective's starting constants. ``optimizer="lm"``:
    Levenberg-Marquardt to the mode instead (``steps``: its most accepted steps; no learning
    rate), ``fit_to_mode``."""
    import optax

    if optimizer == "lm":
        return fit_to_mode(objective, steps, log, theta)

    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, max(steps, 1), alpha=0.01))
    theta = np.asarray(objective.theta0 if theta is None else theta, np.float64)
    state = opt.init(jnp.asarray(theta))
    best = None
    history = []
    t0 = time.perf_counter()
    for step in range(steps + 1):
        loss, grad, sim = objective(theta)
        if not (math.isfinite(loss) and np.all(np.isfinite(grad))):
            raise FloatingPointError(f"step {step}: the objective or its gradient is not "
                                     "finite; lower the learning rate.")
        fits = objective.fits(sim)
        history.append((step, loss, fits))
        if best is None or loss < best[0]:
            best = (loss, theta, fits)
        log(f"step {step:4d}  loss {loss:11.4f}  fits {fits}/{len(objective.fitted())}  "
            f"|grad| {np.linalg.norm(grad):9.3g}  {time.perf_counter() - t0:7.1f} s")
        if step == steps:
            break
        updates, state = opt.update(jnp.asarray(grad), state)
        theta = np.asarray(optax.apply_updates(jnp.asarray(theta), updates))
    loss, theta, fits = best
    return FitResult(from_theta(objective.start, objective.frees, jnp.asarray(theta)),
                     objective.frees, theta, history[0][1], loss, history[0][2], fits, steps,
                     history, time.perf_counter() - t0)


@with_x64
def fit_to_mode(objective: Objective, steps: int = 30, log=lambda m: None,
                theta=None, at_start=None) -> FitResult:
    """Levenberg-Marquardt (fit/least_squares.py) from the starting constants (or
    ``theta``) to the mode of L: at most ``steps`` accepted steps, each evaluation one run of
    the Jacobian programs (values and d sim / d theta of every fitted target). ``at_start``:
    (sim, d sim / d theta) at the start, where already computed (of this objective's targets
    or more)."""
    from bonecohort.fit.least_squares import (levenberg_marquardt, simulate_with_jacobian,
                                              stacked_residuals)

    n = len(objective.fitted())

    def point(at, sim, jac):
        """Levenberg-Marquardt's (rho, J, targets met) from the simulation at ``at``."""
        return (*stacked_residuals(objective, at, sim, jac), objective.fits(sim))

    def evaluate(at):
        return point(at, *simulate_with_jacobian(objective, at))

    def report(entry, seconds):
        evals, loss, fits = entry
        log(f"evaluation {evals:4d}  loss {loss:11.4f}  fits {fits}/{n}  {seconds:7.1f} s")

    t0 = time.perf_counter()
    start = np.asarray(objective.theta0 if theta is None else theta, np.float64)
    first = None if at_start is None else point(start, *at_start)
    theta, loss, fits, history = levenberg_marquardt(evaluate, start, steps, log=report,
                                                     first=first)
    return FitResult(from_theta(objective.start, objective.frees, jnp.asarray(theta)),
                     objective.frees, theta, history[0][1], loss, history[0][2], fits, steps,
                     history, time.perf_counter() - t0, "lm")


def provenance(ts: TargetSet, result: FitResult, objective: Objective, learning_rate: float,
               dtype, start: str = "the hand-set constants", init: str | None = None) -> dict:
    """What a parameter file records about how it was fitted."""
    versions = {"python": platform.python_version()}
    for pkg in ("bonecohort", "jax", "jaxlib", "optax", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "targets": ts.path, "targets_name": ts.name, "targets_sha256": ts.sha256,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "start": start, "optimizer_start": init or start,
        "objective": "sum of squared misfits in units of each target's tolerance "
                     "+ Gaussian prior on the unconstrained coordinates",
        "prior_sd": objective.prior_sd if objective.prior_sd is not None else "none",
        "loss_before": result.loss_start, "loss_after": result.loss,
        "targets_fitting_before": result.fits_start, "targets_fitting_after": result.fits,
        "targets_total": len(ts.targets),
        "patients_per_trial": {k: t.study.patients for k, t in ts.trials.items()},
        "optimizer": OPTIMIZERS[result.optimizer],
        **({"learning_rate": learning_rate} if result.optimizer == "adam" else {}),
        "steps": result.steps,
        "best_step": min(result.history, key=lambda h: h[1])[0],
        "dtype": jnp.dtype(dtype).name, "seconds": round(result.seconds, 1),
        "free": [f"{f.path} ({f.transform})" for f in result.frees],
        "versions": versions,
    }


def parse_free(names: str, model) -> tuple:
    """A comma-separated list of parameter paths (``parameters.check_path``)."""
    from bonecohort.fit.parameters import check_path

    frees = tuple(check_path(n.strip(), model) for n in names.split(",") if n.strip())
    if not frees:
        raise ValueError("no parameter named")
    if len({f.path for f in frees}) != len(frees):
        raise ValueError("a parameter is named twice")
    return frees


__all__ = ["Free", "FitResult", "OPTIMIZERS", "Objective", "fit", "fit_to_mode", "parse_free",
           "provenance"]
