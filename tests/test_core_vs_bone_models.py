"""The Pivonka 2008 core against the independent ``bone_models`` implementation (v0.1.0)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from bonecohort.model.cells import cell_rates, steady_state
from bonecohort.model.params import CellAction, CoreParams, Dosing

bone_models = pytest.importorskip("bone_models")
from bone_models.load_cases.pivonka_load_cases import Pivonka_Load_Case_1  # noqa: E402
from bone_models.models.pivonka_model import Pivonka_Model  # noqa: E402


class Injection:
    """A bone_models load case: constant injection of one factor during [start, end] days."""

    def __init__(self, factor, rate, start=0.0, end=100.0):
        for name in ("OBp", "OBa", "OCa", "PTH", "OPG", "RANKL", "TGFb"):
            setattr(self, f"{name}_injection", rate if name == factor else 0.0)
        self.differentiation_rate_OCp_multiplier = 1.0
        self.start_time, self.end_time = start, end


CASES = {
    "PTH (Pivonka_Load_Case_1)": ("PTH", Pivonka_Load_Case_1()),
    "OPG": ("OPG", Injection("OPG", 2.0e4)),
    "RANKL": ("RANKL", Injection("RANKL", 3.0e2)),
    "TGFb": ("TGFb", Injection("TGFb", 1.0e-3)),
}


def ours_rhs(factor, case):
    p = CoreParams()
    rate = getattr(case, f"{factor}_injection")

    @jax.jit
    def f(t, y):
        on = (t >= case.start_time) & (t <= case.end_time)
        dosing = Dosing(**{factor: jnp.where(on, rate, 0.0)})
        return jnp.stack(cell_rates(tuple(y), p, dosing, CellAction()))

    return lambda t, y: np.asarray(f(t, jnp.asarray(y)))


def test_steady_state_matches_bone_models():
    theirs = Pivonka_Model(Pivonka_Load_Case_1()).calculate_steady_state()
    ours = np.array(steady_state(CoreParams()))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    # and it is a fixed point of our right-hand side
    rates = np.array(cell_rates(tuple(ours), CoreParams(), Dosing(), CellAction()))
    assert np.all(np.abs(rates) < 1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_trajectory_under_injection_matches_bone_models(name):
    factor, case = CASES[name]
    model = Pivonka_Model(case)
    y0 = np.array(steady_state(CoreParams()))
    t_eval = np.linspace(0.0, 200.0, 201)
    opts = dict(method="Radau", rtol=1e-10, atol=1e-16, t_eval=t_eval, max_step=1.0)
    theirs = solve_ivp(lambda t, y: model.bone_cell_population_model(y, t), (0, 200), y0, **opts)
    ours = solve_ivp(ours_rhs(factor, case), (0, 200), y0, **opts)
    assert theirs.success and ours.success
    # the injection must actually move the system, or the comparison proves nothing
    assert np.max(np.abs(theirs.y / y0[:, None] - 1.0)) > 0.05
    np.testing.assert_allclose(ours.y, theirs.y, rtol=1e-3)
