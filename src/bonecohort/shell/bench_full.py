"""The benchmark's full-model workload: both sites of each patient of a study, through the
natural history and every arm, with the treatment switches of the arms (bench.py documents
the workloads; bench_wp.py sweeps it).

The model's inputs are the study's exposures on a monthly grid (treatments and surgical
menopause snapped to whole months, the model's own definition: exposure/protocol.py); the
endogenous hormones are smooth functions of age. Solutions:

* this engine (``simulate_patient``) at any steps per year: the exposures are averaged over
  each step, so a grid coarser than a month also carries the error of shifting a switch
  within its step - the error a user of that grid gets;
* diffrax (vmapped over patients): the natural history once, then each arm from entry (as the
  engine), the right-hand side reading the month's exposures; every month edge where a
  patient's exposures change is passed as a jump time (``PIDController(jump_ts=...)``), so the
  controller stops there and restarts instead of stepping across the switch;
* the reference: scipy Radau (rtol 1e-10) on each stretch of constant exposures separately.

Read-out: BMD of both sites relative to peak bone mass at each year end after entry, per arm.
A patient-year is one year along one arm, the natural history counted once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.cohort import cast_tree, reference_steady_state
from bonecohort.exposure.protocol import step_inputs
from bonecohort.fit.parameters import default_model
from bonecohort.model.site import DAYS_PER_YEAR, bmd, steady_state_vector
from bonecohort.population import sample_patient
from bonecohort.shell.bench_rows import DTYPES, _on_host
from bonecohort.solve.life_course import patient_sites, simulate_patient, site_ode, step_edges

MONTH = DAYS_PER_YEAR / 12.0


class FullModel:
    """Women and men of ``study`` (its population, arms and horizon; every exposure type the
    arms use), ``n`` patients."""

    name = "full-wp"

    def __init__(self, study, n: int):
        self.study = study
        self.spec = study.population
        self.seed = study.seed
        self.arms = study.arms
        self.grid = study.grid
        self.n = n
        self.model = cast_tree(default_model(), jnp.float64)
        self.years = self.grid.prefix_years + len(self.arms) * self.grid.horizon_years

    def _setup(self, dtype):
        d = DTYPES[dtype]
        return cast_tree(self.model, d), reference_steady_state(self.model, d), d

    def ours(self, dtype: str, steps_per_year: int = 12, solver: str = "rodas3",
             rtol: float = 0.0, prefix_steps_per_year: int | None = None):
        """``ids -> BMD (n, arms, sites, years)`` by this engine: fixed steps, or with
        ``rtol > 0`` error-controlled ones."""
        model, steady, d = self._setup(dtype)
        grid = self.grid._replace(steps_per_year=steps_per_year, solver=solver, rtol=rtol,
                                  prefix_steps_per_year=prefix_steps_per_year or steps_per_year)

        def one(pid):
            life = simulate_patient(sample_patient(self.seed, pid, self.spec, d), model, steady,
                                    self.arms, grid)
            return life.bmd_entry[None, :, None] * life.bmd_rel

        return jax.jit(jax.vmap(one))

    def monthly(self, patient, model):
        """Per arm, the month's exposures over the whole life (arms, months) and the times
        (days from peak bone mass) of month edges where they change, padded past the end."""
        g = self.grid
        start = patient.age_entry - g.prefix_years
        natural = step_inputs(*step_edges(start, g.prefix_years, 12), patient, None)
        edges = step_edges(patient.age_entry, g.horizon_years, 12)
        per_arm = [jax.tree.map(lambda a, b: jnp.concatenate([a, b]), natural,
                                step_inputs(*edges, patient, arm, model.agents))
                   for arm in self.arms]
        inputs = jax.tree.map(lambda *v: jnp.stack(v), *per_arm)
        months = inputs.e2.shape[1]
        fields = jnp.stack(jax.tree.leaves(inputs), axis=-1)  # (arms, months, fields)
        change = jnp.any(fields[:, 1:] != fields[:, :-1], axis=-1)
        t_edge = jnp.arange(1, months, dtype=start.dtype) * MONTH
        jumps = jnp.sort(jnp.where(change, t_edge, months * MONTH + 1e6), axis=-1)
        return inputs, jumps

    def _term(self, patient, model, steady):
        """diffrax vector field of both sites: y (sites, state), args = the arm's months."""
        start = patient.age_entry - self.grid.prefix_years
        ode = site_ode(patient, model, steady, start, start)
        sites = patient_sites(patient, model.sites)

        def field(t, y, inputs):
            k = jnp.clip(jnp.floor(t / MONTH).astype(jnp.int32), 0, inputs.e2.shape[0] - 1)
            d = ode.drive(t, jax.tree.map(lambda v: v[k], inputs))
            return jax.vmap(lambda yb, sb: ode.rates(yb, d, sb))(y, sites)

        return field

    def diffrax(self, solver_name: str, rtol: float, atol: float, max_steps: int,
                dtype: str = "float64"):
        """``ids -> BMD (n, arms, sites, years)`` by a diffrax solver with a PID controller
        and the switches as jump times; NaN where a solve failed (step limit)."""
        import diffrax

        solver = getattr(diffrax, solver_name)()
        model, steady, d = self._setup(dtype)
        g = self.grid
        t_entry = g.prefix_years * DAYS_PER_YEAR
        t_out = t_entry + DAYS_PER_YEAR * jnp.arange(1, g.horizon_years + 1, dtype=d)
        n_sites = model.sites.turnover.shape[0]

        def solve(term, y0, t0, t1, inputs, jumps, saveat):
            return diffrax.diffeqsolve(
                term, solver, t0=jnp.asarray(t0, d), t1=jnp.asarray(t1, d),
                dt0=jnp.asarray(MONTH, d), y0=y0, args=inputs, saveat=saveat,
                stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, jump_ts=jumps),
                max_steps=max_steps, throw=False)

        def one(pid):
            patient = sample_patient(self.seed, pid, self.spec, d)
            inputs, jumps = self.monthly(patient, model)
            term = diffrax.ODETerm(self._term(patient, model, steady))
            first = jax.tree.map(lambda v: v[0], inputs)
            pre = solve(term, steady_state_vector(d, (n_sites,)), 0.0, t_entry, first,
                        jumps[0], diffrax.SaveAt(t1=True))
            y_entry = pre.ys[-1]

            def arm(inp, jmp):
                sol = solve(term, y_entry, t_entry, t_out[-1], inp, jmp,
                            diffrax.SaveAt(ts=t_out))
                ok = (sol.result == diffrax.RESULTS.successful) & (
                    pre.result == diffrax.RESULTS.successful)
                return jnp.where(ok, jnp.moveaxis(bmd(sol.ys), 0, 1), jnp.nan)

            return jax.vmap(arm)(inputs, jumps)

        return jax.jit(jax.vmap(one))

    def reference(self, count: int) -> np.ndarray:
        """BMD (count, arms, sites, years) by scipy Radau (rtol 1e-10, atol 1e-13), each
        stretch of constant exposures integrated separately."""
        return np.stack([self._radau(pid) for pid in range(count)])

    def _radau(self, pid: int) -> np.ndarray:
        from scipy.integrate import solve_ivp

        model, steady, d = self._setup("float64")
        patient = sample_patient(self.seed, pid, self.spec, d)
        inputs, _ = self.monthly(patient, model)
        if not hasattr(self, "_radau_fns"):  # compiled once, the patient an argument
            def field(t, z, u, p):
                return self._term(p, model, steady)(t, z, u)

            self._radau_fns = jax.jit(field), jax.jit(jax.jacfwd(field, argnums=1))
        f_p, jac_p = self._radau_fns

        def f(t, z, u):
            return f_p(t, z, u, patient)

        def jac(t, z, u):
            return jac_p(t, z, u, patient)

        fields = np.stack([np.asarray(v) for v in jax.tree.leaves(inputs)], axis=-1)
        g = self.grid
        year_ends = (g.prefix_years + np.arange(1, g.horizon_years + 1)) * DAYS_PER_YEAR
        n_sites = model.sites.turnover.shape[0]
        out = np.zeros((len(self.arms), n_sites, g.horizon_years))
        for a in range(len(self.arms)):
            arm_inputs = jax.tree.map(lambda v: v[a], inputs)

            def rhs(t, z, arm_inputs=arm_inputs):
                return np.asarray(f(t, z.reshape(n_sites, -1), arm_inputs)).ravel()

            def jacobian(t, z, arm_inputs=arm_inputs):
                return np.asarray(jac(t, z.reshape(n_sites, -1), arm_inputs)).reshape(
                    z.size, z.size)

            months = fields.shape[1]
            cuts = [0] + [k for k in range(1, months)
                          if np.any(fields[a, k] != fields[a, k - 1])] + [months]
            y = np.asarray(steady_state_vector(d, (n_sites,))).ravel()
            for lo, hi in zip(cuts[:-1], cuts[1:]):
                t0, t1 = lo * MONTH, hi * MONTH
                inside = [i for i, t in enumerate(year_ends) if t0 < t < t1 - 1e-6]
                ends = [i for i, t in enumerate(year_ends) if abs(t - t1) <= 1e-6]
                with _on_host():
                    sol = solve_ivp(rhs, (t0, t1), y, method="Radau", rtol=1e-10, atol=1e-13,
                                    t_eval=[year_ends[i] for i in inside] + [t1], jac=jacobian)
                if not sol.success:
                    raise RuntimeError(f"Radau failed for patient {pid}: {sol.message}")
                for j, i in enumerate(inside + ends):
                    col = sol.y[:, min(j, sol.y.shape[1] - 1)]
                    out[a, :, i] = np.asarray(bmd(col.reshape(n_sites, -1)))
                y = sol.y[:, -1]
        return out
