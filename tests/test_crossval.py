"""Leave-one-trial-out cross-validation: a held-out trial's targets never reach its fold's fit,
and its predictions are the simulation at the fold's constants."""

import jax.numpy as jnp
import numpy as np
import pytest

from bonecohort.fit.calibrate import Objective, parse_free
from bonecohort.fit.crossval import cross_validate, fold_table, only, without
from bonecohort.fit.parameters import default_model
from bonecohort.fit.targets import parse_targets
from test_calibrate import TARGETS

# Two trials: the mini trial of test_calibrate, and a copy of it under another name and seed.
SECOND = TARGETS.split("[[trials]]", 1)[1].split("[[targets]]", 1)[0]
SECOND = "[[trials]]" + SECOND.replace('name = "early postmenopause"', 'name = "copy"', 1)
TWO = TARGETS + "\n" + SECOND + """
[[targets]]
id = "COPY"
trial = "copy"
arm = "estradiol"
comparator = "placebo"
site = "lumbar_spine"
window = { from = "entry", start_years = 0.0, end_years = 2.0 }
measure = "pct_change_difference_vs_comparator"
observed = 4.0
source = "test"
"""
FREE = "hormones.rho_L,sites.turnover.lumbar_spine"


@pytest.fixture(scope="module")
def objective():
    ts = parse_targets(TWO, "two.toml")
    model = default_model()
    return Objective(ts, model, parse_free(FREE, model), jnp.float64, prior_sd=1.0)


def test_a_fold_never_sees_its_held_out_targets(objective):
    theta = np.asarray(objective.theta0) + 0.1
    folds = cross_validate(objective, theta, steps=4, learning_rate=0.05, trials=["copy"])
    moved = objective.retarget(objective.observed + np.where(
        [t.trial == "copy" for t in objective.ts.targets], 3.0, 0.0))
    again = cross_validate(moved, theta, steps=4, learning_rate=0.05, trials=["copy"])
    np.testing.assert_array_equal(folds[0].theta, again[0].theta)
    # while the all-trials objective does depend on them
    assert objective(theta)[0] != moved(theta)[0]


def test_levenberg_marquardt_folds_reach_the_same_mode_warm_or_cold(objective):
    """Folds taken to their mode do not depend on their start: a warm fold (from other
    constants, its first Jacobian shared with the other folds) and a cold one (from the
    starting constants) give the same constants and predictions; and moving the held-out
    targets leaves the fold unchanged. Targets the model produced at other constants (plus
    noise of a third of the tolerance), so that the fold's mode is unique: with targets the
    model cannot meet, this two-constant trial has two local modes (L 13.6 and 19.9), and
    a start can end in either."""
    th0 = np.asarray(objective.theta0)
    truth = th0 + np.array([0.25, -0.3])
    noise = np.random.default_rng(5).standard_normal(len(objective.observed)) / 3
    objective = objective.retarget(objective(truth, with_prior=False)[2]
                                   + noise * objective.tolerance)
    warm_start = th0 + np.array([0.5, -0.6])
    warm = cross_validate(objective, warm_start, steps=30, trials=["copy"], optimizer="lm")
    cold = cross_validate(objective, None, steps=30, trials=["copy"], optimizer="lm")
    np.testing.assert_allclose(warm[0].theta, cold[0].theta, atol=2e-3)
    np.testing.assert_allclose(warm[0].held_out, cold[0].held_out, atol=1e-2)
    assert not np.allclose(warm[0].theta, warm_start, atol=1e-2)  # it moved to the mode
    moved = objective.retarget(objective.observed + np.where(
        [t.trial == "copy" for t in objective.ts.targets], 3.0, 0.0))
    again = cross_validate(moved, warm_start, steps=30, trials=["copy"], optimizer="lm")
    np.testing.assert_array_equal(warm[0].theta, again[0].theta)


def test_held_out_values_are_the_simulation_at_the_fold_constants(objective):
    theta = np.asarray(objective.theta0)
    fold = cross_validate(objective, theta, steps=3, learning_rate=0.05,
                          trials=["early postmenopause"])[0]
    sim = only(objective, ["early postmenopause"])(fold.theta, with_prior=False)[2]
    np.testing.assert_allclose(fold.held_out, sim[fold.targets])
    assert set(fold.targets) == {i for i, t in enumerate(objective.ts.targets)
                                 if t.trial == "early postmenopause"}
    rows = fold_table(objective, objective(theta)[2], [fold])
    assert [r["id"] for r in rows] == [objective.ts.targets[i].id for i in fold.targets]
    assert all(r["fits_held_out"] == (abs(r["r_held_out"]) <= 1) for r in rows)


def test_without_and_only_split_the_objective(objective):
    theta = np.asarray(objective.theta0)
    a = without(objective, ["copy"])(theta, with_prior=False)[0]
    b = only(objective, ["copy"])(theta, with_prior=False)[0]
    assert a + b == pytest.approx(objective(theta, with_prior=False)[0])


def test_a_target_of_weight_zero_is_reported_but_not_fitted():
    text = TWO.replace('id = "COPY"', 'id = "COPY"\nweight = 0', 1)
    ts = parse_targets(text, "two.toml")
    model = default_model()
    objective = Objective(ts, model, parse_free(FREE, model), jnp.float64, prior_sd=None)
    assert [p[2] for p in objective.parts] == ["early postmenopause"]
    assert "COPY" not in {ts.targets[i].id for i in objective.fitted()}


def test_crossvalidate_command_writes_in_sample_and_held_out_side_by_side(tmp_path):
    import polars as pl
    from click.testing import CliRunner

    from bonecohort.shell.cli import main

    targets = tmp_path / "two.toml"
    targets.write_text(TWO)
    out = tmp_path / "cv"
    bad = CliRunner().invoke(main, ["crossvalidate", str(targets), "--trials", "nope",
                                    "--out", str(out)])
    assert bad.exit_code == 2 and "no trial nope" in bad.output and not out.exists()
    res = CliRunner().invoke(main, ["crossvalidate", str(targets), "--trials", "copy",
                                    "--optimizer", "lm", "--warm", "--steps", "1",
                                    "--patients", "8", "--seed", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pl.read_parquet(out / "crossval.parquet")
    assert table["id"].to_list() == ["COPY"]
    assert {"in_sample", "held_out", "fits_in_sample", "fits_held_out"} <= set(table.columns)
    assert "BMD targets: in sample" in res.output


def test_predictive_intervals_in_sample_and_held_out(objective):
    """Each fold's posterior lacks its trial's curvature: its precision is the all-trials one
    less that trial's (``fold_posteriors``), so a held-out interval is at least as wide as the
    in-sample one where that trial's curvature is positive; every interval holds its own
    prediction."""
    from bonecohort.fit.crossval import predictive
    from bonecohort.fit.posterior import curvature, fold_posteriors

    theta = np.asarray(objective.theta0) + np.array([0.05, -0.05])
    # targets met exactly at theta: every trial's curvature is then positive semi-definite
    objective = objective.retarget(objective(theta, with_prior=False)[2])
    folds = cross_validate(objective, theta, 2, 0.02, trials=["copy"])
    posts = fold_posteriors(objective, theta, folds)
    assert posts["copy"].method == "hessian"
    h_all, _ = curvature(objective, theta)
    h_copy, _ = curvature(only(objective, ["copy"]), theta)
    prior = np.eye(2) / objective.prior_sd ** 2
    np.testing.assert_allclose(np.linalg.inv(posts["copy"].cov), 0.5 * (h_all - h_copy) + prior,
                               rtol=1e-6)
    intervals = predictive(objective, theta, folds, 4, 0)
    in_sample = objective(theta, with_prior=False)[2]
    from dataclasses import replace

    whole = fold_posteriors(objective, theta, [replace(folds[0], trial="", theta=theta)])[""]
    # without a trial the posterior can only be wider: cov_fold - cov_all is PSD
    assert np.linalg.eigvalsh(posts["copy"].cov - whole.cov).min() > -1e-12
    for i, (lo_in, hi_in, lo_out, hi_out) in intervals.items():
        assert lo_in < in_sample[i] < hi_in
        assert lo_out < folds[0].held_out[list(folds[0].targets).index(i)] < hi_out
    rows = fold_table(objective, in_sample, folds, intervals)
    assert {"inside_pi_in_sample", "inside_pi_held_out", "pi_out_lo"} <= set(rows[0])


def test_linear_predictive_intervals_agree_with_draws(objective):
    """The delta-method intervals (for stored cross-validations) against 100 draws."""
    from bonecohort.fit.crossval import linear_predictive, predictive

    theta = np.asarray(objective.theta0) + np.array([0.05, -0.05])
    objective = objective.retarget(objective(theta, with_prior=False)[2])
    folds = cross_validate(objective, theta, 2, 0.02, trials=["copy"])
    drawn = predictive(objective, theta, folds, 100, 0)
    linear = linear_predictive(objective, theta,
                               {"copy": (folds[0].targets, folds[0].held_out)})
    assert set(drawn) == set(linear)
    for i in drawn:
        d, lin = np.array(drawn[i]), np.array(linear[i])
        width_d, width_l = d[1::2] - d[::2], lin[1::2] - lin[::2]
        np.testing.assert_allclose(width_l, width_d, rtol=0.15)
        np.testing.assert_allclose((lin[1::2] + lin[::2]) / 2, (d[1::2] + d[::2]) / 2,
                                   atol=0.05 * width_d.max())
