"""Untreated women against published menopausal loss rates; steady state; estradiol effect."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonecohort.cohort import cast_tree, reference_steady_state
from bonecohort.population import PopulationSpec, sample_patient
from bonecohort.fit.parameters import default_model
from bonecohort.model.params import Site
from bonecohort.exposure.protocol import Arm, Regimen
from bonecohort.solve.life_course import Grid, simulate_patient

SPEC = PopulationSpec(age_min=45.0, age_max=55.0)
FN, LS = Site.FEMORAL_NECK, Site.LUMBAR_SPINE


def simulate_aligned(n, arms, horizon, dtype=jnp.float64, years_before_fmp=3.0, base=None):
    """Patients whose entry is exactly ``years_before_fmp`` before their FMP, so yearly outputs
    fall on whole years from the FMP. Returns bmd_rel (n, arms, sites, years)."""
    base = default_model() if base is None else base
    model = cast_tree(base, dtype)
    steady = reference_steady_state(base, dtype)
    grid = Grid(prefix_years=25, horizon_years=horizon)

    def one(pid):
        p = sample_patient(3, pid, SPEC, dtype)
        p = p._replace(age_entry=p.fmp_age - years_before_fmp)
        return simulate_patient(p, model, steady, arms, grid).bmd_rel

    return np.asarray(jax.jit(jax.vmap(one))(jnp.arange(n, dtype=jnp.uint32)))


@pytest.fixture(scope="module")
def untreated():
    # entry at FMP-3: year index k holds BV at FMP-3+k+1 relative to FMP-3
    return simulate_aligned(500, (Arm("none"),), horizon=12)[:, 0]


def window_pct(bv, site, start, stop):
    """Mean % change of BV at ``site`` between years ``start`` and ``stop`` from the FMP."""
    at = lambda y: np.ones(len(bv)) if y == -3 else bv[:, site, y + 3 - 1]  # noqa: E731
    return float(np.mean(100.0 * (at(stop) / at(start) - 1.0)))


def within_factor_two(simulated, observed):
    return 0.5 <= simulated / observed <= 2.0


def test_spine_loss_decelerates_after_menopause(untreated):
    early = window_pct(untreated, LS, 0, 2) / 2.0
    late = window_pct(untreated, LS, 2, 7) / 5.0
    assert early < late < 0.0  # both losses, the early one faster


@pytest.mark.parametrize("target,site,start,stop,per_year,observed", [
    ("NH01", LS, -1, 2, False, -7.38),  # SWAN, Greendale 2012 JBMR 27:111
    ("NH02", FN, -1, 2, False, -5.8),   # SWAN, Greendale 2012
    ("NH06", LS, 0, 2, True, -3.3),     # Sowers 2010 JCEM, %/yr
    ("NH07", LS, 2, 7, True, -1.1),     # Sowers 2010 JCEM, %/yr
])
def test_menopausal_loss_within_factor_two_of_targets(untreated, target, site, start, stop,
                                                      per_year, observed):
    simulated = window_pct(untreated, site, start, stop)
    if per_year:
        simulated /= stop - start
    assert within_factor_two(simulated, observed), (target, simulated, observed)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.float64, 1e-12)])
def test_premenopausal_steady_state_stays_put(dtype, tol):
    # FMP far beyond the horizon, no age-related drift of the set point or of testosterone:
    # every hormone stays at its peak-bone-mass reference, so nothing may move
    base = default_model()
    base = base._replace(sites=base.sites._replace(age_loss=0.0 * base.sites.age_loss),
                         endocrine=base.endocrine._replace(t_decline=0.0))
    model = cast_tree(base, dtype)
    steady = reference_steady_state(base, dtype)
    p = sample_patient(5, 0, SPEC, dtype)._replace(fmp_age=jnp.asarray(150.0, dtype))
    out = simulate_patient(p, model, steady, (Arm("none"),), Grid(25, 30))
    assert np.max(np.abs(np.asarray(out.bmd_entry) - 1.0)) < tol
    assert np.max(np.abs(np.asarray(out.bmd_rel) - 1.0)) < tol


def test_estradiol_from_fmp_preserves_bone():
    arms = (Arm("none"), Arm("E2", (Regimen("estradiol", 50.0, "transdermal", "fmp", 0.0, 5.0),)))
    bv = simulate_aligned(200, arms, horizon=12, dtype=jnp.float32)
    for site in (FN, LS):
        for year in (5, 8, 10):  # FMP+2, FMP+5 (on treatment) and FMP+7 (after stopping)
            none, e2 = bv[:, 0, site, year - 1].mean(), bv[:, 1, site, year - 1].mean()
            assert e2 > none, (site, year)


def test_serm_site_odds_move_the_neck_gain_of_a_serm_only():
    """The femoral neck's SERM odds (hormones.site_serm_agonism) raise raloxifene's neck gain
    over placebo when above 1; they leave the spine, and every arm without a SERM, as is."""
    arms = (Arm("none"), Arm("ral", (Regimen("raloxifene", 60.0, "oral", "fmp", 2.0, 5.0),)))
    base = default_model()

    def with_odds(odds):
        sites = base.sites._replace(serm_odds=np.array([odds, 1.0]))  # (neck, spine)
        bv = simulate_aligned(100, arms, horizon=8, dtype=jnp.float32,
                              base=base._replace(sites=sites))
        return bv[:, 0], bv[:, 1] - bv[:, 0]  # untreated, raloxifene minus untreated

    (none1, gain1), (none3, gain3) = with_odds(1.0), with_odds(3.0)
    # float32 round-off only (the arms of a patient share compiled code and step control)
    np.testing.assert_allclose(none3, none1, rtol=1e-6)
    np.testing.assert_allclose(gain3[:, LS], gain1[:, LS], atol=1e-6)
    year = 7  # FMP+4: two years on raloxifene
    assert gain1[:, FN, year].mean() > 0.0
    assert gain3[:, FN, year].mean() > 1.2 * gain1[:, FN, year].mean()
