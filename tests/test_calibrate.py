"""Calibration: gradients through the virtual trials, recovery of known constants, parameter
files and the `calibrate` command."""

import tomllib
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from bonecohort.fit.calibrate import Objective, parse_free
from bonecohort.shell.cli import main
from bonecohort.fit.parameters import from_theta, get_value, load_parameters
from bonecohort.data import SHIPPED_PARAMETERS
from bonecohort.fit.parameters import default_model
from bonecohort.model.params import hand_set_model
from bonecohort.fit.posterior import find_mode
from bonecohort.fit.targets import load_targets, parse_targets

# One small trial with BMD targets of both sites (natural history and treatment) and a hip
# fracture hazard ratio, so the gradient runs through the hormones, both sites' mechanostat,
# the windows, the differences and the fracture read-out.
TARGETS = """
[target_set]
name = "mini"

[[trials]]
name = "early postmenopause"
horizon_years = 4
patients = 12
  [trials.population]
  sex = "female"
  age_min = 52
  age_max = 54
  uterus_intact_fraction = 0
  [trials.eligibility]
  years_since_menopause_min = 0.0
  years_since_menopause_max = 3.0
  [[trials.arms]]
  name = "placebo"
  [[trials.arms]]
  name = "estradiol"
    [[trials.arms.regimens]]
    agent = "estradiol"
    route = "transdermal"
    dose = 50
    dose_unit = "ug/day"
    duration_years = 2

[[targets]]
id = "LOSS"
trial = "early postmenopause"
arm = "placebo"
site = "lumbar_spine"
window = { from = "entry", start_years = 0.0, end_years = 2.0 }
measure = "pct_change_within_arm"
observed = -3.0
source = "test"

[[targets]]
id = "LATER"
trial = "early postmenopause"
arm = "placebo"
site = "lumbar_spine"
window = { from = "entry", start_years = 2.0, end_years = 4.0 }
measure = "annualized_pct_change"
observed = -1.0
source = "test"

[[targets]]
id = "EARLY"
trial = "early postmenopause"
arm = "placebo"
site = "lumbar_spine"
window = { from = "entry", start_years = 0.0, end_years = 1.0 }
measure = "pct_change_within_arm"
observed = -2.0
source = "test"

[[targets]]
id = "ON"
trial = "early postmenopause"
arm = "estradiol"
site = "lumbar_spine"
window = { from = "entry", start_years = 0.0, end_years = 1.0 }
measure = "pct_change_within_arm"
observed = 1.0
source = "test"

[[targets]]
id = "STOP"
trial = "early postmenopause"
arm = "estradiol"
site = "lumbar_spine"
window = { from = "entry", start_years = 2.0, end_years = 4.0 }
measure = "annualized_pct_change"
observed = -2.0
source = "test"

[[targets]]
id = "GAIN"
trial = "early postmenopause"
arm = "estradiol"
comparator = "placebo"
site = "lumbar_spine"
window = { from = "entry", start_years = 0.0, end_years = 2.0 }
measure = "pct_change_difference_vs_comparator"
observed = 4.0
source = "test"

[[targets]]
id = "OFF"
trial = "early postmenopause"
arm = "estradiol"
site = "femoral_neck"
window = { from = "entry", start_years = 2.0, end_years = 3.0 }
measure = "annualized_pct_change"
observed = -1.5
source = "test"

[[targets]]
id = "HIP"
trial = "early postmenopause"
arm = "estradiol"
comparator = "placebo"
site = "hip_fracture"
window = { from = "entry", start_years = 0.0, end_years = 4.0 }
measure = "hazard_ratio"
observed = 0.8
ci95 = [0.6, 1.1]
source = "test"
"""

# Across hormones, both sites, the memory mechanisms (remodeling space, mineralization, set
# point), an agent's exposure and the fracture read-out.
GRAD_FREE = ("hormones.rho_L,hormones.delta_E,sites.turnover.lumbar_spine,"
             "sites.mech_gain.femoral_neck,sites.er_gain.femoral_neck,fracture.gamma.hip,"
             "sites.formation_lag.lumbar_spine,sites.secondary_rate.femoral_neck,"
             "sites.set_point_rate.lumbar_spine,agents.exposure.estradiol.transdermal")
RECOVER_FREE = ("hormones.rho_L,sites.mech_gain.lumbar_spine,sites.formation_lag.lumbar_spine,"
                "agents.exposure.estradiol.transdermal")


@pytest.fixture(scope="module")
def mini():
    return parse_targets(TARGETS, "mini.toml")


@pytest.fixture(scope="module")
def objective(mini):
    model = default_model()
    return Objective(mini, model, parse_free(GRAD_FREE, model), jnp.float64, prior_sd=None)


def test_gradient_matches_central_finite_differences(objective):
    theta = np.asarray(objective.theta0) + np.array([0.1, -0.2, 0.1, -0.1, 0.2, 0.1, 0.2, -0.1,
                                                      0.1, -0.1])
    loss, grad, sim = objective(theta)
    assert np.all(np.isfinite(sim)) and loss > 0
    h = 1e-5
    fd = np.array([(objective(theta + h * e)[0] - objective(theta - h * e)[0]) / (2 * h)
                   for e in np.eye(theta.size)])
    assert np.all(np.abs(grad) > 0)  # every named constant moves some target
    np.testing.assert_allclose(grad, fd, rtol=1e-3, atol=1e-6 * np.abs(fd).max())


def test_known_constants_are_recovered_from_their_own_targets(mini):
    """Targets simulated at known constants (the hand-set ones, so the test does not move
    with the shipped fit), fitted from a start 20 % off each by Levenberg-Marquardt on the
    compiled gradient programs (find_mode: the Jacobian by their central differences)."""
    model = hand_set_model()
    frees = parse_free(RECOVER_FREE, model)
    truth = Objective(mini, model, frees, jnp.float64, prior_sd=None)
    _, _, simulated = truth(truth.theta0)
    start = np.asarray(truth.theta0) + np.log(np.array([1.2, 0.8, 1.2, 0.8]))
    exact = truth.retarget(simulated)
    theta, loss = find_mode(exact, start)
    assert loss < 1e-6 * exact(start)[0]
    fitted = from_theta(model, frees, theta)
    for f in frees:
        assert float(get_value(fitted, f)) == pytest.approx(float(get_value(model, f)),
                                                            rel=0.05), f.path


def test_calibrate_command_writes_a_parameter_file_that_validate_reads(tmp_path):
    path = tmp_path / "mini.toml"
    path.write_text(TARGETS)
    out = tmp_path / "params" / "fit.toml"
    # float64, the default model and the recovery test's constants: the same programs, found
    # in the persistent compilation cache (conftest) when that test ran first
    args = ["calibrate", str(path), "--out", str(out), "--free", RECOVER_FREE, "--steps", "3",
            "--patients", "12", "--dtype", "float64", "--start", str(SHIPPED_PARAMETERS)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    raw = tomllib.loads(out.read_text())
    prov = raw["provenance"]
    assert len(prov["targets_sha256"]) == 64 and prov["loss_after"] <= prov["loss_before"]
    assert prov["steps"] == 3 and prov["optimizer"].startswith("optax.adam")
    assert {"jax", "optax", "bonecohort"} <= set(prov["versions"])
    assert set(raw["parameters"]) == set(RECOVER_FREE.split(","))
    fitted = load_parameters(out, hand_set_model())
    assert float(fitted.hormones.rho_L) == raw["parameters"]["hormones.rho_L"]
    assert prov["loss_before"] > 0 and prov["dtype"] == "float64"
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--force" in again.output  # no silent overwrite
    res = CliRunner().invoke(main, ["validate", str(path), "--params", str(out), "--patients",
                                    "12", "--out", str(tmp_path / "v"), "-q"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("text, words", [
    ("[parameters]\n\"hormones.rho_X\" = 1.0\n", ["[parameters]", "rho_X", "fields"]),
    ("[parameters]\n\"sites.turnover\" = 1.0\n", ["[parameters]", "name the site"]),
    ("[parameters]\n\"hormones.delta_E\" = 1.5\n", ["delta_E", "(0, 1)"]),
    ("[parameters]\n\"hormones.K_E\" = -2\n", ["K_E", "positive"]),
    ("[parameters]\n\"core.K_D1\" = 1.0\n", ["core.K_D1", "first part"]),
    ("[provenance]\nx = 1\n", ["[parameters] is missing"]),
    ("[params]\n", ["unknown section", "params"]),
    ("[parameters\n", ["not valid TOML"]),
])
def test_bad_parameter_files_are_refused_naming_the_field(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    (tmp_path / "mini.toml").write_text(TARGETS)
    res = CliRunner().invoke(main, ["validate", str(tmp_path / "mini.toml"), "--params",
                                    str(path)])
    assert res.exit_code == 2
    for w in words + [str(path)]:
        assert w in res.output, (w, res.output)


def test_shipped_calibration_is_the_default_model():
    model, hand = default_model(), hand_set_model()
    raw = tomllib.loads(SHIPPED_PARAMETERS.read_text())
    shipped_for = load_targets(Path(__file__).parents[1] / "configs/targets/public.toml")
    assert raw["provenance"]["targets_sha256"] == shipped_for.sha256  # fitted to these targets
    for path, value in raw["parameters"].items():
        free = parse_free(path, model)[0]
        assert float(get_value(model, free)) == value
    assert model.core == hand.core  # the published core constants are not fitted
