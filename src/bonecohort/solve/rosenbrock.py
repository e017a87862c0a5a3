"""Fixed-step linearly implicit (Rosenbrock) integration inside ``lax.scan`` (pure JAX).

The remodeling system is stiff (fastest eigenvalues of the Jacobian 3-8.5 /day): explicit
daily steps blow up. A Rosenbrock method needs one Jacobian and one linear system per step
and no Newton iteration, so a fixed step of weeks is stable, cheap and vectorizes cleanly.

Non-autonomous form (Hairer & Wanner 1996, Solving ODEs II, section IV.7, eq. 7.4'; the
coefficient layout of KPP, Sandu et al. 1997 Atmos Environ 31:3459, which writes every method
with a diagonal gamma and no matrix-vector products inside the stages):

    G = I/(h gamma) - J,                J = df/dy(t_n, y_n)
    G K_i = f(t_n + alpha_i h, y_n + sum_j A_ij K_j) + sum_j C_ij/h K_j + gamma_i h df/dt
    y_{n+1} = y_n + sum_j M_j K_j

J comes from ``jax.jacfwd`` and df/dt from one forward-mode tangent, both exact. The default
method is RODAS3 (Sandu et al. 1997; 4 stages, 3 function evaluations, order 3, L-stable
and stiffly accurate: y_{n+1} is the last stage). Stiffly accurate methods keep their order
when the fast cell populations sit on a slowly moving quasi-steady manifold, where the
two-stage ROS2 (Verwer et al. 1999 SIAM J Sci Comput 20:1456) drops to about order 1.5 on this
model. Measured against Radau (rtol 1e-9) on treated and untreated women over 40 years, max
relative BV error at 12 / 24 / 48 steps a year: ROS2 7.8e-4 / 2.9e-4 / 1.1e-4, RODAS3
1.4e-4 / 6.6e-5 / 1.1e-5, RODAS4 (Hairer & Wanner 1996, section VI.4; 6 stages, order 4)
9.0e-5 / 1.2e-5 / 4e-7. RODAS3 at a monthly step is the fastest of the three at float32's
useful accuracy; ``solver`` in a study config picks another.

Inputs that change only at step boundaries (treatments, snapped to whole months) are passed
per step. Smooth functions of time that do not depend on the state (endogenous hormones) are a
*drive* d(t): ``integrate_driven`` evaluates it once per step at the method's distinct stage
times (two for RODAS3: t_n and t_n + h) and differentiates it once at t_n, outside the
Jacobian and the stages, so the method sees it to full order and the stiff solve never
recomputes it; the sites of a patient share it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bonecohort.solve.elimination import jacobian_pattern, solver_for, with_jacobian_pattern


class Tableau(NamedTuple):
    """Rosenbrock coefficients in the KPP layout (see module docstring); plain Python floats."""

    name: str
    gamma: float
    alpha: tuple  # (s,)
    gammas: tuple  # (s,) gamma_i = sum_j gamma_ij
    a: tuple  # lower triangle rows: a[i] has i entries
    c: tuple  # lower triangle rows: c[i] has i entries
    m: tuple  # (s,)
    e: tuple = ()  # (s,) weights of the local error estimate (empty: no embedded method)
    error_order: int = 0  # order of that estimate's leading term (step-size exponent 1/it)
    dense: tuple = ()  # two rows (s,) of a continuous extension (``dense_value``); () none


_G2 = 1.0 + 2.0 ** -0.5

ROS2 = Tableau(
    "ros2", _G2, (0.0, 1.0), (_G2, -_G2),
    a=((), (1.0 / _G2,)), c=((), (-2.0 / _G2,)), m=(1.5 / _G2, 0.5 / _G2))

# RODAS4, Hairer & Wanner (1996), transformed to the KPP layout (Sandu et al. 1997).
_A_LAST = (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950)
RODAS4 = Tableau(
    "rodas4", 0.25,
    alpha=(0.0, 0.386, 0.210, 0.630, 1.0, 1.0),
    gammas=(0.25, -0.1043, 0.1035, -0.03620000000000023, 0.0, 0.0),
    a=((),
       (1.544,),
       (0.9466785280815826, 0.2557011698983284),
       (3.314825187068521, 2.896124015972201, 0.9986419139977817),
       _A_LAST,
       _A_LAST + (1.0,)),
    c=((),
       (-5.6688,),
       (-2.430093356833875, -0.2063599157091915),
       (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
       (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160),
       (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
        -6.058818238834054)),
    m=_A_LAST + (1.0, 1.0),
    e=(0.0, 0.0, 0.0, 0.0, 0.0, 1.0), error_order=4,
    # continuous extension of order 3 (Hairer & Wanner 1996, section VI.4; the D coefficients
    # of their code RODAS, method 1, on the same stage increments K_1 .. K_5)
    dense=((10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823,
            1.025137723295662, 0.0),
           (-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386,
            -6.594389125716872, 0.0)))

# RODAS3, Sandu et al. (1997): 4 stages (3 function evaluations), order 3, stiffly accurate.
# Both RODAS methods are stiffly accurate: y_{n+1} = Y_s + K_s, and the last stage's argument
# Y_s is an embedded solution one order lower (Hairer & Wanner 1996, section VI.4), so the
# local error estimate is the last stage's increment K_s (weights ``e``).
RODAS3 = Tableau(
    "rodas3", 0.5,
    alpha=(0.0, 0.0, 1.0, 1.0),
    gammas=(0.5, 1.5, 0.0, 0.0),
    a=((), (0.0,), (2.0, 0.0), (2.0, 0.0, 1.0)),
    c=((), (4.0,), (1.0, -1.0), (1.0, -1.0, -8.0 / 3.0)),
    m=(2.0, 0.0, 1.0, 1.0),
    e=(0.0, 0.0, 0.0, 1.0), error_order=3)

METHODS = {t.name: t for t in (ROS2, RODAS3, RODAS4)}


class Drive(NamedTuple):
    """State-independent inputs of one step: their values at the method's distinct stage
    times t_n + alpha h (leading axis, in ``stage_alphas`` order) and their time derivative at
    t_n (for the non-autonomous term gamma_i h df/dt). Pytrees of any structure."""

    stages: object
    slope: object


def batched_start(anchor, carry):
    """``carry`` (a loop's start values) with an exact zero computed from the scalar
    ``anchor`` added to every leaf: values unchanged (``anchor`` finite), but under
    ``jax.vmap`` every start value is batched wherever ``anchor`` is. vmap's rule for
    ``while_loop`` and ``scan`` otherwise re-batches the loop body until the carry's batching
    settles, one more pass over the body for each start value that the body makes batched,
    at each vmap level: tracing the default study's chunk program took 2.6-3.0 s before and
    1.3-1.5 s after (benchmarks/RESULTS.md)."""
    zero = jnp.zeros((), anchor.dtype) * anchor
    return jax.tree.map(lambda v: v + zero.astype(jnp.result_type(v)), carry)


def stage_alphas(tableau: Tableau) -> tuple:
    """Distinct stage times (fractions of the step) at which a method evaluates f."""
    return tuple(sorted(set(tableau.alpha)))


def step_drive(drive, t, h, tableau: Tableau) -> Drive:
    """Evaluate ``drive(t)`` (a pytree of arrays) at the stage times of the step from ``t``
    and differentiate it at ``t`` (one forward-mode tangent)."""
    d0, slope = jax.jvp(drive, (t,), (jnp.ones_like(t),))
    later = [drive(t + a * h) for a in stage_alphas(tableau)[1:]]
    return Drive(jax.tree.map(lambda *v: jnp.stack(v), d0, *later), slope)


def driven_step(g, y, h, drive: Drive, tableau: Tableau = RODAS3, pattern=None):
    """One step of size ``h`` of dy/dt = g(y, d(t)) with ``drive`` the step's inputs d
    (``step_drive``); returns y_{n+1} (``driven_stages`` without the stages)."""
    return driven_stages(g, y, h, drive, tableau, pattern)[0]


def driven_stages(g, y, h, drive: Drive, tableau: Tableau, pattern=None):
    """``driven_step``'s y_{n+1} and its stage increments K_1 .. K_s (a list).

    df/dt = dg/dd . d'(t), one tangent of g in its inputs. The iteration matrix is factored
    once per step (``factor_small``, skipping the entries that ``pattern``, the structural
    nonzeros of g's Jacobian, says are zero); every stage is then two triangular solves.
    """
    n = y.shape[0]
    alphas = stage_alphas(tableau)
    at = [jax.tree.map(lambda v, k=k: v[k], drive.stages) for k in range(len(alphas))]
    jac = jax.jacfwd(lambda z: g(z, at[0]))(y)
    f0, dfdt = jax.jvp(lambda d: g(y, d), (at[0],), (drive.slope,))
    solve = solver_for(jnp.eye(n, dtype=y.dtype) / (h * tableau.gamma) - jac, pattern)
    ks = []
    for i in range(len(tableau.m)):
        if tableau.alpha[i] == 0.0 and not any(tableau.a[i]):
            fi = f0  # the stage sits at (t_n, y_n)
        else:
            fi = g(y + combine(tableau.a[i], ks), at[alphas.index(tableau.alpha[i])])
        # each K scaled by c/h before summing (not ``combine(...) / h``): the same arithmetic
        # as the fixed-step results the fit and the committed tables were computed with
        rhs = fi + sum(((c / h) * k for c, k in zip(tableau.c[i], ks) if c != 0.0), 0.0)
        if tableau.gammas[i] != 0.0:
            rhs = rhs + (tableau.gammas[i] * h) * dfdt
        ks.append(solve(rhs))
    return y + combine(tableau.m, ks), ks


def combine(weights, ks):
    """sum_j weights_j K_j over the nonzero weights (0 if none)."""
    return sum((w * k for w, k in zip(weights, ks) if w != 0.0), 0.0)


def dense_value(tableau: Tableau, y0, y1, ks, s):
    """The step's continuous extension at the fraction ``s`` in [0, 1] of the step:
    (1 - s) y_n + s (y_{n+1} + (1 - s) (D_1 + s D_2)), D_r = sum_j dense[r]_j K_j (Hairer &
    Wanner 1996, section VI.4, as in their code RODAS); order 3 for RODAS4. A tableau without
    ``dense`` rows gives the straight line, exact at s = 0 and s = 1 only."""
    d1, d2 = ((combine(row, ks) for row in tableau.dense) if tableau.dense else (0.0, 0.0))
    return (1.0 - s) * y0 + s * (y1 + (1.0 - s) * (d1 + s * d2))


def rosenbrock_step(f, t, y, h, tableau: Tableau = RODAS4):
    """One step of size ``h`` of dy/dt = f(t, y) from (t, y); returns y_{n+1} (time is the
    step's only input: ``driven_step`` with d(t) = t)."""
    return driven_step(lambda z, s: f(s, z), y, h, step_drive(lambda s: s, t, h, tableau),
                       tableau, jacobian_pattern(f))


def advance_stages(rates, drive, y, consts, t, h, u, tableau: Tableau):
    """One step of B systems that share the drive (see ``integrate_driven``): y_{n+1} (B, n)
    and the stage increments of each system (``driven_stages``; ``rates`` may carry its
    Jacobian's pattern, ``elimination.with_jacobian_pattern``)."""
    d = step_drive(lambda s: drive(s, u), t, h, tableau)
    pattern = jacobian_pattern(rates)
    return jax.vmap(lambda yb, cb: driven_stages(lambda z, db: rates(z, db, cb), yb, h, d,
                                                 tableau, pattern))(y, consts)


def _advance(rates, drive, y, consts, t, h, u, tableau: Tableau):
    """y_{n+1} of ``advance_stages``."""
    return advance_stages(rates, drive, y, consts, t, h, u, tableau)[0]


def integrate_driven(rates, drive, y0, consts, t0, inputs, h, steps_per_output: int,
                     tableau: Tableau = RODAS3):
    """Integrate B systems ``dy_b/dt = rates(y_b, d(t), c_b)`` that share the inputs
    ``d(t) = drive(t, u)`` on the grid t0 + k h, k = 0 .. n_out*spo.

    The inputs do not depend on the state, so they are evaluated once per step at its stage
    times (``step_drive``), outside the Jacobian and the stages, and shared by the B systems
    (the sites of one patient). ``y0``: (B, n); ``consts``: pytree with leading axis B;
    ``inputs``: pytree whose leaves have leading shape (n_out, steps_per_output), values held
    constant over each step (they may only change at step boundaries). ``t0``, ``h``: scalars
    in the time unit of ``rates``. Returns ``(y_final, outputs)``, ``outputs`` of shape
    (n_out, B, n): the states at the end of each output period.
    """
    n_out = jax.tree.leaves(inputs)[0].shape[0]
    k = jnp.arange(n_out * steps_per_output).reshape(n_out, steps_per_output)
    times = t0 + k.astype(y0.dtype) * h

    def step(y, tu):
        t, u = tu
        return _advance(rates, drive, y, consts, t, h, u, tableau), None

    def period(y, tu_period):
        y, _ = jax.lax.scan(step, y, tu_period)
        return y, y

    return jax.lax.scan(period, y0, (times, inputs))


def integrate_steps(rates, drive, y0, consts, t, h, inputs, tableau: Tableau = RODAS3,
                    out_steps=None, readout=None, live=None):
    """``integrate_driven`` on a grid of unequal steps: step k runs from ``t[k]`` for ``h[k]``
    (zero-length steps leave the state as it is), ``inputs`` leaves have leading axis steps.

    With ``out_steps`` (n_out,) int and ``readout(y) -> array``, also returns
    ``readout`` of the state after each step ``out_steps[j]`` (n_out, ...), captured in the
    loop (no per-step history is kept). Returns ``(y_final, outputs or None)``.

    ``live`` (an int scalar that ``vmap`` does not batch: the same for every patient): only
    steps ``k < live`` run (``_live_steps``), so one compiled program serves grids padded to a
    common length at about the cost of the live steps (fit/trial_program.py); the read-outs
    are then gathered from the per-step history of ``readout``.
    """
    def advance(y, tk, hk, u):
        ok = hk > 0
        y1 = _advance(rates, drive, y, consts, tk, jnp.where(ok, hk, 1.0), u, tableau)
        return jnp.where(ok, y1, y)

    if live is not None:
        y, history = _live_steps(advance, readout, y0, t, h, inputs, live)
        return y, None if out_steps is None else history[out_steps]

    def step(carry, k_thu):
        y, outs = carry
        k, tk, hk, u = k_thu
        y1 = advance(y, tk, hk, u)
        if outs is not None:
            hit = out_steps == k
            outs = jnp.where(hit.reshape((-1,) + (1,) * (outs.ndim - 1)), readout(y1)[None],
                             outs)
        return (y1, outs), None

    outs0 = None if out_steps is None else jnp.zeros(
        (out_steps.shape[0],) + jax.eval_shape(readout, y0).shape, y0.dtype)
    k = jnp.arange(t.shape[0])
    start = batched_start(t[0], (y0, outs0))
    (y, outs), _ = jax.lax.scan(step, start, (k, t, h, inputs))
    return y, outs


# Steps per block of ``_live_steps`` (a year of monthly steps). Under reverse mode a skipped
# branch must still write the residuals that a live one keeps for the gradient (zeros, one
# array per intermediate of the step and its Jacobian): ~1 ms per skipped step of 128
# patients on the 2-core CPU. Blocks are checkpointed, so what a block keeps is its inputs
# and a skipped block costs next to nothing; the live blocks' forward pass runs again in the
# gradient (benchmarks/RESULTS.md, 2026-12-07).
LIVE_BLOCK = 12


def _live_steps(advance, readout, y0, t, h, inputs, live):
    """Steps ``k < live`` of ``advance(y, t_k, h_k, u_k)``, in checkpointed blocks of
    ``LIVE_BLOCK``: a block that starts at or after ``live`` is skipped by ``lax.cond`` (a
    branch, not a select, where ``live`` is not batched), steps after ``live`` inside a block
    are given length 0.
    Returns the final state and the per-step history of ``readout`` (steps, ...) or None."""
    n = t.shape[0]
    blocks = -(-n // LIVE_BLOCK)

    def split(x):
        x = jnp.pad(x, [(0, blocks * LIVE_BLOCK - n)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape((blocks, LIVE_BLOCK) + x.shape[1:])

    k = jnp.arange(blocks * LIVE_BLOCK).reshape(blocks, LIVE_BLOCK)
    xs = jax.tree.map(split, (t, h, inputs))
    read = readout or (lambda y: jnp.zeros((0,), y.dtype))

    def one(y, k_thu):
        kk, tk, hk, u = k_thu
        y1 = advance(y, tk, jnp.where(kk < live, hk, 0.0), u)
        return y1, read(y1)

    @jax.checkpoint
    def run(y, kb, xb):
        return jax.lax.scan(one, y, (kb,) + xb)

    def skip(y, kb, xb):
        r = read(y)
        return y, jnp.broadcast_to(r, (LIVE_BLOCK,) + r.shape)

    def block(y, kx):
        kb, xb = kx
        return jax.lax.cond(kb[0] < live, run, skip, y, kb, xb)

    y, history = jax.lax.scan(block, batched_start(t[0], y0), (k, xs))
    history = history.reshape((blocks * LIVE_BLOCK,) + history.shape[2:])
    return y, history if readout is not None else None


def integrate(rates, y0, t0, inputs, h, steps_per_output: int, tableau: Tableau = RODAS3):
    """``integrate_driven`` for one system ``dy/dt = rates(t, y, u)``: ``y0`` (n,), outputs
    (n_out, n)."""
    one = with_jacobian_pattern(lambda z, d, _: rates(d[0], z, d[1]), jacobian_pattern(rates))
    y, ys = integrate_driven(one, lambda t, u: (t, u),
                             y0[None], jnp.zeros((1,), y0.dtype), t0, inputs, h,
                             steps_per_output, tableau)
    return y[0], ys[:, 0]
