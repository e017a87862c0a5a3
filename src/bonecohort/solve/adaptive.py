"""Error-controlled Rosenbrock steps that land on given times (pure JAX; one patient, vmapped
outside).

A fixed grid must be fine enough for the fastest stretch of a life course (the menopause, the
weeks after a treatment starts or stops, when the remodeling space opens or closes) and so
over-resolves the decades in between. Here every step is sized from the embedded error
estimate of the stiffly accurate RODAS methods (``Tableau.e``: the last stage's increment,
Hairer & Wanner 1996, section IV.8 and VI.4):

    err = RMS_i( est_i / (atol + rtol max(|y_n,i|, |y_n+1,i|)) ),   accepted if err <= 1,
    h_new = h min(5, max(0.2, 0.9 err^(-1/q)))                        (q = ``error_order``)

(the standard controller, Hairer & Wanner 1996, section IV.8 eq. 8.21 and 8.24 for the norm).
Steps never cross a *stop*: the times where exposures switch (``protocol.switch_ages``) and
where results are read out; a step that would cross one is shortened to land on it, so every
step sees constant exposures and every read-out is a step end. States are normalized (order
one at peak bone mass), so one ``rtol`` with ``atol = rtol`` scales every component alike.

Under ``jax.vmap`` the loop runs until the slowest patient of the batch is done and each
patient keeps its own step size (finished patients are masked), so results do not depend on
the batch a patient is computed in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bonecohort.solve.rosenbrock import Tableau, batched_start, driven_step, step_drive


def integrate_adaptive(rates, drive, y0, consts, stops, outputs, inputs, tableau: Tableau,
                       rtol: float, h0, max_steps: int, readout, n_out: int):
    """Integrate B systems ``dy_b/dt = rates(y_b, d(t), c_b)``, ``d(t) = drive(t, u)``, from
    ``stops[0]`` to ``stops[-1]`` with error-controlled steps landing on every stop.

    ``stops`` (S,) sorted times; ``outputs`` (S,) int: the read-out taken on landing at that
    stop, or -1; ``inputs``: pytree of exposures with leading axis S - 1 (stretch k from
    ``stops[k]`` to ``stops[k + 1]``); ``h0``: first step; ``readout(y) -> array``.
    Returns ``(y_final, reads (n_out, ...), steps)``; NaN where ``max_steps`` steps (accepted
    and rejected) did not reach the end.
    """
    if not tableau.e:
        raise ValueError(f"{tableau.name} has no embedded error estimate: use rodas3 or rodas4")
    q = float(tableau.error_order)
    n_stops = stops.shape[0]
    reads0 = jnp.zeros((n_out,) + jax.eval_shape(readout, y0).shape, y0.dtype)

    def attempt(t, y, h, u):
        d = step_drive(lambda s: drive(s, u), t, h, tableau)
        y1, est = jax.vmap(lambda yb, cb: driven_step(lambda z, db: rates(z, db, cb), yb, h, d,
                                                      tableau, with_error=True))(y, consts)
        scale = rtol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y1))
        return y1, jnp.sqrt(jnp.mean(jnp.square(est / scale)))

    def body(state):
        t, y, h, i, reads, n = state
        gap = stops[i] - t
        land = h >= gap
        empty = gap <= 0  # two stops at the same time
        hs = jnp.where(empty, 1.0, jnp.where(land, gap, h))
        u = jax.tree.map(lambda v: v[jnp.maximum(i - 1, 0)], inputs)
        y1, err = attempt(t, y, hs, u)
        ok = empty | (err <= 1.0)
        y1 = jnp.where(empty, y, y1)
        factor = jnp.clip(0.9 * jnp.where(err > 0, err, 1e-10) ** (-1.0 / q), 0.2, 5.0)
        factor = jnp.where(jnp.isfinite(err), factor, 0.2)
        arrived = ok & (land | empty)
        slot = jnp.where(arrived, outputs[i], -1)
        hit = (jnp.arange(n_out) == slot).reshape((-1,) + (1,) * (reads.ndim - 1))
        reads = jnp.where(hit, readout(y1)[None], reads)
        h_next = jnp.where(empty, h, hs * factor)
        h_next = jnp.where(arrived & ~empty, jnp.maximum(h_next, h), h_next)
        return (jnp.where(arrived, stops[i], jnp.where(ok, t + hs, t)), jnp.where(ok, y1, y),
                h_next, jnp.where(arrived, i + 1, i), reads, n + 1)

    def cond(state):
        return (state[3] < n_stops) & (state[5] < max_steps)

    start = (stops[0],) + batched_start(stops[0], (y0, jnp.asarray(h0, y0.dtype),
                                                    jnp.asarray(1), reads0, jnp.asarray(0)))
    _, y, _, i, reads, n = jax.lax.while_loop(cond, body, start)
    done = i >= n_stops
    return (jnp.where(done, y, jnp.nan), jnp.where(done, reads, jnp.nan), n)
