"""The fixed-step Rosenbrock integrator against scipy Radau on random patients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonecohort.integrate import _solve_small, ros2_step
from bonecohort.population import PopulationSpec, sample_patient
from bonecohort.runner import default_model
from bonecohort.simulate import Arm, Grid, Regimen
from bonecohort.cohort import make_chunk_runner, chunk_ids

from reference import radau_patient

SPEC = PopulationSpec(age_min=45.0, age_max=55.0)
GRID = Grid(prefix_years=25, horizon_years=15)  # 40 simulated years, menopause included
ARMS = (Arm("none"), Arm("E2", (Regimen("estradiol_transdermal", 50.0, "fmp", 0.0, 5.0),)))
N = 100


def test_small_solver_matches_numpy_with_pivoting():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.normal(size=(4, 4))
        m[0, 0] = 0.0  # forces a row exchange
        b = rng.normal(size=4)
        np.testing.assert_allclose(_solve_small(jnp.asarray(m), jnp.asarray(b)),
                                   np.linalg.solve(m, b), rtol=1e-9, atol=1e-12)


def test_ros2_is_second_order_on_linear_decay():
    f = lambda y: -0.3 * y  # noqa: E731
    errs = []
    for h in (0.25, 0.125):
        y = jnp.ones(1, jnp.float64)
        for _ in range(int(4 / h)):
            y = ros2_step(f, y, h)
        errs.append(abs(float(y[0]) - np.exp(-1.2)))
    assert 3.0 < errs[0] / errs[1] < 5.0


def case(i):
    """Patient i is checked on arm i % 2 and site (i // 2) % 2: every arm-site pair 25 times."""
    return i % 2, (i // 2) % 2


@pytest.fixture(scope="module")
def reference():
    model = default_model()
    rows = []
    for i in range(N):
        arm, site = case(i)
        patient = sample_patient(11, i, SPEC, jnp.float64)
        rows.append(radau_patient(patient, model, ARMS[arm], GRID, site))
    return np.array(rows)  # (N, 1 + years)


# Both dtypes at the default half-month step, within 0.1 %. ROS2 is second order and its
# truncation error (not rounding) dominates: at a monthly step it reaches ~1.5e-3 in the
# menopause transition, and even a quarter-month step leaves ~6e-4 for some treated patients,
# so the 0.01 % float64 goal needs a higher-order method (open work, see README).
@pytest.mark.parametrize("dtype,steps_per_year,tol", [(jnp.float32, 24, 1e-3),
                                                      (jnp.float64, 24, 1e-3)])
def test_fixed_step_matches_radau(reference, dtype, steps_per_year, tol):
    grid = GRID._replace(steps_per_year=steps_per_year)
    run = make_chunk_runner(11, SPEC, default_model(), ARMS, grid, dtype)
    _, out = run(chunk_ids(0, N, N))
    assert out["bv_rel"].dtype == dtype
    bv_entry = np.asarray(out["bv_entry"], np.float64)  # (N, sites)
    bv_rel = np.asarray(out["bv_rel"], np.float64)  # (N, arms, sites, years)
    ours = np.array([np.concatenate([[bv_entry[i, s]], bv_entry[i, s] * bv_rel[i, a, s]])
                     for i, (a, s) in map(lambda i: (i, case(i)), range(N))])
    np.testing.assert_allclose(ours, reference, rtol=tol)
    # the comparison covers real change: menopause moves bone by several percent
    assert np.max(1.0 - reference[:, -1]) > 0.05
