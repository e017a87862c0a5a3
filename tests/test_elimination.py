"""The step's small linear systems: the elimination against numpy, its derivative rule, and
its accuracy on the model's own iteration matrices against LAPACK's partial pivoting."""

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.cohort import cast_tree
from bonecohort.exposure.endogenous import StepInputs
from bonecohort.fit.parameters import default_model
from bonecohort.model.cells import steady_state
from bonecohort.model.site import JACOBIAN_PATTERN
from bonecohort.population import PopulationSpec, sample_patient
from bonecohort.solve.elimination import factor_small, solve_factored, solver_for
from bonecohort.solve.life_course import site_rhs
from bonecohort.solve.rosenbrock import RODAS3, RODAS4, ROS2

# women and men, some with surgical menopause or hypogonadism (as tests/test_integrator.py)
SPEC = PopulationSpec(age_min=45.0, age_max=55.0, male_fraction=0.3, surgical_fraction=0.3,
                      hypogonadal_fraction=0.5)


def test_factors_solve_small_systems():
    """``factor_small`` / ``solve_factored`` (elimination from the last state to the first, no
    pivoting) against numpy, on random matrices whose diagonal dominates (as the iteration
    matrix's does for short steps)."""
    rng = np.random.default_rng(0)
    for n in (1, 4, 7):
        m = rng.normal(size=(n, n)) + 2.0 * n * np.eye(n)
        b = rng.normal(size=n)
        np.testing.assert_allclose(solve_factored(factor_small(jnp.asarray(m)), jnp.asarray(b)),
                                   np.linalg.solve(m, b), rtol=1e-12, atol=1e-14)


def test_structural_zeros_of_any_pattern_are_skipped_exactly():
    """With a pattern, the factors keep None exactly where the dense elimination holds an
    exact zero (fill-in included), and the solutions are numpy's, for random patterns."""
    rng = np.random.default_rng(4)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        pattern = rng.random((n, n)) < rng.uniform(0.1, 0.9)
        m = np.where(pattern, rng.normal(size=(n, n)), 0.0) + 2.0 * n * np.eye(n)
        rows = tuple(tuple(bool(v) for v in row) for row in pattern)
        sparse, dense = factor_small(jnp.asarray(m), rows), factor_small(jnp.asarray(m))
        for i in range(n):
            for j in range(n):
                assert (sparse[i][j] is None) == (i != j and dense[i][j] == 0.0), (rows, i, j)
        b = rng.normal(size=n)
        np.testing.assert_allclose(solve_factored(sparse, jnp.asarray(b)),
                                   np.linalg.solve(m, b), rtol=1e-12, atol=1e-14)


def test_derivative_rule_matches_the_calculus_of_the_solution():
    """``solver_for``'s rule: forward mode dx = m^-1 (db - dm x), reverse mode
    (m^-T w) for b and -(m^-T w) x^T for m, the same as differentiating the elimination."""
    rng = np.random.default_rng(1)
    m = rng.normal(size=(7, 7)) + 14.0 * np.eye(7)
    b, dm, db, w = rng.normal(size=7), rng.normal(size=(7, 7)), rng.normal(size=7), \
        rng.normal(size=7)
    x = np.linalg.solve(m, b)
    rule = lambda a, v: solver_for(a)(v)  # noqa: E731
    plain = lambda a, v: solve_factored(factor_small(a), v)  # noqa: E731
    expected = np.linalg.solve(m, db - dm @ x)
    for f in (rule, plain):
        _check_derivatives(f, m, b, dm, db, w, x, expected)
    # with the model's pattern, on matrices (and tangents) that have its zeros
    keep = np.asarray(JACOBIAN_PATTERN)
    m, dm = np.where(keep, m, 0.0), np.where(keep, dm, 0.0)
    x = np.linalg.solve(m, b)
    _check_derivatives(lambda a, v: solver_for(a, JACOBIAN_PATTERN)(v), m, b, dm, db, w, x,
                       np.linalg.solve(m, db - dm @ x))


def _check_derivatives(f, m, b, dm, db, w, x, expected):
    """Forward and reverse mode of ``f(m, b) = m^-1 b`` against the calculus."""
    _, dx = jax.jvp(f, (jnp.asarray(m), jnp.asarray(b)), (jnp.asarray(dm), jnp.asarray(db)))
    np.testing.assert_allclose(dx, expected, rtol=1e-10, atol=1e-13)
    gm, gb = jax.grad(lambda a, v: jnp.dot(jnp.asarray(w), f(a, v)), (0, 1))(
        jnp.asarray(m), jnp.asarray(b))
    lam = np.linalg.solve(m.T, w)
    np.testing.assert_allclose(gb, lam, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(gm, -np.outer(lam, x), rtol=1e-10, atol=1e-13)


def _iteration_matrices(seed, patients=30, draws=8):
    """G = I/(h gamma) - J of the model at random states and exposures (float64): women and
    men of ``SPEC``, both sites, every exposure switched on or off at random levels well
    beyond the studies' doses, states far from rest, steps from half a day to four years and
    the gamma of each method."""
    model = cast_tree(default_model(), jnp.float64)
    steady = jnp.stack(steady_state(model.core))

    def jacobian(pid, site_index, t, y, u):
        p = sample_patient(11, pid, SPEC, jnp.float64)
        site = jax.tree.map(lambda v: v[site_index], model.sites)
        f = site_rhs(p, model, steady, site, p.age_entry - 25.0, p.age_entry - 25.0)
        return jax.jacfwd(lambda z: f(t, z, StepInputs(*u)))(y)

    rng = np.random.default_rng(seed)
    k = patients * 2 * draws
    on = rng.integers(0, 2, size=(k, 7))
    u = on * rng.uniform([0, 0, 0, -5, 0, 0, 0], [300, 1500, 20, 5, 30, 1.5, 1], size=(k, 7))
    u[:, 6] = on[:, 6]  # ovaries in place or not
    y = rng.uniform([0.3, 0.3, 0.3, 0.4, 0.3, 0.85, -0.5], [3, 3, 3, 1.2, 3, 1.15, 0.5],
                    size=(k, 7))
    jac = jax.jit(jax.vmap(jacobian))(jnp.repeat(jnp.arange(patients), 2 * draws),
                                      jnp.tile(jnp.repeat(jnp.arange(2), draws), patients),
                                      jnp.asarray(rng.uniform(0, 50 * 365.25, k)),
                                      jnp.asarray(y), jnp.asarray(u))
    hg = np.outer([0.5, 4.0, 30.0, 365.0, 1500.0], [t.gamma for t in (RODAS4, RODAS3, ROS2)])
    g = np.eye(7) / hg.reshape(-1, 1, 1)[None] - np.asarray(jac)[:, None]
    return g.reshape(-1, 7, 7), rng.normal(size=(g.shape[0] * g.shape[1], 7))


def test_elimination_order_is_as_accurate_as_pivoting_on_the_model():
    """Eliminating the model's iteration matrix from the last state to the first without
    pivoting loses no more accuracy in float32 than LAPACK's partial pivoting does (errors
    against float64, at the worst matrix and at the 99th percentile). The state order matters:
    the slow scalar states are eliminated before the cell block."""
    g, b = _iteration_matrices(seed=0)
    exact = np.linalg.solve(g, b[..., None])[..., 0]
    solve = jax.jit(jax.vmap(lambda a, v: solve_factored(factor_small(a), v)))
    ours = np.asarray(solve(jnp.asarray(g, jnp.float32), jnp.asarray(b, jnp.float32)))
    lapack = np.linalg.solve(g.astype(np.float32), b.astype(np.float32)[..., None])[..., 0]

    def errors(x):
        return np.linalg.norm(x - exact, axis=1) / np.linalg.norm(exact, axis=1)

    e_ours, e_lapack = errors(ours), errors(lapack)
    assert e_ours.max() <= 3.0 * e_lapack.max()
    assert np.percentile(e_ours, 99) <= 3.0 * np.percentile(e_lapack, 99)


def test_jacobian_pattern_is_the_models_structure():
    """``model.site.JACOBIAN_PATTERN`` (the states each rate reads) is exactly where the
    model's Jacobian is ever nonzero, off the diagonal: over women and men, both sites, every
    exposure and states far from rest. An entry outside it would be dropped by the
    elimination; an entry inside it that is never nonzero is wasted work."""
    g, _ = _iteration_matrices(seed=2)
    seen = (g != 0.0).any(axis=0) | np.eye(7, dtype=bool)
    assert seen.tolist() == [list(row) for row in JACOBIAN_PATTERN]


def test_skipping_structural_zeros_changes_only_rounding():
    """The elimination that skips the pattern's zeros leaves out only additions of exact
    zeros: run op by op (no compiler fusion) its solutions are the dense elimination's to the
    bit in float32. Compiled, XLA contracts multiply-adds differently in the two programs, so
    they differ in rounding only, and are equally accurate against float64."""
    g, b = _iteration_matrices(seed=3, patients=10)
    args = jnp.asarray(g, jnp.float32), jnp.asarray(b, jnp.float32)

    def solve(pattern):
        return jax.vmap(lambda a, v: solve_factored(factor_small(a, pattern), v))

    with jax.disable_jit():
        assert np.array_equal(solve(None)(*args), solve(JACOBIAN_PATTERN)(*args))
    exact = np.linalg.solve(g, b[..., None])[..., 0]
    errors = [np.linalg.norm(np.asarray(jax.jit(solve(p))(*args)) - exact, axis=1)
              / np.linalg.norm(exact, axis=1) for p in (None, JACOBIAN_PATTERN)]
    assert errors[1].max() <= 1.5 * errors[0].max()
    assert np.percentile(errors[1], 99) <= 1.5 * np.percentile(errors[0], 99)
