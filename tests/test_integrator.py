"""The fixed-step Rosenbrock integrator against scipy Radau on random patients."""

from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest

import jax

from bonecohort.solve.adaptive import integrate_adaptive, integrate_segments
from bonecohort.solve.rosenbrock import (RODAS3, RODAS4, ROS2, dense_value, driven_stages,
                                         integrate_steps, rosenbrock_step, step_drive)
from bonecohort.population import PopulationSpec, sample_patient
from bonecohort.exposure.protocol import Arm, Regimen
from bonecohort.fit.parameters import default_model
from bonecohort.solve.life_course import Grid
from bonecohort import cohort
from bonecohort.cohort import (ACCELERATOR_BLOCK, CPU_BLOCK, LANES, block_size, chunk_ids,
                               make_chunk_runner)

from reference import make_radau

# Women and men, some with surgical menopause or hypogonadism; arms that exercise every
# exposure (estradiol, testosterone, aromatase inhibition, SERM, IGF-1) and early stops.
SPEC = PopulationSpec(age_min=45.0, age_max=55.0, male_fraction=0.3, surgical_fraction=0.3,
                      hypogonadal_fraction=0.5)
GRID = Grid(prefix_years=25, horizon_years=15)  # 40 simulated years, menopause included
ARMS = (
    Arm("none"),
    Arm("E2", (Regimen("estradiol", 50.0, "transdermal", "fmp", 0.0, 5.0),)),
    Arm("mix", (Regimen("testosterone", 50.0, "gel", "entry", 1.0, 6.0, persistence=0.2),
                Regimen("anastrozole", 1.0, "oral", "entry", 2.0, 3.0),
                Regimen("raloxifene", 60.0, "oral", "entry", 4.0, 8.0, adherence=0.7),
                Regimen("cjc_1295", 1.0, "subcutaneous", "entry", 0.0, 2.0))),
)
N = 60  # 3 arms x 2 sites, 10 patients each (Radau is the slow part)


def convergence_ratios(tableau, stiffness):
    """Error ratios on halving the step for y' = -L (y - sin t) + cos t (exact: sin t), a
    non-autonomous test with a stiff relaxation to a moving manifold (Prothero-Robinson)."""
    f = lambda t, y: -stiffness * (y - jnp.sin(t)) + jnp.cos(t)  # noqa: E731
    errs = []
    for n in (20, 40, 80):
        h = 2.0 / n
        y = jnp.zeros(1, jnp.float64)
        for i in range(n):
            y = rosenbrock_step(f, jnp.float64(i * h), y, h, tableau)
        errs.append(abs(float(y[0]) - np.sin(2.0)))
    return errs[0] / errs[1], errs[1] / errs[2]


@pytest.mark.parametrize("tableau,order", [(ROS2, 2), (RODAS3, 3), (RODAS4, 4)])
def test_classical_order_on_a_mildly_stiff_problem(tableau, order):
    for ratio in convergence_ratios(tableau, 1.0):
        assert 0.75 * 2 ** order < ratio < 1.25 * 2 ** order


def dense_errors(tableau, stiffness, fractions=(0.25, 0.5, 0.75)):
    """Error of the continuous extension inside one step from the exact value at t = 0.3, on
    the same Prothero-Robinson problem, for h = 0.2, 0.1, 0.05: (steps, fractions)."""
    f = lambda t, y: -stiffness * (y - jnp.sin(t)) + jnp.cos(t)  # noqa: E731
    t0, rows = 0.3, []
    for h in (0.2, 0.1, 0.05):
        y0 = jnp.array([np.sin(t0)], jnp.float64)
        y1, ks = driven_stages(lambda z, s: f(s, z), y0, h,
                               step_drive(lambda s: s, jnp.float64(t0), h, tableau), tableau)
        assert float(dense_value(tableau, y0, y1, ks, 1.0)[0]) == float(y1[0])
        rows.append([abs(float(dense_value(tableau, y0, y1, ks, s)[0]) - np.sin(t0 + s * h))
                     for s in fractions])
    return np.array(rows)


def test_live_steps_run_exactly_the_unpadded_grid():
    """``integrate_steps(..., live=n)`` on a grid padded with real (non-zero) steps gives the
    state, read-outs and gradient of the first n steps alone: the padding is skipped, in and
    across the checkpointed blocks (n = 30 is not a multiple of the block)."""
    f = lambda z, d, c: -c * (z - jnp.sin(d)) + jnp.cos(d)  # noqa: E731 (Prothero-Robinson)
    n, pad, h = 30, 17, 0.05
    t = jnp.arange(n + pad) * h
    steps, u = jnp.full(n + pad, h), jnp.zeros(n + pad)
    outs = jnp.array([4, 11, 29])

    def run(c, live, m):
        return integrate_steps(f, lambda s, v: s + v, jnp.zeros((2, 1)), c, t[:m], steps[:m],
                               u[:m], RODAS3, outs, lambda y: y[:, 0], live)

    c = jnp.array([10.0, 1000.0])
    y_ref, o_ref = run(c, None, n)
    y_live, o_live = run(c, n, n + pad)
    np.testing.assert_allclose(y_live, y_ref, rtol=1e-13)
    np.testing.assert_allclose(o_live, o_ref, rtol=1e-13)
    assert not np.allclose(run(c, None, n + pad)[0], y_ref)  # the padding would move it
    g_ref = jax.grad(lambda c: run(c, None, n)[1].sum())(c)
    g_live = jax.grad(lambda c: run(c, n, n + pad)[1].sum())(c)
    assert np.all(np.abs(g_ref) > 0)
    np.testing.assert_allclose(g_live, g_ref, rtol=1e-12)


def test_dense_output_of_rodas4_has_order_three():
    """Read-outs inside a controlled step come from RODAS4's continuous extension (order 3):
    its local error inside the step shrinks as h^4, ~16x on halving h (measured 13-19); the
    straight line that a method without one would give shrinks as h^2 only (~4x)."""
    err = dense_errors(RODAS4, 1.0)
    ratios = err[:-1] / err[1:]
    assert np.all(ratios > 11.0) and np.all(ratios < 24.0), ratios
    line = dense_errors(RODAS4._replace(dense=()), 1.0)
    assert np.all(line[:-1] / line[1:] < 5.0)


def case(i):
    """Patient i is checked on arm i % 3 and site (i // 3) % 2: every arm-site pair 10 times."""
    return i % 3, (i // 3) % 2


@pytest.fixture(scope="module")
def reference():
    """Radau on the model's own definition: exposures constant over each month (switches
    snapped to months), whatever grid the engine then uses."""
    radau = make_radau(default_model(), sample_patient(11, 0, SPEC, jnp.float64))
    monthly = GRID._replace(steps_per_year=12, prefix_steps_per_year=12)
    rows = []
    for i in range(N):
        arm, site = case(i)
        rows.append(radau(sample_patient(11, i, SPEC, jnp.float64), ARMS[arm], monthly, site))
    return np.array(rows)  # (N, 1 + years)


# Within 0.1 % in float32: RODAS3 at the monthly fixed step (measured 3.8e-4 here; 2.0e-3 for
# one woman of the digest study after estradiol stops, README Numerics) and RODAS4 with
# error-controlled steps at the studies' default rtol 1e-4 (the default of studies); RODAS3
# controlled at 1e-4 (measured 1.8e-4); float64 at 48 fixed steps a year within 0.03 %, a
# bound set by the natural-history prefix at 4 steps a year, and RODAS3 controlled to rtol
# 1e-5 within 1e-4 (measured 4.5e-5).
@pytest.mark.parametrize("dtype,steps", [(jnp.float32, dict(steps_per_year=12)),
                                         (jnp.float32, dict(rtol=1e-4, solver="rodas4")),
                                         (jnp.float32, dict(rtol=1e-4)),
                                         (jnp.float64, dict(steps_per_year=48)),
                                         (jnp.float64, dict(rtol=1e-5))])
def test_integration_matches_radau(reference, dtype, steps):
    tol = {(jnp.float32, 12): 1e-3, (jnp.float32, 0): 1e-3, (jnp.float64, 48): 3e-4,
           (jnp.float64, 0): 1e-4}[(dtype, steps.get("steps_per_year", 0))]
    grid = GRID._replace(**steps)
    run = make_chunk_runner(11, SPEC, default_model(), ARMS, grid, dtype)
    life = run(chunk_ids(0, N, N)).life
    assert life.bmd_rel.dtype == dtype
    bmd_entry = np.asarray(life.bmd_entry, np.float64)  # (N, sites)
    bmd_rel = np.asarray(life.bmd_rel, np.float64)  # (N, arms, sites, years)
    ours = np.array([np.concatenate([[bmd_entry[i, s]], bmd_entry[i, s] * bmd_rel[i, a, s]])
                     for i, (a, s) in map(lambda i: (i, case(i)), range(N))])
    np.testing.assert_allclose(ours, reference, rtol=tol)
    # the comparison covers real change: menopause moves bone by several percent
    assert np.max(1.0 - reference[:, -1]) > 0.05


def test_controlled_steps_do_not_depend_on_the_batch(monkeypatch):
    """Each patient keeps its own step sizes inside the vmapped loop, and every chunk is
    computed in blocks of one shape (cohort.py; here blocks of 128, so a chunk spans several):
    1,000 patients in one chunk give bitwise what they give in chunks of 200 (in one program
    per chunk shape they did not: 256 against 1,024), and a patient alone gives what she gives
    among the others."""
    monkeypatch.setattr(cohort, "CPU_BLOCK", 128)
    run = make_chunk_runner(11, SPEC, default_model(), ARMS, GRID._replace(rtol=1e-4),
                            jnp.float32)
    together = np.asarray(run(chunk_ids(0, 1000, 1000)).life.bmd_rel)
    parts = [np.asarray(run(chunk_ids(s, s + 200, 200)).life.bmd_rel) for s in range(0, 1000, 200)]
    np.testing.assert_array_equal(np.concatenate(parts), together)
    for i in (0, 7, 31):
        alone = np.asarray(run(chunk_ids(i, i + 1, 1)).life.bmd_rel)
        np.testing.assert_array_equal(alone[0], together[i])


def test_accelerator_blocks_pad_little_and_cpu_blocks_never_change():
    """A CPU computes every chunk in blocks of one shape; an accelerator cuts a device's share
    into the fewest blocks of at most ACCELERATOR_BLOCK, multiples of LANES, padding each by
    less than LANES (a small chunk is not blown up to a large fixed block)."""
    cpu, gpu = SimpleNamespace(platform="cpu"), SimpleNamespace(platform="gpu")
    for per in (1, 200, 10_000, 1_000_000, ACCELERATOR_BLOCK + 1, 5 * ACCELERATOR_BLOCK - 3):
        assert block_size(cpu, per) == CPU_BLOCK
        block = block_size(gpu, per)
        count = -(-per // block)
        assert block % LANES == 0 and block <= ACCELERATOR_BLOCK
        assert count == -(-per // ACCELERATOR_BLOCK)
        assert count * block - per < count * LANES


def test_coarse_fixed_grid_puts_every_switch_on_an_edge():
    """With fewer than 12 steps a year, each arm's switches (regimen starts and stops, an
    oophorectomy) become extra edges: every step then lies wholly inside or outside each
    window, so its exposure is the full dose or none."""
    from bonecohort.exposure.protocol import step_inputs
    from bonecohort.solve.life_course import _padded_switches, step_grid

    for i in range(20):
        p = sample_patient(11, i, SPEC, jnp.float64)
        for arm, sw in zip(ARMS, _padded_switches(ARMS, p)):
            g = step_grid(p.age_entry, 15, 2, sw)
            assert np.all(np.diff(np.asarray(g.ages)) >= 0)
            u = step_inputs(g.ages[:-1], g.ages[1:], p, arm, default_model().agents)
            live = np.diff(np.asarray(g.ages)) > 0
            for field in (u.e2, u.t, u.ai, u.ovary):
                v = np.asarray(field)[live]
                top = v.max() if v.size else 0.0
                assert np.all(np.isclose(v, 0.0) | np.isclose(v, top)), (i, arm.name)


@pytest.mark.parametrize("extra,field", [("steps_per_year = 12\nrtol = 1e-4", "rtol"),
                                         ('solver = "ros2"', "solver"),
                                         ("rtol = 0.5", "rtol")])
def test_study_step_settings_are_checked(extra, field):
    from bonecohort.config import ConfigError, parse_study

    import re

    text = (f'[study]\nname = "x"\n{extra}\n[population]\nsex = "female"\nage_min = 50\n'
            'age_max = 60\n[[arms]]\nname = "none"\n')
    with pytest.raises(ConfigError, match=re.escape(f"x.toml: [study] {field}:")):
        parse_study(text, "x.toml")


def _segment_problem():
    """A small stiff problem with a drive and exposures: y0 relaxes at rate c towards
    u cos(t), y1 follows y0 (one system per c); segment 0 from 0 to 2, two arms from 2 to 4
    with their own switches and exposures."""
    def rates(y, d, c):
        return jnp.stack([-c * (y[0] - d), y[0] - y[1]])

    def drive(t, u):
        return u * jnp.cos(t)

    stops = jnp.array([[0.0, 1.0, 2.0], [2.0, 2.5, 4.0], [2.0, 3.0, 4.0]])
    inputs = jnp.array([[1.0, 0.5], [2.0, -1.0], [0.0, 3.0]])
    out = jnp.array([2.25, 2.5, 3.0, 3.5, 4.0])
    return rates, drive, stops, inputs, out


@pytest.mark.parametrize("tableau", [RODAS4, RODAS3])
def test_segments_in_one_loop_match_segments_one_after_the_other(tableau):
    """``integrate_segments`` moves each system to its next segment as soon as it finishes
    one; under vmap over systems of different stiffness it gives what each segment gives on
    its own (``integrate_adaptive``, arms started from segment 0's end state)."""
    rates, drive, stops, inputs, out = _segment_problem()
    y0 = jnp.array([[0.0, 1.0]])

    def together(c):
        return integrate_segments(rates, drive, y0, c[None], stops, inputs, tableau, 1e-5,
                                  0.01, 500, lambda y: y[0, 1], out)

    def apart(c):
        def segment(k, y_start):
            return integrate_adaptive(rates, drive, y_start, c[None], stops[k], inputs[k],
                                      tableau, 1e-5, 0.01, 500, lambda y: y[0, 1], out)

        run = [segment(0, y0)]
        run += [segment(k, run[0][0]) for k in (1, 2)]
        return run[0][0], jnp.stack([r[1] for r in run]), jnp.stack([r[2] for r in run])

    c = jnp.array([1.0, 30.0, 1000.0])
    y_t, reads_t, steps_t = jax.vmap(together)(c)
    y_a, reads_a, steps_a = jax.vmap(apart)(c)
    np.testing.assert_array_equal(steps_t, steps_a)
    assert len(np.unique(np.asarray(steps_t).sum(1))) == 3  # the systems' loops differ
    np.testing.assert_allclose(y_t, y_a, rtol=1e-6)
    np.testing.assert_allclose(reads_t[:, 1:], reads_a[:, 1:], rtol=1e-6)
    assert np.all(np.isfinite(reads_t[:, 1:])) and np.ptp(np.asarray(reads_t[:, 1:])) > 0.1


def test_a_segment_out_of_steps_reads_nan_and_the_others_run_on():
    """A segment that has not reached its end after ``max_steps`` steps reads NaN; the other
    segments are unaffected; when it is segment 0, the later segments start from NaN."""
    rates, drive, stops, inputs, out = _segment_problem()
    y0 = jnp.array([[0.0, 1.0]])
    c = jnp.array([2000.0])
    full = integrate_segments(rates, drive, y0, c, stops, inputs, RODAS4, 1e-5, 0.01, 500,
                              lambda y: y[0, 1], out)
    n = np.asarray(full[2])
    k = int(np.argmax(n[1:])) + 1  # the arm that needs more steps
    limit = int(n[k]) - 1
    assert n[3 - k] <= limit and n[0] <= limit
    short = integrate_segments(rates, drive, y0, c, stops, inputs, RODAS4, 1e-5, 0.01, limit,
                               lambda y: y[0, 1], out)
    assert np.all(np.isnan(short[1][k])) and int(short[2][k]) == limit
    np.testing.assert_array_equal(short[1][3 - k], full[1][3 - k])
    np.testing.assert_array_equal(short[0], full[0])
    first = integrate_segments(rates, drive, y0, c, stops, inputs, RODAS4, 1e-5, 0.01,
                               int(n[0]) - 1, lambda y: y[0, 1], out)
    assert np.all(np.isnan(first[0])) and np.all(np.isnan(first[1][1:]))
