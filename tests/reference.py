"""Reference solutions: the model's own right-hand side integrated by scipy Radau.

The fixed-step runs and the reference share ``site_rhs`` (the same ODE, endogenous hormones
evaluated at each instant) and the same per-step treatment inputs, which only change on step
boundaries; Radau integrates each stretch of constant inputs separately, so it never steps
across a switch.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from bonecohort.cohort import cast_tree
from bonecohort.exposure.endogenous import StepInputs
from bonecohort.model.cells import steady_state
from bonecohort.model.site import DAYS_PER_YEAR, bmd, steady_state_vector
from bonecohort.exposure.protocol import step_inputs
from bonecohort.solve.life_course import site_rhs, step_edges


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(tree)])


def _unflat(vec, like):
    leaves, treedef = jax.tree.flatten(like)
    out, i = [], 0
    for leaf in leaves:
        size = int(np.size(leaf))
        out.append(vec[i:i + size].reshape(np.shape(leaf)))
        i += size
    return jax.tree.unflatten(treedef, out)


def make_radau(model, patient_like):
    """Return ``radau(patient, arm, grid, site_index, rtol=1e-9)``.

    The right-hand side and its Jacobian are compiled once, with the patient, site and input
    values passed as flat float64 vectors (few arguments: cheap calls from scipy).
    """
    model64 = cast_tree(model, jnp.float64)
    steady = jnp.stack(steady_state(model64.core))
    p_like = jax.tree.map(lambda v: np.asarray(v, np.float64), patient_like)
    s_like = jax.tree.map(lambda v: np.asarray(v, np.float64)[0], model.sites)

    def rhs(t, y, u, pvec, svec, start):
        p = _unflat(pvec, p_like)
        site = _unflat(svec, s_like)
        return site_rhs(p, model64, steady, site, start, start)(t, y, StepInputs(*u))

    f = jax.jit(rhs)
    jac = jax.jit(jax.jacfwd(rhs, argnums=1))

    def radau(patient, arm, grid, site_index, rtol=1e-9):
        """BMD of one site (relative to the start) at entry and at each year end after entry.
        Returns array (horizon_years + 1,)."""
        p = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), patient)
        pvec = _flat(p)
        svec = _flat(jax.tree.map(lambda v: np.asarray(v)[site_index], model.sites))
        start = float(p.age_entry) - grid.prefix_years
        spy = grid.steps_per_year
        spy_pre = grid.prefix_steps_per_year or spy
        natural = step_inputs(*step_edges(jnp.float64(start), grid.prefix_years, spy_pre), p,
                              None)
        treated = step_inputs(*step_edges(p.age_entry, grid.horizon_years, spy), p, arm,
                              model.agents)
        # per-step inputs over the whole life course, shape (steps, fields), and step edges (days)
        inputs = np.concatenate([np.stack(natural, axis=1), np.stack(treated, axis=1)])
        n_pre = grid.prefix_years * spy_pre
        edges = np.concatenate([np.arange(n_pre + 1) * DAYS_PER_YEAR / spy_pre,
                                grid.prefix_years * DAYS_PER_YEAR
                                + np.arange(1, grid.horizon_years * spy + 1) * DAYS_PER_YEAR / spy])
        n_all = inputs.shape[0]
        change = [0] + [k for k in range(1, n_all)
                        if np.any(inputs[k] != inputs[k - 1])] + [n_all]
        year_steps = [n_pre + k * spy for k in range(grid.horizon_years + 1)]
        result = np.zeros(grid.horizon_years + 1)
        y = np.asarray(steady_state_vector(jnp.float64))
        for lo, hi in zip(change[:-1], change[1:]):
            u = inputs[lo]
            sol = solve_ivp(lambda t, yy: np.asarray(f(t, yy, u, pvec, svec, start)),
                            (edges[lo], edges[hi]), y, method="Radau", rtol=rtol, atol=1e-12,
                            dense_output=True,
                            jac=lambda t, yy: np.asarray(jac(t, yy, u, pvec, svec, start)))
            assert sol.success, sol.message
            for i, k in enumerate(year_steps):
                if lo <= k <= hi:
                    result[i] = bmd(sol.sol(edges[k]))
            y = sol.y[:, -1]
        return result

    return radau
