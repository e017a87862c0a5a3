"""The posterior of the fitted constants (Laplace) and runs under parameter draws: curvature
against its Gauss-Newton form where it must equal it, coverage of the truth in synthetic
fits, the parameter file's [posterior], deterministic draws, and `run` / `validate` with
--parameter-draws (intervals that contain the Monte Carlo ones)."""

import json
import tomllib

import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from bonecohort.fit.calibrate import Objective, fit, parse_free
from bonecohort.fit.least_squares import simulate_with_jacobian, stacked_residuals
from bonecohort.fit.posterior import curvature, find_mode, laplace, load_posterior
from bonecohort.fit.targets import parse_targets
from bonecohort.model.params import hand_set_model
from bonecohort.shell.cli import main
from test_calibrate import TARGETS

FREE = "hormones.rho_L,sites.mech_gain.lumbar_spine,agents.exposure.estradiol.transdermal"
PRIOR_SD = 0.5
Z90 = 1.6449


@pytest.fixture(scope="module")
def objective():
    model = hand_set_model()  # independent of the shipped fit
    return Objective(parse_targets(TARGETS, "mini.toml"), model, parse_free(FREE, model),
                     jnp.float64, prior_sd=PRIOR_SD)


def _noisy(obj, truth, rng):
    """Targets simulated at ``truth`` with noise of the likelihood's SD (the tolerance)."""
    sim = obj(truth, with_prior=False)[2]
    eps = rng.standard_normal(len(sim))
    return np.where(obj.log_scale, sim * np.exp(eps * obj.tolerance), sim + eps * obj.tolerance)


def test_hessian_equals_gauss_newton_where_the_targets_are_met_exactly(objective):
    """At targets the model itself produced every residual is 0, so the Hessian of the data
    term is exactly 2 J^T W J: the differenced Hessian and the differenced J must agree."""
    truth = np.asarray(objective.theta0) + np.array([0.2, -0.1, 0.15])
    exact = objective.retarget(objective(truth, with_prior=False)[2])
    hess, jac = curvature(exact, truth)
    w = exact.weight[:, None]
    np.testing.assert_allclose(0.5 * hess, jac.T @ (w * jac), rtol=1e-4,
                               atol=1e-6 * np.abs(hess).max())
    assert np.all(np.linalg.eigvalsh(hess) > 0)


def test_laplace_intervals_cover_the_truth_in_synthetic_fits(objective):
    """Constants drawn from the prior, targets simulated at them with the likelihood's noise,
    refitted to the mode: 90 % intervals hold the truth ~90 % of the time, and the squared
    standardized errors average ~1 (too wide or too narrow intervals both fail).
    benchmarks/posterior_check.py runs the same with 100 replicates and against NUTS."""
    rng = np.random.default_rng(1)
    th0 = np.asarray(objective.theta0)
    z = []
    for _ in range(12):
        truth = th0 + PRIOR_SD * rng.standard_normal(th0.size)
        obj = objective.retarget(_noisy(objective, truth, rng))
        theta, _ = find_mode(obj, th0)
        post = laplace(obj, theta)
        assert post.method == "hessian"
        z.append((truth - theta) / post.sd())
    z = np.asarray(z)
    assert np.mean(np.abs(z) <= Z90) >= 0.8
    assert 0.5 < np.mean(z ** 2) < 1.6


def test_reverse_mode_jacobian_equals_differences_and_lm_reaches_the_mode(objective):
    """The Jacobian programs (one pullback per target) give the d sim / d theta that central
    differences of the simulation give, and Levenberg-Marquardt on them (calibrate's
    --optimizer lm) reaches, from the start, the mode that find_mode reaches with
    differenced Jacobians: the same constants and a vanishing gradient there."""
    th0 = np.asarray(objective.theta0)
    truth = th0 + np.array([0.3, -0.2, 0.25])
    obj = objective.retarget(_noisy(objective, truth, np.random.default_rng(3)))
    sim, jac = simulate_with_jacobian(obj, truth)
    np.testing.assert_allclose(sim, obj(truth, with_prior=False)[2], rtol=1e-12)
    _, jac_r = curvature(obj, truth)
    jac_r_rev = stacked_residuals(obj, truth, sim, jac)[1][:len(obj.fitted())]
    np.testing.assert_allclose(jac_r_rev, jac_r[obj.fitted()], rtol=1e-5,
                               atol=1e-7 * np.abs(jac_r).max())
    result = fit(obj, 30, optimizer="lm")
    mode, loss = find_mode(obj, th0)
    # fit stops once L falls by < 1e-5 of itself a step; find_mode goes on to 1e-7 steps
    np.testing.assert_allclose(result.theta, mode, atol=1e-3)
    assert result.loss == pytest.approx(loss, rel=1e-5)
    assert result.loss < result.loss_start
    _, grad, _ = obj(result.theta)
    assert np.linalg.norm(grad) < 1e-3 * np.linalg.norm(obj(th0)[1])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A calibrate run on the small trial by Levenberg-Marquardt, which adds its posterior
    (Gauss-Newton, from the same Jacobian programs) by default."""
    d = tmp_path_factory.mktemp("post")
    (d / "mini.toml").write_text(TARGETS)
    out = d / "fit.toml"
    res = CliRunner().invoke(main, ["calibrate", str(d / "mini.toml"), "--out", str(out),
                                    "--free", FREE, "--steps", "20", "--patients", "12",
                                    "--dtype", "float64", "--optimizer", "lm"])
    assert res.exit_code == 0, res.output
    assert "strongest correlations" in res.output
    return d, out


def test_parameter_file_carries_the_posterior_and_draws_are_deterministic(fitted):
    _, path = fitted
    raw = tomllib.loads(path.read_text())
    post = load_posterior(path)
    assert [f.path for f in post.frees] == list(raw["parameters"]) == FREE.split(",")
    assert raw["provenance"]["posterior_targets_sha256"] == raw["provenance"]["targets_sha256"]
    assert "Levenberg" in raw["provenance"]["optimizer"]
    assert raw["provenance"]["posterior_hessian"] == "gauss-newton" == post.method
    assert np.all(np.linalg.eigvalsh(post.cov) > 0)
    # the mean is the file's constants in their fitted coordinates
    np.testing.assert_allclose(np.exp(post.mean), [raw["parameters"][n] for n in FREE.split(",")],
                               rtol=1e-12)
    a, b = post.draws(7, 4), post.draws(7, 4)
    assert np.array_equal(a, b) and not np.array_equal(a, post.draws(8, 4))
    assert np.array_equal(post.draws(7, 6)[:4], a)  # draw j depends on (seed, j) only
    many = post.draws(3, 4000)
    np.testing.assert_allclose(np.cov(many.T), post.cov, rtol=0.1, atol=0.05 * post.cov.max())
    rows = post.table()
    assert all(r["lo"] < r["value"] < r["hi"] for r in rows)


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.replace("covariance = [[", "covariance = [[-"), "[posterior] covariance"),
    (lambda s: s.replace("coordinates = [\"hormones.rho_L (log)\", ",
                         "coordinates = ["), "[posterior] coordinates"),
    (lambda s: s.replace("covariance =", "covariances ="), "[posterior] covariance"),
])
def test_a_bad_posterior_is_refused_naming_the_field(fitted, tmp_path, edit, words):
    d, path = fitted
    bad = tmp_path / "bad.toml"
    bad.write_text(edit(path.read_text()))
    res = CliRunner().invoke(main, ["validate", str(d / "mini.toml"), "--params", str(bad),
                                    "--parameter-draws", "2", "--out", str(tmp_path / "v")])
    assert res.exit_code == 2, res.output
    assert words in res.output and str(bad) in res.output
    assert not (tmp_path / "v").exists()


def test_validate_gives_predictive_intervals_under_parameter_draws(fitted, tmp_path):
    d, path = fitted
    out = tmp_path / "v"
    res = CliRunner().invoke(main, ["validate", str(d / "mini.toml"), "--params", str(path),
                                    "--parameter-draws", "3", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "inside their 90 % posterior predictive interval" in res.output
    t = pl.read_parquet(out / "validation.parquet")
    assert (t["pi_lo"] < t["simulated"]).all() and (t["simulated"] < t["pi_hi"]).all()
    inside = (t["observed"] >= t["pi_lo"]) & (t["observed"] <= t["pi_hi"])
    assert inside.to_list() == t["inside_pi"].to_list()


# the scale tests' study (two arms, error-controlled steps, which follow the draws' faster
# transients: README, Uncertainty), 640 patients
from test_scale import STUDY  # noqa: E402


@pytest.fixture(scope="module")
def draw_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("draws")
    (d / "s.toml").write_text(STUDY)
    outs = []
    for name in ("a", "b"):
        res = CliRunner().invoke(main, ["run", str(d / "s.toml"), "--parameter-draws", "3",
                                        "--seed", "7", "-n", "640", "--out", str(d / name),
                                        "-q"])
        assert res.exit_code == 0, res.output
        outs.append((d / name, res.output))
    return outs


def test_runs_under_parameter_draws_repeat_exactly(draw_runs):
    (a, text_a), (b, text_b) = draw_runs
    assert text_a.replace(str(a), "") == text_b.replace(str(b), "")
    for name in ("summary", "outcomes", "draws_summary", "draws_outcomes"):
        assert pl.read_parquet(a / f"{name}.parquet").equals(pl.read_parquet(b / f"{name}.parquet"))
    rec = json.loads((a / "manifest.json").read_text())["parameter_draws"]
    assert rec["k"] == 3 and rec["seed"] == 7 and len(rec["draws"]) == 3
    assert not (a / "draws").exists()  # the draws' patients are not kept
    assert "data-forest-ui" in (a / "report.html").read_text()


def test_uncertainty_intervals_contain_the_monte_carlo_ones_and_are_wider(draw_runs):
    (a, _), _ = draw_runs
    o = pl.read_parquet(a / "outcomes.parquet").filter(pl.col("subgroup") == "all")
    for stat, mc in (("hip_by_age", "hip_by_age"), ("mof_by_age", "mof_by_age"),
                     ("deaths_horizon", "deaths_horizon"), ("hip_rr", "hip_rr"),
                     ("mof_rd_per_1000", "mof_rd")):
        # equal where the draws agree (s_d = 0), up to the tables' rounding to 10 digits
        assert (o[f"{stat}_ui_lo"] <= o[f"{mc}_lo"] + 1e-9 * (1 + o[f"{mc}_lo"].abs())).all()
        assert (o[f"{stat}_ui_hi"] >= o[f"{mc}_hi"] - 1e-9 * (1 + o[f"{mc}_hi"].abs())).all()
        assert o[f"{stat}_ui_lo"].null_count() == 0 and o[f"{stat}_ui_hi"].null_count() == 0
    for r in o.iter_rows(named=True):  # NNT bounds from the risk difference's interval
        lo, hi = r["mof_rd_per_1000_ui_lo"], r["mof_rd_per_1000_ui_hi"]
        assert r["mof_nnt_ui_lo"] == (pytest.approx(-1000 / lo) if lo < 0 else None)
        assert r["mof_nnt_ui_hi"] == (pytest.approx(-1000 / hi) if hi < 0 else
                                      (float("inf") if lo < 0 else None))
    # one interval by hand: log RR +/- 1.96 sqrt(MC half-width^2 + SD across draws^2)
    treated = o.filter(pl.col("arm") == "estradiol").row(0, named=True)
    per_draw = pl.read_parquet(a / "draws_outcomes.parquet").filter(
        (pl.col("subgroup") == "all") & (pl.col("arm") == "estradiol"))["hip_rr"].to_numpy()
    half = np.hypot((np.log(treated["hip_rr_hi"]) - np.log(treated["hip_rr_lo"])) / 2,
                    1.96 * np.log(per_draw).std(ddof=1))
    assert treated["hip_rr_ui_lo"] == pytest.approx(treated["hip_rr"] * np.exp(-half), rel=1e-6)
    assert treated["hip_rr_ui_hi"] == pytest.approx(treated["hip_rr"] * np.exp(half), rel=1e-6)
    draws = pl.read_parquet(a / "draws_summary.parquet")
    s = pl.read_parquet(a / "summary.parquet")
    col = "FN %chg y5"
    assert draws[col].n_unique() == draws.height  # the constants move every arm's BMD
    assert s[f"{col}_ui_lo"].null_count() == 0
    assert (s[f"{col}_ui_lo"] < s[col]).all() and (s[col] < s[f"{col}_ui_hi"]).all()
    p10 = draws.group_by("arm").agg(pl.col(col).std())
    assert (p10[col] > 0).all()


def test_predictive_bounds_by_hand():
    from bonecohort.fit.posterior import predictive_bounds

    draws = np.array([[1.0, 0.8], [3.0, 1.25]])  # two draws of a BMD change and a ratio
    lo, hi = predictive_bounds(np.array([2.0, 1.0]), draws, np.array([1.0, 0.2]),
                               np.array([False, True]))
    sd = np.std([1.0, 3.0], ddof=1)
    assert lo[0] == pytest.approx(2.0 - Z90 * np.hypot(sd, 1.0))
    sd_log = np.std(np.log([0.8, 1.25]), ddof=1)
    assert hi[1] == pytest.approx(np.exp(Z90 * np.hypot(sd_log, 0.2)))
    assert lo[1] * hi[1] == pytest.approx(1.0)  # symmetric on the log scale


def test_parameter_draws_need_two_or_more(tmp_path):
    (tmp_path / "s.toml").write_text(STUDY)
    res = CliRunner().invoke(main, ["run", str(tmp_path / "s.toml"), "--parameter-draws", "1",
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--parameter-draws 1" in res.output
    assert not (tmp_path / "o").exists()
