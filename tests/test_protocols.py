"""Directions and orderings of effect of the agents and protocol features (not tuned numbers)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonecohort.cohort import chunk_ids, make_chunk_runner
from bonecohort.config import ConfigError, load_study, parse_study
from bonecohort.population import PopulationSpec
from bonecohort.exposure.protocol import Arm, Regimen
from bonecohort.fit.parameters import default_model
from bonecohort.solve.life_course import Grid

FN, LS = 0, 1
N = 300


def e2_patch(dose, years=5.0, **kw):
    return Regimen("estradiol", dose, "transdermal", "entry", 0.0, years, **kw)


WOMEN_ARMS = (
    Arm("none"),
    Arm("E2 14", (e2_patch(14.0),)),
    Arm("E2 25", (e2_patch(25.0),)),
    Arm("E2 50", (e2_patch(50.0),)),
    Arm("E2 100", (e2_patch(100.0),)),
    Arm("E2 50 half adherence", (e2_patch(50.0, adherence=0.5),)),
    Arm("raloxifene 60", (Regimen("raloxifene", 60.0, "oral", "entry", 0.0, 5.0),)),
    Arm("E2 50 for 3 y", (e2_patch(50.0, years=3.0),)),
)


def run(spec, arms, horizon, n=N, seed=5):
    runner = make_chunk_runner(seed, spec, default_model(), arms, Grid(
        int(np.ceil(spec.age_max - 30)), horizon), jnp.float64)
    chunk = runner(chunk_ids(0, n, n))
    return chunk.patients, np.asarray(chunk.life.bmd_rel)  # (n, arms, sites, years)


@pytest.fixture(scope="module")
def women():
    # early postmenopausal women
    spec = PopulationSpec(age_min=55.0, age_max=60.0, fmp_mean=50.0, fmp_min=45.0,
                          fmp_max=54.0)
    return run(spec, WOMEN_ARMS, horizon=6)[1]


def arm(bv, name, site, year):
    return bv[:, [a.name for a in WOMEN_ARMS].index(name), site, year - 1]


@pytest.mark.parametrize("site", [FN, LS])
def test_more_estradiol_less_loss_monotone_in_dose(women, site):
    doses = [arm(women, name, site, 5) for name in ("none", "E2 14", "E2 25", "E2 50", "E2 100")]
    for lower, higher in zip(doses[:-1], doses[1:]):
        assert np.all(higher > lower)  # every patient, not only on average


@pytest.mark.parametrize("site", [FN, LS])
def test_half_adherence_lies_between_none_and_full(women, site):
    none, half, full = (arm(women, n, site, 5) for n in ("none", "E2 50 half adherence", "E2 50"))
    assert np.all(none < half) and np.all(half < full)


@pytest.mark.parametrize("site", [FN, LS])
def test_raloxifene_between_no_treatment_and_full_dose_estradiol(women, site):
    none, ral, e2 = (arm(women, n, site, 5).mean() for n in ("none", "raloxifene 60", "E2 100"))
    assert none < ral < e2


@pytest.mark.parametrize("site", [FN, LS])
def test_loss_resumes_after_stopping_faster_than_in_never_users(women, site):
    stopped = arm(women, "E2 50 for 3 y", site, 4) / arm(women, "E2 50 for 3 y", site, 3)
    never = arm(women, "none", site, 4) / arm(women, "none", site, 3)
    assert stopped.mean() < 1.0  # loss resumes
    assert stopped.mean() < never.mean()  # and is faster than in never-users of the same age


MEN_ARMS = (
    Arm("none"),
    Arm("T", (Regimen("testosterone", 50.0, "gel", "entry", 0.0, 5.0),)),
    Arm("T + AI", (Regimen("testosterone", 50.0, "gel", "entry", 0.0, 5.0),
                   Regimen("anastrozole", 1.0, "oral", "entry", 0.0, 5.0))),
    Arm("AI", (Regimen("anastrozole", 1.0, "oral", "entry", 0.0, 5.0),)),
)


@pytest.fixture(scope="module")
def hypogonadal_men():
    spec = PopulationSpec(age_min=60.0, age_max=65.0, male_fraction=1.0,
                          hypogonadal_fraction=1.0, hypogonadal_onset_min=45.0,
                          hypogonadal_onset_max=55.0)
    patients, bv = run(spec, MEN_ARMS, horizon=3)
    assert np.all(np.asarray(patients.male) == 1.0)
    return bv


@pytest.mark.parametrize("site", [FN, LS])
def test_men_testosterone_and_anastrozole_orderings(hypogonadal_men, site):
    none, t, t_ai, ai = (hypogonadal_men[:, a, site, 2].mean() for a in range(4))
    assert t > 1.0 > none  # testosterone raises BMD in hypogonadal men
    assert ai < none  # anastrozole alone lowers BMD
    assert t_ai < t  # adding anastrozole blunts the testosterone gain


def test_surgical_menopause_loses_more_in_first_two_years_than_natural():
    """Same women, menopause at the same age: by bilateral oophorectomy or naturally."""
    from bonecohort.cohort import cast_tree, reference_steady_state
    from bonecohort.population import sample_patient
    from bonecohort.solve.life_course import simulate_patient

    spec = PopulationSpec(age_min=45.0, age_max=55.0)
    model = cast_tree(default_model(), jnp.float64)
    steady = reference_steady_state(default_model(), jnp.float64)
    grid = Grid(prefix_years=25, horizon_years=2)

    def two_year_change(pid, surgical):
        p = sample_patient(9, pid, spec, jnp.float64)
        event = p.fmp_age
        p = p._replace(age_entry=event,
                       surgery_age=jnp.where(surgical, event, jnp.inf),
                       fmp_age=jnp.where(surgical, event + 5.0, event))
        return simulate_patient(p, model, steady, (Arm("none"),), grid).bmd_rel[0, :, 1]

    ids = jnp.arange(200, dtype=jnp.uint32)
    natural = np.asarray(jax.jit(jax.vmap(lambda i: two_year_change(i, False)))(ids))
    surgical = np.asarray(jax.jit(jax.vmap(lambda i: two_year_change(i, True)))(ids))
    assert np.all(surgical < natural)  # per woman, at both sites
    assert np.all(surgical < 1.0)


def test_tsec_needs_no_progestogen_but_estrogen_alone_does(tmp_path):
    base = """
[study]
name = "uterus"
[population]
age_min = 50
age_max = 60
[[arms]]
name = "treated"
  [[arms.regimens]]
  agent = "{agent}"
  dose = {dose}
  dose_unit = "{unit}"
"""
    tsec = base.format(agent="conjugated_estrogens_bazedoxifene", dose=0.45, unit="mg CE/day")
    assert parse_study(tsec, "tsec.toml").arms[0].regimens[0].agent.endswith("bazedoxifene")
    cee = base.format(agent="conjugated_estrogens", dose=0.625, unit="mg/day")
    with pytest.raises(ConfigError, match="arm 'treated'.*progestogen.*allow_unopposed_estrogen"):
        parse_study(cee, "cee.toml")
    allowed = cee.replace('name = "treated"', 'name = "treated"\nallow_unopposed_estrogen = true')
    assert parse_study(allowed, "cee.toml").arms[0].allow_unopposed_estrogen


def test_shipped_studies_use_every_agent_and_route():
    from pathlib import Path

    from bonecohort.exposure.agents import AGENTS

    root = Path(__file__).resolve().parents[1] / "configs" / "studies"
    used = set()
    for path in sorted(root.glob("*.toml")):
        for a in load_study(path).arms:
            used |= {(r.agent, r.route) for r in a.regimens}
    expected = {(name, route) for name, agent in AGENTS.items() for route in agent.routes}
    assert expected <= used, expected - used


def test_fracture_evidence_against_the_bmd_pathway_is_printed_with_testosterone_arms():
    """TRAVERSE (Snyder 2024) found more fractures with testosterone: every summary of a study
    with a testosterone arm carries that warning, with its numbers."""
    from bonecohort.shell.summarize import agent_notes

    notes = agent_notes(load_study("trt_anastrozole").arms)
    assert any(n.startswith("WARNING") and "TRAVERSE" in n and "1.43" in n for n in notes)
    assert not any("TRAVERSE" in n for n in agent_notes(load_study("default").arms))


def test_ce_bazedoxifene_carries_bazedoxifene_20mg_at_every_ce_strength():
    """CE/bazedoxifene tablets hold bazedoxifene 20 mg at CE 0.45 and 0.625 mg (Lindsay 2009,
    Pinkerton 2014): the SERM occupancy is bazedoxifene 20 mg's whatever the CE content,
    while the estradiol-equivalent exposure scales with the CE dose."""
    from bonecohort.exposure.protocol import regimen_exposure

    low, high = (regimen_exposure(Regimen("conjugated_estrogens_bazedoxifene", d), None)
                 for d in (0.45, 0.625))
    alone = regimen_exposure(Regimen("bazedoxifene", 20.0), None)
    assert low["serm_occ"] == high["serm_occ"] == pytest.approx(alone["serm_occ"])
    assert high["e2"] / low["e2"] == pytest.approx(0.625 / 0.45)


def test_fitted_bazedoxifene_occupancy_pulls_ce_bazedoxifene_toward_bazedoxifene_alone():
    """The fitted occupancy multiplies S/K_S of every route carrying the SERM (and so its
    agonist term), leaves the CE exposure alone, and a more occupied receptor moves the
    complex's ER activity toward the SERM's own efficacy (hormones.er_activity)."""
    from bonecohort.exposure.protocol import regimen_exposure
    from bonecohort.fit.parameters import check_path, get_value, set_values
    from bonecohort.model.hormones import Hormones, er_activity

    model = default_model()
    free = check_path("agents.occupancy.bazedoxifene", model)
    tsec = Regimen("conjugated_estrogens_bazedoxifene", 0.625)

    def activity(occupancy):
        agents = set_values(model, [free], [occupancy]).agents
        x = regimen_exposure(tsec, agents)
        return x, float(er_activity(Hormones(e2=10.0 + x["e2"], t=0.0, serm_occ=x["serm_occ"],
                                             serm_ago=x["serm_ago"]), model.hormones))

    (x1, a1), (x2, a2) = activity(1.0), activity(2.0)
    assert x2["serm_occ"] == pytest.approx(2 * x1["serm_occ"])
    assert x2["serm_ago"] == pytest.approx(2 * x1["serm_ago"]) and x2["e2"] == x1["e2"]
    eps = float(get_value(model, check_path("agents.efficacy.bazedoxifene", model)))
    assert a1 > eps  # CEE 0.625's activity lies above the SERM's own efficacy
    assert a2 < a1
    with pytest.raises(ValueError, match="agents.occupancy"):
        check_path("agents.occupancy.estradiol", model)
