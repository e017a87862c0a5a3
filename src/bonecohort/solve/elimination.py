"""Small dense linear systems of one patient's Rosenbrock step (pure JAX).

Each step of ``rosenbrock.driven_stages`` factors its iteration matrix G = I/(h gamma) - J
(7 x 7 for one skeletal site) once and solves with it at every stage. The elimination is
written entry by entry, without pivoting, in an order that the model's state makes stable
(``factor_small``), skipping the entries that the model's structure makes zero (a right-hand
side marked ``with_jacobian_pattern``; ``model.site.JACOBIAN_PATTERN``: 20 of 49 entries of a
site's matrix are ever nonzero), and its derivative for the fit is a rule (``solver_for``).
Skipping the zeros made the one-site natural history ~2x faster (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def factor_small(m, pattern=None):
    """Triangular factors of one small dense matrix, eliminating from the last row and column
    to the first (M = U L, U unit upper and L lower triangular) without pivoting; entries as
    nested lists of scalars, the reciprocal of each pivot on the diagonal, None for an entry
    that is zero by structure.

    ``pattern`` (``jacobian_pattern``): ``pattern[i][j]`` False where M's entry (i, j) is zero
    whatever the values (off the diagonal); those entries, and the fill-in they would cause,
    are skipped at trace time. The arithmetic that remains is the dense elimination's minus
    its additions of exact zeros: op by op the same to the bit (for finite entries); compiled,
    XLA contracts multiply-adds differently, so results differ in rounding only
    (tests/test_elimination.py). None: every entry may be nonzero.

    Without pivoting, the order of elimination is the order of the state, reversed: the
    remodeling state (``model/site.py``) lists the cells first and the slow scalar states
    last, so the scalar states (set point, mineral, refilling, bone volume) are eliminated
    first, each against its own diagonal (1/(h gamma) plus a rate that is positive or zero: no
    state's rate grows with the state itself), and the dense cell block last. On the model's
    iteration matrices (women and men, every exposure at random levels, states far from rest,
    steps of half a day to four years, the gamma of every method) this order is about as
    accurate in float32 as LAPACK's partial pivoting (worst matrix 3.2e-6 against 2.7e-6),
    while eliminating in the state's own order is up to 300x less accurate (8.8e-4;
    tests/test_elimination.py, benchmarks/RESULTS.md).

    Entry by entry, every operation is one elementwise operation over the vmapped patients
    (the patients are the contiguous axis): a chunk of the default study ran 1.6-2.0x faster
    than with the partially pivoted elimination on whole rows of the (7, 7) matrix that this
    replaced (benchmarks/RESULTS.md, 2026-12-07).
    """
    n = m.shape[0]
    if pattern is not None and (len(pattern) != n or any(len(row) != n for row in pattern)):
        raise ValueError(f"a Jacobian pattern for {len(pattern)} states given to a system of "
                         f"{n}")
    a = [[m[i, j] if i == j or pattern is None or pattern[i][j] else None for j in range(n)]
         for i in range(n)]
    for col in reversed(range(n)):
        inv = 1.0 / a[col][col]
        a[col][col] = inv
        for r in range(col):
            if a[r][col] is None:
                continue
            f = a[r][col] * inv
            a[r][col] = f
            for c in range(col):
                if a[col][c] is not None:
                    a[r][c] = _minus(a[r][c], f * a[col][c])
    return a


def _minus(a, b):
    """a - b, where a None (a structural zero) gives -b, the bits of 0 - b."""
    return -b if a is None else a - b


def solve_factored(a, b):
    """Solve M x = b (``b`` of shape (n,)) with ``factor_small(M)`` (None entries skipped)."""
    n = len(a)
    x = [b[i] for i in range(n)]
    for col in reversed(range(n)):
        for r in range(col):
            if a[r][col] is not None:
                x[r] = x[r] - a[r][col] * x[col]
    for i in range(n):
        acc = x[i]
        for c in range(i):
            if a[i][c] is not None:
                acc = acc - a[i][c] * x[c]
        x[i] = acc * a[i][i]
    return jnp.stack(x)


def with_jacobian_pattern(rates, pattern):
    """``rates`` (a right-hand side whose first or second argument is the state, as the
    integrators take it) marked with the structural nonzeros of its Jacobian in the state:
    ``pattern[i][j]`` False where rate i never reads state j (n x n booleans). The
    Rosenbrock step reads it back (``jacobian_pattern``) and skips those entries of its
    iteration matrix (``factor_small``). A wrapper that drops the mark loses only speed."""
    def marked(*args):
        return rates(*args)

    marked.jacobian_pattern = pattern
    return marked


def jacobian_pattern(rates):
    """The pattern ``with_jacobian_pattern`` gave ``rates``, or None (dense)."""
    return getattr(rates, "jacobian_pattern", None)


def solver_for(m, pattern=None):
    """``solve(b)``: m^-1 b for one small matrix, factored once (``factor_small`` with its
    structural ``pattern``).

    Differentiated, every solve follows dx = m^-1 (db - dm x) with the explicit inverse m^-1
    (from the same factors): forward and reverse mode see matrix-vector products instead of
    the elimination's scalar operations, a smaller and faster gradient program for the fit.
    The inverse is computed only where a derivative needs it (unused otherwise, the compiler
    drops it)."""
    lu = jax.lax.stop_gradient(factor_small(m, pattern))
    eye = jnp.eye(m.shape[0], dtype=m.dtype)
    inverse = jax.lax.stop_gradient(jnp.stack([solve_factored(lu, e) for e in eye], axis=1))
    return lambda b: _solve_with(m, lu, inverse, b)


@jax.custom_jvp
def _solve_with(m, lu, inverse, b):
    """m^-1 b from ``lu = factor_small(m)`` (``solver_for``)."""
    return solve_factored(lu, b)


@_solve_with.defjvp
def _solve_with_jvp(primals, tangents):
    m, lu, inverse, b = primals
    dm, _, _, db = tangents
    x = solve_factored(lu, b)
    return x, inverse @ (db - dm @ x)
