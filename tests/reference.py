"""Reference solutions: the same model integrated by scipy Radau with continuous-time inputs."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from bonecohort.agents import AGENTS
from bonecohort.cohort import cast_tree, reference_steady_state
from bonecohort.model.hormones import estrogen_action
from bonecohort.model.site import DAYS_PER_YEAR, site_rates
from bonecohort.simulate import regimen_window


def _rates_fn(model, steady):
    @jax.jit
    def f(y, e2, site, patient):
        site = site._replace(turnover=site.turnover * patient.turnover_scale,
                             mech_gain=site.mech_gain * patient.mech_scale)
        action = estrogen_action(e2, model.hormones, site.er_gain, patient.rankl_sensitivity)
        return site_rates(y, model.core, steady, site, action)

    return f, jax.jit(jax.jacfwd(f))


def radau_patient(patient, model, arm, grid, site_index, rtol=1e-9):
    """BV of one site (relative to the start) at entry and at each year end after entry.

    Endogenous estradiol is evaluated at each instant (no step averaging); treatment windows
    are integrated as separate segments so Radau never steps across a switch.
    Returns array (horizon_years + 1,).
    """
    model64 = cast_tree(model, jnp.float64)
    steady = reference_steady_state(model, jnp.float64)
    f, jac = _rates_fn(model64, steady)
    p = jax.tree.map(lambda v: np.float64(v), patient)
    mp = model.menopause
    a0 = float(p.age_entry) - grid.prefix_years
    windows = []
    for reg in arm.regimens:
        start, stop = (float(v) for v in regimen_window(reg, p))
        windows.append((start, stop, reg.dose * AGENTS[reg.agent].e2_per_dose))

    def e2_at(age):
        e2 = p.e2_post + (mp.E2_pre - p.e2_post) / (1.0 + np.exp((age - p.fmp_age) / mp.width))
        for lo, hi, add in windows:
            if lo <= age < hi:
                e2 += add
        return e2

    out_ages = float(p.age_entry) + np.arange(grid.horizon_years + 1)
    end = out_ages[-1]
    breaks = sorted({a0, end, *[w for lo, hi, _ in windows for w in (lo, hi) if a0 < w < end]})
    result = np.zeros(out_ages.size)
    site = jax.tree.map(lambda v: jnp.float64(np.asarray(v)[site_index]), model64.sites)
    y = np.ones(4)
    for lo, hi in zip(breaks[:-1], breaks[1:]):
        def e2_in_segment(t, lo=lo, hi=hi):
            return e2_at(min(max(a0 + t / DAYS_PER_YEAR, lo + 1e-12), hi - 1e-12))

        def rhs(t, yy):
            return np.asarray(f(jnp.asarray(yy), e2_in_segment(t), site, p))

        def jj(t, yy):
            return np.asarray(jac(jnp.asarray(yy), e2_in_segment(t), site, p))

        t_out = [(a - a0) * DAYS_PER_YEAR for a in out_ages if lo <= a <= hi]
        sol = solve_ivp(rhs, ((lo - a0) * DAYS_PER_YEAR, (hi - a0) * DAYS_PER_YEAR), y,
                        method="Radau", rtol=rtol, atol=1e-12, jac=jj, dense_output=True)
        assert sol.success, sol.message
        for t in t_out:
            result[int(round(t / DAYS_PER_YEAR + a0 - float(p.age_entry)))] = sol.sol(t)[3]
        y = sol.y[:, -1]
    return result
