"""Fractures and deaths: the untreated population reproduces the tables; FRAX-style
probabilities behave; sampled events agree with the hazards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonecohort.cohort import cast_tree, chunk_ids, make_chunk_runner
from bonecohort.config import parse_study
from bonecohort.data.epidemiology import load_tables
from bonecohort.outcomes.hazards import FractureSite, expected_outcomes
from bonecohort.outcomes.readout import arm_hazards, frax_style_probability, prior_at_entry
from bonecohort.population import PopulationSpec
from bonecohort.exposure.protocol import Arm
from bonecohort.reference_cache import outcome_setup
from bonecohort.fit.parameters import default_model
from bonecohort.solve.life_course import Grid

STUDY = parse_study("""
[study]
name = "outcomes"
[population]
age_min = 50
age_max = 55
[[arms]]
name = "none"
""", "outcomes.toml")


@pytest.fixture(scope="module")
def setup():
    return outcome_setup(STUDY.outcomes, default_model())


def expected_hip_incidence(setup, male_fraction, n=3000, seed=21):
    """Expected hip fractures per person-year by integer age, untreated, entry 50-55,
    followed to 95 (alive-weighted, counting the raised risk after a prior fracture)."""
    spec = PopulationSpec(age_min=50.0, age_max=55.0, male_fraction=male_fraction)
    grid = Grid(prefix_years=25, horizon_years=40)
    runner = make_chunk_runner(seed, spec, default_model(), (Arm("none"),), grid, jnp.float32)
    chunk = runner(chunk_ids(0, n, n))
    patients, sim = chunk.patients, chunk.life
    s64 = cast_tree(setup._replace(probability_ages=()), jnp.float64)

    def one(p, bmd_entry, bmd_rel, oc_entry, oc):
        p = jax.tree.map(lambda v: v.astype(jnp.float64) if v.dtype == jnp.float32 else v, p)
        traj, h, mu = arm_hazards(p, bmd_entry, bmd_rel, oc_entry, oc, s64)
        e = expected_outcomes(h, mu, s64.fracture, prior_at_entry(p, s64))
        return traj.age_index, e.hip_events, e.alive

    f64 = lambda v: jnp.asarray(v, jnp.float64)  # noqa: E731
    idx, events, alive = jax.jit(jax.vmap(one))(
        patients, f64(sim.bmd_entry), f64(sim.bmd_rel[:, 0]), f64(sim.oc_entry),
        f64(sim.oc[:, 0]))
    return np.asarray(idx), np.asarray(events), np.asarray(alive)


@pytest.mark.parametrize("sex,male_fraction", [(0, 0.0), (1, 1.0)])
def test_untreated_hip_incidence_reproduces_the_table_by_band(setup, sex, male_fraction):
    idx, events, alive = expected_hip_incidence(setup, male_fraction)
    table = load_tables().incidence[0, sex]
    for lo in range(50, 95, 5):  # 50-54 ... 90-94 (entry 50-55, followed 40 years)
        band = (idx >= lo) & (idx < lo + 5)
        simulated = events[band].sum() / alive[band].sum()
        expected = (table[idx[band]] * alive[band]).sum() / alive[band].sum()
        assert abs(simulated / expected - 1.0) < 0.10, (lo, simulated, expected)


def test_sampled_hip_fractures_match_the_table_in_old_women(setup):
    """Sampled events (per person-year alive) in women 80-85 at entry followed 5 years."""
    spec = PopulationSpec(age_min=80.0, age_max=85.0)
    grid = Grid(prefix_years=55, horizon_years=5)
    n = 20000
    runner = make_chunk_runner(8, spec, default_model(), (Arm("none"),), grid, jnp.float32,
                               setup)
    chunk = runner(chunk_ids(0, n, n))
    patients, events = chunk.patients, chunk.outcomes.arms.events
    hips = np.asarray(events.fractures)[:, 0, FractureSite.HIP].sum()
    person_years = np.asarray(events.life_years)[:, 0].sum()
    table = load_tables().incidence[0, 0]
    ages = np.asarray(patients.age_entry)[:, None] + np.arange(5) + 0.5
    expected = table[np.floor(ages).astype(int)].mean()
    assert abs(hips / person_years / expected - 1.0) < 0.10, (hips / person_years, expected)


@pytest.fixture(scope="module")
def setup64(setup):
    return cast_tree(setup._replace(probability_ages=()), jnp.float64)


def test_ten_year_probability_rises_with_age_and_falls_with_tscore(setup64):
    for sex in (0, 1):
        by_age = [frax_style_probability(float(a), sex, -2.5, setup64) for a in (50, 60, 70, 80)]
        for (h0, m0), (h1, m1) in zip(by_age[:-1], by_age[1:]):
            assert h1 > h0 and m1 > m0
        by_t = [frax_style_probability(65.0, sex, t, setup64) for t in (0.0, -1.0, -2.0, -3.0)]
        for (h0, m0), (h1, m1) in zip(by_t[:-1], by_t[1:]):
            assert h1 > h0 and m1 > m0


def test_hip_probability_of_65_year_old_woman_near_frax():
    """US FRAX (Caucasian), woman of 65 with no clinical risk factor and femoral-neck T-score
    -2.3: 10-year probability of hip fracture 2.2 %, of a major osteoporotic fracture 10 %
    (Endotext, Osteoporosis: clinical evaluation, Figure 6, FRAX online for US Caucasians)."""
    setup = cast_tree(outcome_setup(STUDY.outcomes, default_model())._replace(probability_ages=()),
                      jnp.float64)
    hip, mof = (float(x) for x in frax_style_probability(65.0, 0, -2.3, setup))
    assert 2.2 / 1.5 < 100 * hip < 2.2 * 1.5
    assert 10.0 / 1.5 < 100 * mof < 10.0 * 1.5


def test_reference_population_is_stored_on_disk_and_read_back(tmp_path, monkeypatch, setup):
    """A second process reads the reference population (the same numbers) instead of
    simulating it again; BONECOHORT_CACHE=off stores nothing."""
    from collections import OrderedDict

    import bonecohort.reference_cache as ref

    model, epi = default_model(), load_tables()
    args = (model, epi, STUDY.outcomes.tscore_reference.female)
    monkeypatch.setenv("BONECOHORT_CACHE", str(tmp_path))
    monkeypatch.setattr(ref, "_MEMORY", OrderedDict())
    computed = ref.reference_norm(*args)
    (stored,) = tmp_path.glob("reference-*.npz")
    monkeypatch.setattr(ref, "_MEMORY", OrderedDict())
    monkeypatch.setattr(ref, "simulate_reference", None)  # a read must not simulate
    loaded = ref.reference_norm(*args)
    for a, b in zip(computed, loaded):
        np.testing.assert_array_equal(a, b)
    stored.unlink()
    monkeypatch.setenv("BONECOHORT_CACHE", "off")
    assert ref._disk_path(("any",)) is None
