"""The benchmark's peer workloads: one site's natural history and the Pivonka core, solved by
this engine and by diffrax, scipy and the bone_models package (bench.py documents them)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.cohort import cast_tree, reference_steady_state
from bonecohort.exposure.protocol import step_inputs
from bonecohort.fit.parameters import default_model
from bonecohort.model.cells import cell_rates
from bonecohort.model.params import CellAction, CoreParams, Dosing, Site
from bonecohort.model.site import DAYS_PER_YEAR, bmd, steady_state_vector
from bonecohort.population import sample_patient
from bonecohort.shell.bench_rows import DTYPES, Row, _memory, _on_host, _timed
from bonecohort.solve.adaptive import integrate_adaptive
from bonecohort.solve.elimination import jacobian_pattern, with_jacobian_pattern
from bonecohort.solve.life_course import patient_sites, site_ode, site_rhs, step_edges
from bonecohort.solve.rosenbrock import METHODS, integrate

NATURAL_YEARS = 50
CORE_DAYS = 200
PTH_RATE, PTH_END = 1.0e3, 100.0  # bone_models Pivonka_Load_Case_1 (pM/day, days)
REF_PATIENTS = 8
FEMORAL_NECK = Site.FEMORAL_NECK


# --- workload 2: natural history of one site ---------------------------------------------------

class NaturalHistory:
    """Untreated women of the default population (no surgical menopause, so the step inputs
    are constant and every solver sees the same smooth right-hand side)."""

    name = "natural-wp"  # its label in the work-precision sweep (bench_wp.py)
    years = NATURAL_YEARS  # patient-years per patient

    def __init__(self, study, n: int):
        self.spec = study.population._replace(surgical_fraction=0.0)
        self.seed = study.seed
        self.n = n
        self.model = cast_tree(default_model(), jnp.float64)
        self.steady = reference_steady_state(self.model, jnp.float64)
        self.site = jax.tree.map(lambda v: v[FEMORAL_NECK], self.model.sites)
        self.t_out = DAYS_PER_YEAR * np.arange(1, NATURAL_YEARS + 1, dtype=np.float64)

    def patient(self, pid, dtype=jnp.float64):
        return sample_patient(self.seed, pid, self.spec, dtype)

    def rates(self, patient, model=None, steady=None, site=None):
        """``rates(t, y)`` in days from peak bone mass, with the patient's untreated inputs."""
        model = self.model if model is None else model
        steady = self.steady if steady is None else steady
        site = self.site if site is None else site
        start = jnp.asarray(30.0, patient.age_entry.dtype)  # peak bone mass
        a, b = step_edges(start, 1, 1)
        u = jax.tree.map(lambda v: v[0], step_inputs(a, b, patient, None))
        f = site_rhs(patient, model, steady, site, start, start)
        return with_jacobian_pattern(lambda t, y: f(t, y, u), jacobian_pattern(f))

    def ours(self, dtype: str, steps_per_year: int = 12, solver: str = "rodas3",
             rtol: float = 0.0):
        """``ids -> BV at each year end`` by this engine: fixed steps, or with ``rtol > 0``
        error-controlled steps reading each year end inside the step (solve/adaptive.py)."""
        d = DTYPES[dtype]
        model = cast_tree(self.model, d)
        steady = jnp.asarray(self.steady, d)
        site = jax.tree.map(lambda v: v[FEMORAL_NECK], model.sites)
        h = jnp.asarray(DAYS_PER_YEAR / steps_per_year, d)
        out = jnp.asarray(self.t_out, d)

        def one(pid):
            patient = self.patient(pid, d)
            if rtol > 0:
                return self._controlled(patient, model, steady, site, out, solver, rtol)
            rates = self.rates(patient, model, steady, site)
            dummy = jnp.zeros((NATURAL_YEARS, steps_per_year), d)
            one_site = with_jacobian_pattern(lambda t, y, u: rates(t, y), jacobian_pattern(rates))
            _, ys = integrate(one_site, steady_state_vector(d), jnp.zeros((), d), dummy, h,
                              steps_per_year, METHODS[solver])
            return bmd(ys)

        return jax.jit(jax.vmap(one))

    def _controlled(self, patient, model, steady, site, out, solver, rtol):
        start = jnp.asarray(30.0, patient.age_entry.dtype)  # peak bone mass
        ode = site_ode(patient, model, steady, start, start)
        a, b = step_edges(start, 1, 1)
        u = step_inputs(a, b, patient, None)  # one stretch: untreated, no surgery
        sites = jax.tree.map(lambda v: v[None], patient_sites(patient, site))
        _, reads, _ = integrate_adaptive(
            ode.rates, ode.drive, steady_state_vector(patient.age_entry.dtype)[None], sites,
            jnp.stack([jnp.zeros_like(out[-1]), out[-1]]), u, METHODS[solver], rtol,
            DAYS_PER_YEAR / 12, 200 * NATURAL_YEARS, lambda y: bmd(y)[0], out)
        return reads

    def diffrax(self, solver_name: str, rtol: float, atol: float, max_steps: int,
                dtype: str = "float64"):
        """``ids -> BV at each year end`` by a diffrax solver (adaptive PID steps, vmapped:
        the batch steps at the pace of its slowest patient), in ``dtype``."""
        import diffrax

        solver = getattr(diffrax, solver_name)()
        d = DTYPES[dtype]
        model = cast_tree(self.model, d)
        steady = jnp.asarray(self.steady, d)
        site = jax.tree.map(lambda v: v[FEMORAL_NECK], model.sites)
        t_out = jnp.asarray(self.t_out, d)

        def one(pid):
            rates = self.rates(self.patient(pid, d), model, steady, site)
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(lambda t, y, args: rates(t, y)), solver,
                t0=jnp.zeros((), d), t1=t_out[-1], dt0=jnp.ones((), d), y0=steady_state_vector(d),
                saveat=diffrax.SaveAt(ts=t_out),
                stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                max_steps=max_steps, throw=False)
            return jnp.where(sol.result == diffrax.RESULTS.successful, bmd(sol.ys), jnp.nan)

        return jax.jit(jax.vmap(one))

    def scipy_one(self, pid: int, method: str, rtol: float, atol: float) -> np.ndarray:
        """BV at each year end of one patient by ``scipy.integrate.solve_ivp``."""
        from scipy.integrate import solve_ivp

        f, jac = self._numpy_rhs(pid)
        with _on_host():
            sol = solve_ivp(f, (0.0, float(self.t_out[-1])), np.asarray(steady_state_vector(jnp.float64)), method=method,
                            rtol=rtol, atol=atol, t_eval=np.asarray(self.t_out), jac=jac)
        if not sol.success:
            raise RuntimeError(f"solve_ivp {method} failed for patient {pid}: {sol.message}")
        return np.asarray(bmd(sol.y.T))

    def _numpy_rhs(self, pid: int):
        if not hasattr(self, "_compiled"):
            def g(t, y, pid):
                return self.rates(self.patient(pid))(t, y)
            self._compiled = (jax.jit(g), jax.jit(jax.jacfwd(g, argnums=1)))
        f, jac = self._compiled
        p = jnp.uint32(pid)
        return (lambda t, y: np.asarray(f(t, y, p)), lambda t, y: np.asarray(jac(t, y, p)))

    def reference(self, count: int) -> np.ndarray:
        return np.stack([self.scipy_one(i, "Radau", 1e-10, 1e-13) for i in range(count)])


def _max_rel(values, ref) -> float:
    """Max relative error over the patients that have a reference (the first ones)."""
    values = np.asarray(values, np.float64)[:len(ref)]
    return float(np.max(np.abs(values / ref[:len(values)] - 1.0)))


def bench_natural(study, n_ours: int, n_diffrax: int, n_scipy: int, dtypes, peers: bool,
                  log) -> list[Row]:
    work = NaturalHistory(study, max(n_ours, n_diffrax, n_scipy, REF_PATIENTS))
    log("natural history: Radau reference")
    ref = work.reference(min(REF_PATIENTS, n_ours, n_diffrax, n_scipy))
    rows = []
    ids = jnp.arange(n_ours, dtype=jnp.uint32)
    for dtype in dtypes:
        wall, bv = _timed(work.ours(dtype), ids)
        rows.append(Row("natural", "bonecohort rodas3 monthly", dtype, n_ours, wall,
                        n_ours * NATURAL_YEARS / wall, _max_rel(bv, ref),
                        settings={"steps_per_year": 12}, **_memory()))
        log(f"natural history: bonecohort {dtype} done")
    if not peers:
        return rows
    for name, rtol, atol, max_steps in (("Tsit5", 1e-6, 1e-9, 2_000_000),
                                        ("Kvaerno5", 1e-6, 1e-9, 100_000)):
        ids = jnp.arange(n_diffrax, dtype=jnp.uint32)
        wall, bv = _timed(work.diffrax(name, rtol, atol, max_steps), ids)
        rows.append(Row("natural", f"diffrax {name} (vmapped)", "float64", n_diffrax, wall,
                        n_diffrax * NATURAL_YEARS / wall, _max_rel(bv, ref),
                        settings={"rtol": rtol, "atol": atol}, **_memory()))
        log(f"natural history: diffrax {name} done")
    work.scipy_one(0, "LSODA", 1e-6, 1e-9)  # compile the right-hand side first
    t0 = time.perf_counter()
    bv = [work.scipy_one(i, "LSODA", 1e-6, 1e-9) for i in range(n_scipy)]
    wall = time.perf_counter() - t0
    rows.append(Row("natural", "scipy solve_ivp LSODA (one patient at a time)", "float64",
                    n_scipy, wall, n_scipy * NATURAL_YEARS / wall, _max_rel(bv, ref),
                    settings={"rtol": 1e-6, "atol": 1e-9, "jacobian": "jax.jacfwd"},
                    **_memory()))
    log("natural history: scipy LSODA done")
    return rows


# --- workload 3: the Pivonka core alone -------------------------------------------------------

def _core_rhs(scale):
    p = cast_tree(CoreParams(), jnp.float64)

    def f(t, y):
        on = (t >= 0.0) & (t <= PTH_END)
        dosing = Dosing(PTH=jnp.where(on, PTH_RATE * scale, 0.0))
        return jnp.stack(cell_rates(tuple(y), p, dosing, CellAction()))

    return f


def _core_y0():
    from bonecohort.model.cells import steady_state

    return np.array(steady_state(cast_tree(CoreParams(), jnp.float64)))


def _core_ours(dtype: str):
    """Daily RODAS3 steps; the injection switches off on a step boundary (day 100)."""
    d = DTYPES[dtype]
    p = cast_tree(CoreParams(), d)
    y0 = jnp.asarray(_core_y0(), d)
    on = (jnp.arange(CORE_DAYS) < PTH_END).astype(d).reshape(CORE_DAYS, 1)

    def one(scale):
        def rates(t, y, u):
            return jnp.stack(cell_rates(tuple(y), p, Dosing(PTH=u * PTH_RATE * scale),
                                        CellAction()))
        _, ys = integrate(rates, y0, jnp.zeros((), d), on, jnp.ones((), d), 1, METHODS["rodas3"])
        return ys

    return jax.jit(jax.vmap(one))


def _radau_core(rhs, y0):
    from scipy.integrate import solve_ivp

    days = np.arange(1, CORE_DAYS + 1, dtype=np.float64)
    pieces = [(0.0, PTH_END), (PTH_END, float(CORE_DAYS))]
    out, y = [], y0
    for lo, hi in pieces:
        t_eval = days[(days > lo) & (days <= hi)]
        sol = solve_ivp(rhs, (lo, hi), y, method="Radau", rtol=1e-10, atol=1e-14,
                        t_eval=t_eval)
        out.append(sol.y.T)
        y = sol.y[:, -1]
    return np.concatenate(out)


def bench_core(n_ours: int, n_peer: int, dtypes, peers: bool, log) -> list[Row]:
    f = jax.jit(_core_rhs(1.0))
    y0 = _core_y0()
    with _on_host():
        ref = _radau_core(lambda t, y: np.asarray(f(t, y)), y0)
    rows = []
    scales = jnp.ones((n_ours,), jnp.float64)
    for dtype in dtypes:
        wall, ys = _timed(_core_ours(dtype), scales.astype(DTYPES[dtype]))
        err = float(np.max(np.abs(np.asarray(ys[0], np.float64) / ref - 1.0)))
        rows.append(Row("core", "bonecohort rodas3 daily", dtype, n_ours, wall,
                        n_ours * CORE_DAYS / DAYS_PER_YEAR / wall, err,
                        settings={"step_days": 1}, **_memory()))
        log(f"core: bonecohort {dtype} done")
    if not peers:
        return rows
    from bone_models.load_cases.pivonka_load_cases import Pivonka_Load_Case_1
    from bone_models.models.pivonka_model import Pivonka_Model
    from scipy.integrate import solve_ivp

    model = Pivonka_Model(Pivonka_Load_Case_1())
    theirs = lambda t, x: model.bone_cell_population_model(x, t)  # noqa: E731
    days = np.arange(1, CORE_DAYS + 1, dtype=np.float64)
    their_ref = _radau_core(theirs, y0)
    t0 = time.perf_counter()
    for _ in range(n_peer):
        sol = solve_ivp(theirs, (0.0, float(CORE_DAYS)), y0, rtol=1e-8, atol=1e-8,
                        t_eval=days)
    wall = time.perf_counter() - t0
    err = float(np.max(np.abs(sol.y.T / their_ref - 1.0)))
    rows.append(Row("core", "bone_models Pivonka (scipy RK45, one patient at a time)",
                    "float64", n_peer, wall, n_peer * CORE_DAYS / DAYS_PER_YEAR / wall, err,
                    settings={"rtol": 1e-8, "atol": 1e-8}, **_memory()))
    log("core: bone_models done")
    return rows
