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
Steps never cross a *stop*, the times where exposures switch (``protocol.switch_ages``): a
step that would cross one is shortened to land on it, so every step sees constant exposures.
Read-outs are not stops: each is taken inside the step that covers it from the method's
continuous extension (``rosenbrock.dense_value``; order 3 for RODAS4, Hairer & Wanner 1996,
section VI.4), so the output grid does not bound the step size. A method without one (RODAS3)
lands on its read-outs instead: they join the stops. States are normalized (order one at peak
bone mass), so one ``rtol`` with ``atol = rtol`` scales every component alike.

Under ``jax.vmap`` the loop runs until the slowest patient of the batch is done and each
patient keeps its own step size (finished patients are masked), so results do not depend on
the batch a patient is computed in.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bonecohort.solve.rosenbrock import (Tableau, advance_stages, batched_start, combine,
                                         dense_value)


def integrate_adaptive(rates, drive, y0, consts, stops, inputs, tableau: Tableau,
                       rtol: float, h0, max_steps: int, readout, out_times):
    """Integrate B systems ``dy_b/dt = rates(y_b, d(t), c_b)``, ``d(t) = drive(t, u)``, from
    ``stops[0]`` to ``stops[-1]`` with error-controlled steps landing on every stop.

    ``stops`` (S,) sorted times; ``inputs``: pytree of exposures with leading axis S - 1
    (stretch k from ``stops[k]`` to ``stops[k + 1]``); ``h0``: the first step, at the start
    and again after each stop (a switch is a discontinuity: the step grown over a smooth
    stretch would be rejected several times in the transient that follows);
    ``out_times`` (n_out,) sorted times in (stops[0], stops[-1]] where ``readout(y) -> array``
    is taken. Returns ``(y_final, reads (n_out, ...), steps)``; NaN where ``max_steps`` steps
    (accepted and rejected) did not reach the end. (``integrate_segments`` with one segment.)
    """
    y, reads, steps = integrate_segments(rates, drive, y0, consts, stops[None],
                                         jax.tree.map(lambda v: v[None], inputs), tableau,
                                         rtol, h0, max_steps, readout, out_times)
    return y, reads[0], steps[0]


def integrate_segments(rates, drive, y0, consts, stops, inputs, tableau: Tableau,
                       rtol: float, h0, max_steps: int, readout, out_times):
    """``integrate_adaptive`` over G segments in one loop: segment 0 runs from ``y0``, every
    later segment from the state at the end of segment 0 (a life course's natural history,
    then each arm from entry). ``stops`` (G, S); ``inputs`` leaves (G, S - 1, ...).

    A system moves on to its next segment as soon as it finishes one, so under ``jax.vmap``
    the loop runs for the largest *total* number of steps in the batch, not the sum over
    segments of each segment's slowest system (on the default study 87 against 110 steps of
    4,096 patients, benchmarks/RESULTS.md). Each segment has its own ``max_steps``.
    Returns ``(y at the end of segment 0, reads (G, n_out, ...), steps (G,))``; a segment that
    did not reach its end reads NaN (segment 0: the returned state too).
    """
    if not tableau.e:
        raise ValueError(f"{tableau.name} has no embedded error estimate: use rodas3 or rodas4")
    restart = jnp.ones(stops.shape, bool)  # a stop where the step restarts from h0
    if not tableau.dense:
        stops, inputs, restart = jax.vmap(_with_read_stops, (0, 0, None))(stops, inputs,
                                                                            out_times)
    problem = _Problem(rates, drive, consts, tableau, rtol, jnp.asarray(h0, y0.dtype), readout,
                       out_times)
    n_seg, n_stops = stops.shape
    segs = jnp.arange(n_seg)

    def bank_reads(bank, reads, ended, g):
        """The read-outs of a segment that just ended, into its row of ``bank``."""
        into = (ended & (segs == g - 1)).reshape((-1,) + (1,) * (bank.ndim - 1))
        return jnp.where(into, reads[None], bank)

    def body(state):
        t, y, h, i, n, g, reads, bank, ended, y_branch, steps, failed = state
        # banked from the carried array: selected into G rows where they are computed, XLA
        # would evaluate the continuous extension G times
        bank = bank_reads(bank, reads, ended, g)
        t, y, h, i, reads = _attempt_step(problem, stops[g], restart[g],
                                          jax.tree.map(lambda v: v[g], inputs), t, y, h, i,
                                          jnp.where(ended, 0.0, reads))
        n = n + 1
        # the segment ends on its last stop, or without reaching it after max_steps
        end = (i >= n_stops) | (n >= max_steps)
        fail = end & (i < n_stops)
        y_branch = jnp.where(end & (g == 0), jnp.where(fail, jnp.nan, y), y_branch)
        steps = jnp.where(end & (segs == g), n, steps)
        failed = failed | (fail & (segs == g))
        g = jnp.where(end, g + 1, g)
        t_start = stops[jnp.minimum(g, n_seg - 1), 0]
        return (jnp.where(end, t_start, t), jnp.where(end, y_branch, y),
                jnp.where(end, problem.h0, h), jnp.where(end, 1, i), jnp.where(end, 0, n), g,
                reads, bank, end, y_branch, steps, failed)

    reads0 = jnp.zeros(out_times.shape + jax.eval_shape(readout, y0).shape, y0.dtype)
    start = (stops[0, 0],) + batched_start(stops[0, 0], (
        y0, problem.h0, jnp.asarray(1), jnp.asarray(0), jnp.asarray(0), reads0,
        jnp.zeros((n_seg,) + reads0.shape, reads0.dtype), jnp.asarray(False), y0,
        jnp.zeros((n_seg,), jnp.asarray(0).dtype), jnp.zeros((n_seg,), bool)))
    *_, g, reads, bank, ended, y_branch, steps, failed = jax.lax.while_loop(
        lambda state: state[5] < n_seg, body, start)
    bank = bank_reads(bank, reads, ended, g)
    bank = jnp.where(failed.reshape((-1,) + (1,) * (bank.ndim - 1)), jnp.nan, bank)
    return y_branch, bank, steps


class _Problem(NamedTuple):
    """What every step of ``integrate_segments`` shares (its arguments of the same names)."""

    rates: object
    drive: object
    consts: object
    tableau: Tableau
    rtol: float
    h0: object
    readout: object
    out_times: object


def _attempt_step(p: _Problem, stops, restart, inputs, t, y, h, i, reads):
    """One attempted step from (t, y) of size h towards ``stops[i]`` within one segment
    (``stops`` (S,), ``restart`` (S,), ``inputs`` leaves (S - 1, ...)): the state after it
    (t, y, h, i, reads), unchanged but for a smaller h where the step is rejected."""
    q = float(p.tableau.error_order)
    gap = stops[i] - t
    land = h >= gap
    empty = gap <= 0  # two stops at the same time
    hs = jnp.where(empty, 1.0, jnp.where(land, gap, h))
    u = jax.tree.map(lambda v: v[jnp.maximum(i - 1, 0)], inputs)
    y1, ks, err = _attempt(p, t, y, hs, u)
    ok = empty | (err <= 1.0)
    y1 = jnp.where(empty, y, y1)
    factor = jnp.clip(0.9 * jnp.where(err > 0, err, 1e-10) ** (-1.0 / q), 0.2, 5.0)
    factor = jnp.where(jnp.isfinite(err), factor, 0.2)
    arrived = ok & (land | empty)
    t_new = jnp.where(arrived, stops[i], jnp.where(ok, t + hs, t))
    h_next = jnp.where(arrived & restart[i], jnp.minimum(hs * factor, p.h0),
                       jnp.where(arrived, jnp.maximum(hs * factor, h), hs * factor))
    h_next = jnp.where(empty, h, h_next)
    return (t_new, jnp.where(ok, y1, y), h_next, jnp.where(arrived, i + 1, i),
            _read(p, reads, t, hs, t_new, (y, y1, ks)))


def _attempt(p: _Problem, t, y, h, u):
    """One step of the B systems from (t, y): y_{n+1}, the stage increments and the error
    norm (module docstring)."""
    y1, ks = advance_stages(p.rates, p.drive, y, p.consts, t, h, u, p.tableau)
    scale = p.rtol + p.rtol * jnp.maximum(jnp.abs(y), jnp.abs(y1))
    return y1, ks, jnp.sqrt(jnp.mean(jnp.square(combine(p.tableau.e, ks) / scale)))


def _read(p: _Problem, reads, t, hs, t_new, step):
    """``reads`` with the read-outs in (t, t_new] taken from the accepted step (``step`` =
    (y_n, y_{n+1}, stage increments)) by its continuous extension; without one, read-outs
    are stops, so each falls on the step's end."""
    y, y1, ks = step
    inside = (p.out_times > t) & (p.out_times <= t_new)
    if p.tableau.dense:
        s = jnp.clip((p.out_times - t) / hs, 0.0, 1.0)
        values = jax.vmap(lambda sj: p.readout(dense_value(p.tableau, y, y1, ks, sj)))(s)
    else:
        values = p.readout(y1)[None]
    return jnp.where(inside.reshape((-1,) + (1,) * (reads.ndim - 1)), values, reads)


def _with_read_stops(stops, inputs, out_times):
    """``stops`` with the ``out_times`` between its ends merged in (sorted; the others
    clipped to an end: empty stretches), ``inputs`` repeated for each piece of a split
    stretch, and which stops are the original ones (the step restarts only there): for a
    method that must land on its read-outs."""
    times = jnp.concatenate([stops, jnp.clip(out_times, stops[0], stops[-1])])
    order = jnp.argsort(times, stable=True)
    merged = times[order]
    stretch = jnp.clip(jnp.searchsorted(stops, merged[:-1], side="right") - 1, 0,
                       stops.shape[0] - 2)
    return merged, jax.tree.map(lambda v: v[stretch], inputs), order < stops.shape[0]
