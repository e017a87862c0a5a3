"""The site's memory mechanisms (model/site.py): the Pivonka steady state stays exact, the
remodeling-space transient has the right sign and fades, mineralization lags bone volume, and
the adaptive set point keeps part of a treatment's gain after stopping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonecohort.cohort import cast_tree, reference_steady_state, with_x64
from bonecohort.fit.parameters import default_model
from bonecohort.model.params import CellAction, Site
from bonecohort.model.site import BV, DAYS_PER_YEAR, bmd, site_rates, steady_state_vector
from bonecohort.solve.rosenbrock import RODAS3, integrate

SPINE = Site.LUMBAR_SPINE


def _site(**changes):
    model = cast_tree(default_model(), jnp.float64)
    site = jax.tree.map(lambda v: v[SPINE], model.sites)
    return model, site._replace(**{k: jnp.float64(v) for k, v in changes.items()})


@with_x64
def history(phases, **changes):
    """Monthly states through ``phases`` [(years, RANKL multiplier)] from peak bone mass;
    returns (months, state). RANKL x k > 1 raises resorption (estrogen deficiency), < 1
    lowers it (an antiresorptive)."""
    model, site = _site(**changes)
    steady = reference_steady_state(model, jnp.float64)
    y = steady_state_vector(jnp.float64)
    out = []
    for years, rankl in phases:
        action = CellAction(rankl=jnp.float64(rankl))

        def rates(t, z, u, action=action):
            return site_rates(z, model.core, steady, site, action)

        y, ys = integrate(rates, y, jnp.float64(0.0), jnp.zeros((years * 12, 1)),
                          jnp.float64(DAYS_PER_YEAR / 12), 1, RODAS3)
        out.append(np.asarray(ys))
    return np.concatenate(out)


@with_x64
@pytest.mark.parametrize("site_index", list(Site))
@pytest.mark.parametrize("seed", [0, 1])
def test_steady_state_at_peak_bone_mass_is_exact_for_any_constants(site_index, seed):
    rng = np.random.default_rng(seed)
    model = cast_tree(default_model(), jnp.float64)
    site = jax.tree.map(lambda v: v[site_index], model.sites)
    site = site._replace(formation_lag=rng.uniform(0.05, 1.0),
                         secondary_rate=rng.uniform(0.05, 3.0),
                         set_point_rate=rng.uniform(0.0, 1.0),
                         primary_mineral=rng.uniform(0.5, 0.9))
    steady = reference_steady_state(model, jnp.float64)
    d = site_rates(steady_state_vector(jnp.float64), model.core, steady, site, CellAction())
    assert np.max(np.abs(np.asarray(d))) < 1e-14


def test_remodeling_space_opens_with_turnover_and_closes_after():
    """More resorption for 2 years, then back: with a refilling lag the bone is lower while
    turnover is high (the open space) and the difference fades once turnover returns."""
    phases = [(2, 1.5), (12, 1.0)]
    common = dict(set_point_rate=0.0)
    lag = bmd(history(phases, formation_lag=0.4, **common))
    none = bmd(history(phases, formation_lag=1e-3, **common))
    gap = lag - none
    assert gap[2] < 0 and gap[5] < 0  # the space opens as turnover rises
    assert abs(gap[-1]) < 0.2 * abs(gap[:24].min())  # and it closes afterwards


def test_remodeling_space_gives_fast_early_gain_on_an_antiresorptive():
    phases = [(1, 0.6)]
    lag = bmd(history(phases, formation_lag=0.4, set_point_rate=0.0))
    none = bmd(history(phases, formation_lag=1e-3, set_point_rate=0.0))
    assert lag[5] > none[5] > 1.0


def test_mineralization_lags_bone_volume_and_persists_after_stopping():
    """On an antiresorptive the mean mineral content rises (older bone), so BMD gains more
    than bone volume; after stopping the excess decays over years, not at once."""
    y = history([(3, 0.6), (6, 1.0)], set_point_rate=0.0)
    ratio = bmd(y) / y[:, BV]
    assert ratio[11] > 1.0 and ratio[35] > ratio[11]  # still rising in year 3
    assert 1.0 < ratio[47] < ratio[35]  # a year after stopping: decaying, still above
    assert ratio[-1] < ratio[47]


def test_set_point_memory_keeps_part_of_a_treatment_gain_long_after_stopping():
    """5 years of an antiresorptive, then 25 years off: without set-point adaptation the arm
    meets the untreated one; with it, part of the gain remains."""
    treated = [(5, 0.6), (25, 1.0)]
    never = [(30, 1.0)]
    for rate, remains in ((0.0, False), (0.2, True)):
        diff = bmd(history(treated, set_point_rate=rate))[-1] - bmd(
            history(never, set_point_rate=rate))[-1]
        if remains:
            assert diff > 0.005
        else:
            assert abs(diff) < 0.002
