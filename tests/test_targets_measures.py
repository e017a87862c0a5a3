"""Fractures by site and the fracture measures of targets files: the vertebral hazard follows
the spine, the turnover exponent is per site and fittable, hazard ratios are read over their
own window, cumulative and lifetime risks are one minus survival, and the optional weight and
verified flags of a target."""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from bonecohort.config import ConfigError
from bonecohort.data import SHIPPED_PARAMETERS
from bonecohort.fit.parameters import (DEFAULT_FREE, check_path, get_value, load_parameters,
                                       set_values)
from bonecohort.fit.targets import parse_targets
from bonecohort.fit.trials import TrialResult, target_value
from bonecohort.model.params import NHANES_WOMEN, FractureParams, Site, hand_set_model
from bonecohort.outcomes.hazards import (CV_SPINE, KINDS, FractureSite, Norm, relative_hazards,
                                         window_outcomes)
from bonecohort.outcomes.readout import OutcomeSetup, arm_hazards

AGES = 111


class Patient(NamedTuple):
    male: jnp.ndarray
    age_entry: jnp.ndarray
    peak_fn_bmd: jnp.ndarray


def flat_setup(fp=FractureParams()) -> OutcomeSetup:
    """Incidence, mortality and norms flat in age: hazards differ only by BMD and turnover."""
    ones = jnp.ones((4, 2, AGES))
    norm = Norm(tbar=jnp.zeros((2, 2, AGES)), c=ones, turnover_mean=ones,
                prior_prevalence=jnp.zeros((2, AGES)))
    return OutcomeSetup(incidence=0.01 * ones, qx=jnp.full((2, AGES), 0.01), norm=norm,
                        fracture=fp, tscore_mean=NHANES_WOMEN.mean, tscore_sd=NHANES_WOMEN.sd,
                        by_age=200.0)


def hazards_with(bmd_rel, oc=None, fp=FractureParams()):
    years = bmd_rel.shape[1]
    patient = Patient(jnp.asarray(0.0), jnp.asarray(65.0), jnp.asarray(0.85))
    oc = jnp.ones((2, years)) if oc is None else oc
    return arm_hazards(patient, jnp.ones(2), bmd_rel, jnp.ones(2), oc, flat_setup(fp))[1]


def test_vertebral_hazard_follows_the_spine_and_the_others_the_femoral_neck():
    base = jnp.ones((2, 6))
    h0 = hazards_with(base)
    spine = hazards_with(base.at[Site.LUMBAR_SPINE].set(0.9))
    neck = hazards_with(base.at[Site.FEMORAL_NECK].set(0.9))
    others = [FractureSite.HIP, FractureSite.FOREARM, FractureSite.HUMERUS]
    v = FractureSite.VERTEBRAL
    np.testing.assert_allclose(spine[:, others], h0[:, others], rtol=1e-6)
    np.testing.assert_allclose(neck[:, v], h0[:, v], rtol=1e-6)
    # a spine 10 % below peak is 0.1 / CV_SPINE SD lower: x 2.3 per SD (Marshall 1996)
    np.testing.assert_allclose(spine[1:, v] / h0[1:, v], 2.3 ** (0.1 / CV_SPINE), rtol=1e-4)
    assert np.all(neck[1:, others] > 1.1 * h0[1:, others])


def test_turnover_exponent_is_per_fracture_site():
    fp = FractureParams(gamma=(0.1, 0.5, 0.2, 0.3))
    z = jnp.zeros(2)
    spine_turnover = relative_hazards(65.0, z, jnp.array([1.0, 2.0]), fp)
    np.testing.assert_allclose(spine_turnover, [1.0, 2 ** 0.5, 1.0, 1.0], rtol=1e-6)
    neck_turnover = relative_hazards(65.0, z, jnp.array([2.0, 1.0]), fp)
    np.testing.assert_allclose(neck_turnover, [2 ** 0.1, 1.0, 2 ** 0.2, 2 ** 0.3], rtol=1e-6)


def test_each_exponent_is_fittable_by_its_path_and_the_shared_path_sets_all():
    model = hand_set_model()
    paths = [f.path for f in DEFAULT_FREE if f.path.startswith("fracture.")]
    assert paths == [f"fracture.gamma.{s.key}" for s in FractureSite]
    vert = check_path("fracture.gamma.vertebral", model)
    changed = set_values(model, [vert], [0.9])
    np.testing.assert_allclose(changed.fracture.gamma, [0.3, 0.9, 0.3, 0.3])
    assert float(get_value(changed, vert)) == pytest.approx(0.9)
    shared = check_path("fracture.gamma", model)
    np.testing.assert_allclose(set_values(changed, [shared], [0.5]).fracture.gamma, [0.5] * 4)
    assert float(get_value(changed, shared)) == pytest.approx(0.45)
    with pytest.raises(ValueError, match="hip, vertebral, forearm, humerus"):
        check_path("fracture.gamma.spine", model)
    # the shipped file names one shared exponent: every site gets it
    text = SHIPPED_PARAMETERS.read_text()
    line = next(x for x in text.splitlines() if x.startswith('"fracture.gamma'))
    loaded = load_parameters(SHIPPED_PARAMETERS, model)
    if line.startswith('"fracture.gamma" '):
        value = float(line.split("=")[1])
        np.testing.assert_allclose(loaded.fracture.gamma, [value] * 4)


def test_risk_is_one_minus_survival_and_rises_with_the_window():
    h = jnp.array([0.01, 0.02, 0.03, 0.04, 0.05])
    no_death = jnp.zeros(5)
    for end in (1.0, 2.5, 5.0):
        _, risk, time = window_outcomes(h, no_death, 0.0, end)
        cum = sum(float(h[k]) * min(1.0, max(0.0, end - k)) for k in range(5))
        assert float(risk) == pytest.approx(1.0 - np.exp(-cum), rel=1e-6)
    risks = [float(window_outcomes(h, 0.02 + no_death, 0.0, e)[1]) for e in (1, 2, 3.5, 5)]
    assert risks == sorted(risks) and len(set(risks)) == 4
    # competing death lowers the risk; the window's rate is its hazard within one year
    assert risks[-1] < 1.0 - np.exp(-float(h.sum()))
    _, events, time = window_outcomes(h, 0.02 + no_death, 2.0, 3.0)
    assert float(events / time) == pytest.approx(0.03, rel=1e-6)


TRIAL = """
[target_set]
name = "windows"

[[trials]]
name = "women"
horizon_years = 7
  [trials.population]
  sex = "female"
  age_min = 60
  age_max = 70
  [[trials.arms]]
  name = "placebo"
  [[trials.arms]]
  name = "treated"
"""


def fracture_target(tid, measure, start, end, site="hip_fracture", extra=""):
    window = f"{{ from = \"entry\", start_years = {start}" + (
        f", end_years = {end} }}" if end is not None else " }")
    comparator = 'comparator = "placebo"\n' if measure == "hazard_ratio" else ""
    spread = "ci95 = [0.1, 5.0]\n" if measure == "hazard_ratio" else ""
    return (f'\n[[targets]]\nid = "{tid}"\ntrial = "women"\narm = "treated"\n{comparator}'
            f'site = "{site}"\nwindow = {window}\nmeasure = "{measure}"\nobserved = 0.5\n'
            f'{spread}source = "test"\n{extra}')


def synthetic_result(n=3, years=7):
    """Hip hazards halved by treatment in the first 2 years only; vertebral unchanged."""
    base = np.linspace(0.01, 0.03, n)[:, None] * np.ones(years)
    first = np.zeros((n, 2, years, len(KINDS)))
    first[:, 0, :, 0] = base
    first[:, 1, :, 0] = base * np.where(np.arange(years) < 2, 0.5, 1.0)
    first[:, :, :, 1] = base[:, None]
    death = np.full((n, 2, years), 0.02)
    return TrialResult(np.arange(n), np.full(n, 65.0), np.full(n, 50.0),
                       np.ones((n, 2, 2, years * 12 + 1)), (first, death), n)


def test_hazard_ratio_is_read_over_its_own_window():
    windows = {"A": (0, 1), "B": (5, 7), "C": (0, 7), "D": (0, 1.5), "E": (0, 2), "V": (0, 7)}
    text = TRIAL + "".join(fracture_target(k, "hazard_ratio", *w) for k, w in windows.items()
                           if k != "V")
    text += fracture_target("V", "hazard_ratio", 0, 7, "clinical_vertebral_fracture")
    ts = parse_targets(text, "windows.toml")
    res = synthetic_result()
    hr = {t.id: float(target_value(t, ts.trials["women"], res)) for t in ts.targets}
    # pooled over patients of different risk, so within 1 % of the hazards' ratio
    assert hr["A"] == pytest.approx(0.5, rel=1e-2)  # one year inside the halved hazard
    assert hr["B"] == pytest.approx(1.0, rel=1e-2)  # after it
    assert 0.55 < hr["C"] < 0.95
    assert hr["D"] == pytest.approx(0.5, rel=1e-2) and hr["E"] == pytest.approx(0.5, rel=1e-2)
    assert len({round(hr[k], 4) for k in "ABC"}) == 3  # windows 0-1, 5-7, 0-7 differ
    assert hr["V"] == pytest.approx(1.0, rel=1e-9)  # the vertebral hazards are the same
    # numpy and JAX give the same statistic (validate and the fit share it)
    jres = TrialResult(res.ids, res.age_entry, res.menopause_age, res.bv,
                       tuple(jnp.asarray(a) for a in res.hazards), res.screened)
    for t in ts.targets:
        assert float(target_value(t, ts.trials["women"], jres, jnp)) == pytest.approx(
            hr[t.id], rel=1e-5)


def test_cumulative_and_lifetime_risk_targets():
    text = TRIAL + fracture_target("C2", "cumulative_risk", 0, 2) + fracture_target(
        "C7", "cumulative_risk", 0, 7) + fracture_target("L", "lifetime_risk", 0, None)
    ts = parse_targets(text, "risk.toml")
    by_id = {t.id: t for t in ts.targets}
    assert by_id["L"].window.end == 7.0
    res = synthetic_result()
    risk = {k: float(target_value(t, ts.trials["women"], res)) for k, t in by_id.items()}
    assert 0 < risk["C2"] < risk["C7"] == pytest.approx(risk["L"])
    first, death = res.hazards
    h, mu = first[:, 1, :2, 0], death[:, 1, :2]
    # with no death the 2-year risk would be 1 - exp(-cumulative hazard); death lowers it
    assert risk["C2"] < 100 * np.mean(1 - np.exp(-h.sum(axis=1)))
    assert risk["C2"] > 100 * np.mean(1 - np.exp(-h.sum(axis=1))) * np.exp(-mu.sum(axis=1)).min()


def test_weight_and_verified_flags():
    text = TRIAL + fracture_target("W", "cumulative_risk", 0, 2,
                                   extra="weight = 2.5\nverified = true\n")
    (t,) = parse_targets(text, "flags.toml").targets
    assert (t.weight, t.verified) == (2.5, True)
    (t,) = parse_targets(TRIAL + fracture_target("W", "cumulative_risk", 0, 2),
                         "flags.toml").targets
    assert (t.weight, t.verified) == (1.0, False)


BAD = {
    "negative weight": ("weight = -1\n", "weight: must be between 0.0 and"),
    "text weight": ('weight = "heavy"\n', "weight: expected a finite number"),
    "verified text": ('verified = "yes"\n', "verified: expected true or false"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_flags_name_the_field(case):
    extra, expected = BAD[case]
    with pytest.raises(ConfigError) as err:
        parse_targets(TRIAL + fracture_target("W", "cumulative_risk", 0, 2, extra=extra),
                      "flags.toml")
    msg = str(err.value)
    assert msg.startswith("flags.toml: [targets[0] ('W')] ") and expected in msg
    assert "\n" not in msg


def test_fractional_horizon_and_fracture_windows():
    text = TRIAL.replace("horizon_years = 7", "horizon_years = 5.6")
    ts = parse_targets(text + fracture_target("H", "hazard_ratio", 0, 5.6), "f.toml")
    assert (ts.trials["women"].horizon, ts.trials["women"].study.horizon_years) == (5.6, 6)
    with pytest.raises(ConfigError, match="outside trial 'women'"):
        parse_targets(text + fracture_target("H", "hazard_ratio", 0, 5.8), "f.toml")
    with pytest.raises(ConfigError, match="window.end_years: a lifetime risk runs to the end"):
        parse_targets(text + fracture_target("L", "lifetime_risk", 0, 5), "f.toml")
    with pytest.raises(ConfigError, match="window.from"):
        parse_targets(text + fracture_target("R", "cumulative_risk", 0, 2).replace(
            'from = "entry"', 'from = "fmp"'), "f.toml")


def test_the_shipped_file_documents_every_measure_field_and_site():
    """public.toml documents the format (its text is fixed: the shipped fit records its
    sha256); the harm outcomes are documented by the file that reads them."""
    from bonecohort.data import TARGETS_DIR
    from bonecohort.fit.targets import FRACTURES, HARM_SITES, MEASURES, TARGET_KEYS

    def header(name):
        text = (TARGETS_DIR / name).read_text()
        return "\n".join(line for line in text.splitlines() if line.startswith("#"))

    fractures = [k for k in FRACTURES if k not in HARM_SITES + ("venous_thromboembolism",)]
    for word in (*MEASURES, *TARGET_KEYS, *fractures, "horizon_years", "tolerance_pp"):
        assert word in header("public.toml"), word
    for word in (*HARM_SITES, "venous_thromboembolism"):
        assert word in header("whi_ep_harms.toml"), word
