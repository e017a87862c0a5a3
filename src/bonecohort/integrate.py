"""Fixed-step linearly implicit integration inside ``lax.scan`` (pure JAX, one patient).

The remodeling system is stiff (fastest eigenvalues 3-8.5 /day, DESIGN.md section 5): explicit
daily steps blow up. We use the two-stage L-stable Rosenbrock method ROS2 of Verwer, Spee,
Blom & Hundsdorfer (1999) SIAM J Sci Comput 20:1456, gamma = 1 + 1/sqrt(2):

    (I - gamma h J) k1 = f(y_n)
    (I - gamma h J) k2 = f(y_n + h k1) - 2 k1
    y_{n+1} = y_n + h (3/2 k1 + 1/2 k2)

with the exact Jacobian J = df/dy from ``jax.jacfwd``. Inputs (hormone exposure) are averaged
over each step (rate-averaged exposure), so the step is autonomous. A step of one month is
stable and second-order accurate; the tests compare against scipy Radau.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

GAMMA = 1.0 + 2.0 ** -0.5


def _solve_small(m, b):
    """Solve m x = b for one small dense system by unrolled Gaussian elimination.

    Partial pivoting selects rows with one-hot masks, so the whole solve stays elementwise and
    vectorizes across vmapped patients (batched LAPACK calls on tiny matrices are slow on CPU).
    """
    n = b.shape[0]
    rows = [jnp.concatenate([m[r], b[r:r + 1]]) for r in range(n)]
    for col in range(n):
        best = jnp.argmax(jnp.stack([jnp.abs(rows[r][col]) for r in range(col, n)]))
        pick = [best == (r - col) for r in range(col, n)]
        piv = sum(jnp.where(pick[i], rows[r], 0.0) for i, r in enumerate(range(col, n)))
        for i, r in enumerate(range(col + 1, n), start=1):
            rows[r] = jnp.where(pick[i], rows[col], rows[r])
        rows[col] = piv
        for r in range(col + 1, n):
            rows[r] = rows[r] - rows[r][col] / piv[col] * piv
    x = [None] * n
    for r in reversed(range(n)):
        acc = rows[r][n]
        for c in range(r + 1, n):
            acc = acc - rows[r][c] * x[c]
        x[r] = acc / rows[r][r]
    return jnp.stack(x)


def ros2_step(f, y, h):
    """One ROS2 step of size ``h`` for the autonomous system dy/dt = f(y); returns y_{n+1}."""
    fy, jac = f(y), jax.jacfwd(f)(y)
    m = jnp.eye(y.shape[0], dtype=y.dtype) - (GAMMA * h) * jac
    k1 = _solve_small(m, fy)
    k2 = _solve_small(m, f(y + h * k1) - 2.0 * k1)
    return y + h * (1.5 * k1 + 0.5 * k2)


def integrate(rates, y0, inputs, h, steps_per_output: int):
    """Integrate ``dy/dt = rates(y, u)`` with inputs ``u`` constant over each step.

    ``inputs``: pytree whose leaves have leading shape (n_out, steps_per_output), the
    step-averaged inputs. Returns ``(y_final, outputs)`` where ``outputs`` has shape
    (n_out, len(y0)): the state at the end of each output period.
    """

    def step(y, u):
        return ros2_step(lambda z: rates(z, u), y, h), None

    def period(y, u_period):
        y, _ = jax.lax.scan(step, y, u_period)
        return y, y

    return jax.lax.scan(period, y0, inputs)
