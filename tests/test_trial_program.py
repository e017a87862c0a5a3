"""One compiled program for the BMD targets of many trials (fit/trial_program.py): padded to
common shapes, whose padded steps and arms are skipped, it reads the same statistics as
validate, and its gradient runs through the regimen table (the fitted agent constants)."""

import jax.numpy as jnp
import numpy as np
import pytest

from bonecohort.cohort import make_chunk_runner
from bonecohort.fit.calibrate import Objective, parse_free
from bonecohort.fit.entry_screen import entry_runner, entry_values
from bonecohort.fit.targets import parse_targets
from bonecohort.fit.trial_program import regimen_table
from bonecohort.fit.trials import run_trials, target_value
from bonecohort.model.params import hand_set_model
from bonecohort.solve.life_course import prefix_steps

# Three trials of different shapes (horizon, arms, regimens, prefix), one of them much
# longer than the others.
TARGETS = """
[target_set]
name = "shared"

[[trials]]
name = "short"
horizon_years = 2
patients = 6
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
    duration_years = 1

[[trials]]
name = "mid"
horizon_years = 3
patients = 4
  [trials.population]
  sex = "female"
  age_min = 60
  age_max = 66
  [[trials.arms]]
  name = "raloxifene"
    [[trials.arms.regimens]]
    agent = "raloxifene"
    dose = 60
    dose_unit = "mg/day"

[[trials]]
name = "long"
horizon_years = 14
patients = 3
  [trials.population]
  sex = "female"
  age_min = 45
  age_max = 47
  [trials.eligibility]
  years_since_menopause_max = -1.0
  [[trials.arms]]
  name = "none"

[[targets]]
id = "GAIN"
trial = "short"
arm = "estradiol"
comparator = "placebo"
site = "lumbar_spine"
window = { from = "entry", start_years = 0.0, end_years = 1.0 }
measure = "pct_change_difference_vs_comparator"
observed = 3.0
source = "test"

[[targets]]
id = "OFF"
trial = "short"
arm = "estradiol"
site = "femoral_neck"
window = { from = "entry", start_years = 1.0, end_years = 2.0 }
measure = "annualized_pct_change"
observed = -1.5
source = "test"

[[targets]]
id = "RLX"
trial = "mid"
arm = "raloxifene"
site = "lumbar_spine"
window = { from = "entry", start_years = 0.0, end_years = 3.0 }
measure = "pct_change_within_arm"
observed = 2.0
source = "test"

[[targets]]
id = "TRANSITION"
trial = "long"
arm = "none"
site = "lumbar_spine"
window = { from = "fmp", start_years = -1.0, end_years = 3.0 }
measure = "pct_change_within_arm"
observed = -8.0
source = "test"
"""

FREE = "agents.exposure.estradiol.transdermal,agents.efficacy.raloxifene,sites.turnover.lumbar_spine"


@pytest.fixture(scope="module")
def objective():
    ts = parse_targets(TARGETS, "shared.toml")
    model = hand_set_model()
    return Objective(ts, model, parse_free(FREE, model), jnp.float64, prior_sd=None)


def test_trials_share_a_program_padded_to_common_shapes(objective):
    assert [p.name for p in objective.parts] == ["short", "mid", "long"]
    assert len({id(p.vg) for p in objective.parts}) == 1  # one function for every trial
    shapes = [{k: np.shape(v) for k, v in p.extra[0].plans._asdict().items()}
              for p in objective.parts]
    assert shapes[0] == shapes[1] == shapes[2]
    objective(objective.theta0)
    assert objective.parts[0].vg._cache_size() == 1  # compiled once
    # what runs: each trial's own steps and arms ("mid" and "long" have one arm, padded to 2)
    live = [(int(p.extra[0].pre_live), p.extra[0].arm_live.tolist()) for p in objective.parts]
    steps = [12 * objective.ts.trials[n].study.horizon_years for n in ("short", "mid", "long")]
    assert [a for _, a in live] == [[steps[0]] * 2, [steps[1], 0], [steps[2], 0]]
    assert [pre for pre, _ in live] == [prefix_steps(objective.ts.trials[n].study.grid)
                                        for n in ("short", "mid", "long")]


def test_padded_program_reads_what_validate_reads(objective):
    """At the screening constants, the shared program's statistics equal those of the path
    `validate` takes (the same screening, then each trial's chunk program: unpadded, arms
    static), on the same patients."""
    _, _, sim = objective(objective.theta0)
    ts = objective.ts
    results = run_trials(ts, objective.start, lambda trial: None, jnp.float64)
    for name, res in results.items():
        np.testing.assert_array_equal(res.ids, objective.screened[name].ids)
    expected = [target_value(t, ts.trials[t.trial], results[t.trial]) for t in ts.targets]
    np.testing.assert_allclose(sim, expected, rtol=1e-9, atol=1e-9)


def test_one_entry_program_screens_every_trial_as_the_chunk_program_would(objective):
    """Screening simulates the natural history alone, in one program for trials of
    different prefixes and sizes, and finds the entry state the full chunk program finds."""
    ts = objective.ts
    entry_values.clear_cache()
    run_trials(ts, objective.start, lambda trial: None, jnp.float64, values=False)
    assert entry_values._cache_size() == 1
    study = ts.trials["short"].study
    ids = jnp.arange(8, dtype=jnp.uint32)
    screened = entry_runner(study, objective.start, jnp.float64,
                            max(prefix_steps(t.study.grid) for t in ts.trials.values()))(ids)
    grid = study.grid._replace(outputs_per_year=12, rtol=0.0)
    full = make_chunk_runner(study.seed, study.population, objective.start, study.arms, grid,
                             jnp.float64)(ids)
    np.testing.assert_allclose(screened.life.bmd_entry,
                               full.life.bmd_entry, rtol=1e-12)
    np.testing.assert_allclose(screened.life.t_entry, full.life.t_entry, rtol=1e-12)
    np.testing.assert_array_equal(screened.patients.age_entry, full.patients.age_entry)


def test_gradient_through_the_regimen_table_matches_finite_differences(objective):
    theta = np.asarray(objective.theta0) + np.array([0.2, -0.3, 0.1])
    loss, grad, _ = objective(theta)
    h = 1e-5
    fd = np.array([(objective(theta + h * e)[0] - objective(theta - h * e)[0]) / (2 * h)
                   for e in np.eye(theta.size)])
    assert np.all(np.abs(grad) > 0)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-7 * np.abs(fd).max())


def test_regimen_table_holds_every_regimen_once(objective):
    table = regimen_table(objective.ts.trials.values())
    assert [r.agent for r in table] == ["estradiol", "raloxifene"]
