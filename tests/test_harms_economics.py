"""Harms of treatment, economics and the benefit-harm balance: hazards move in the direction
of the trials, the economic read-out matches hand computations, the incremental analysis
finds dominance, identical arms give zero increments, the harm deaths leave untreated
mortality at the life table's level, and bad [economics] input is a clean error."""

import csv
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from bonecohort.cohort import with_x64
from bonecohort.config import load_study, parse_study
from bonecohort.config.economics import EconomicsOptions
from bonecohort.exposure.protocol import Arm, Regimen
from bonecohort.outcome_inputs import (
    EVENT_TYPES,
    draw_inputs,
    economics_setup,
    harm_setup,
    input_spread,
    tables_for,
)
from bonecohort.outcomes.economics import (
    EconomicsSetup,
    discount_factors,
    patient_economics,
)
from bonecohort.outcomes.harms import (
    COMPONENTS,
    ENDOMETRIAL,
    HARMS,
    component,
    harm_years,
    yearly_exposure,
)
from bonecohort.population import PopulationSpec, sample_patient
from bonecohort.shell.balance import acceptability, incremental_analysis
from bonecohort.shell.cli import main
from bonecohort.shell.runner import run_study
from bonecohort.shell.tables import BALANCE
from test_cli import SMALL as CLI_SMALL

HARM_EFFECTS = (Path(__file__).resolve().parents[1] / "src" / "bonecohort" / "data"
                / "epidemiology" / "harms" / "harm_effects.csv")


def read_patients(run_dir):
    """The per-patient parts of a run as one frame, in a canonical order."""
    return pl.read_parquet(Path(run_dir) / "patients" / "*.parquet").sort("arm", "patient_id")


@pytest.fixture(scope="module")
def tables():
    return tables_for("", "test")


@pytest.fixture(scope="module")
def hs(tables):
    return harm_setup(tables)


# --- 1. identical arms ---------------------------------------------------------------------

CEE_MPA = """
  [[arms.regimens]]
  agent = "conjugated_estrogens"
  dose = 0.625
  dose_unit = "mg/day"
  start = "entry"
  duration_years = 5
  [[arms.regimens]]
  agent = "medroxyprogesterone_acetate"
  dose = 2.5
  dose_unit = "mg/day"
  start = "entry"
  duration_years = 5
  uterus_only = true
"""

TWINS = f"""
[study]
name = "twins"
patients = 128
seed = 5
horizon_years = 10
chunk_size = 128

[population]
sex = "female"
age_min = 50
age_max = 55
uterus_intact_fraction = 0.8

[[arms]]
name = "CEE + MPA"
{CEE_MPA}
[[arms]]
name = "CEE + MPA again"
{CEE_MPA}
"""


def test_identical_arms_give_zero_incremental_costs_qalys_and_events(tmp_path):
    study = parse_study(TWINS, str(tmp_path / "twins.toml"))
    out = tmp_path / "out"
    results = run_study(study, out, force=True)
    outcomes = results["outcomes"].filter(pl.col("subgroup") == "all")
    first = outcomes.filter(pl.col("arm") == "CEE + MPA")
    twin = outcomes.filter(pl.col("arm") == "CEE + MPA again")
    assert twin["qalys_inc"].item() == 0.0 and twin["costs_inc"].item() == 0.0
    assert twin["nmb_inc"].item() == 0.0
    diffs = [f"{e}_diff_per_1000" for e in BALANCE if f"{e}_diff_per_1000" in twin.columns]
    assert {f"{h}_diff_per_1000" for h in HARMS} <= set(diffs)
    for col in diffs:
        assert twin[col].item() == 0.0, col
    for arm in (first, twin):
        assert arm["qalys"].item() > 0.0 and arm["costs"].item() > 0.0
        # every year lived is worth less than one QALY (population norms below 1)
        assert arm["life_years_disc"].item() > arm["qalys"].item()
    patients = read_patients(out)
    a, b = (patients.filter(pl.col("arm") == arm).drop("arm")
            for arm in ("CEE + MPA", "CEE + MPA again"))
    assert a.select("qalys", "costs").equals(b.select("qalys", "costs"))
    econ = results["economics"]
    assert set(econ["arm"]) == {"CEE + MPA", "CEE + MPA again"}
    assert all(v is None or math.isfinite(v) for v in econ["icer"].to_list())


# --- 2. discounting --------------------------------------------------------------------------


@with_x64
def _economics_by_hand_case():
    f64 = jnp.float64
    ages = 100
    norm = np.zeros((2, ages))
    norm[0] = 0.95 - 0.003 * np.arange(ages)  # women: falls with age
    norm[1] = 0.5  # men: never used here
    es = EconomicsSetup(
        norm=jnp.asarray(norm, f64),
        first_year=jnp.asarray([0.5, 0.7], f64), later=jnp.asarray([0.9, 0.6], f64),
        cost_first=jnp.asarray([1000.0, 5000.0], f64), cost_later=jnp.asarray([100.0, 50.0], f64),
        drug=jnp.asarray([365.0, 1000.0], f64),
        discount_costs=jnp.asarray(0.03, f64), discount_effects=jnp.asarray(0.05, f64),
        years=jnp.asarray(4.0, f64))
    exposed = jnp.asarray([1.0, 1.0, 1.0, 0.5, 0.0], f64)  # dies in year 3
    flags = np.zeros((5, 2), bool)
    flags[1, 0] = True  # event of type 0 in year 1
    flags[3, 1] = True  # event of type 1 in the year of death
    taken = jnp.asarray([[1.0, 0.0], [1.0, 0.0], [0.5, 0.0], [0.0, 0.0], [0.0, 0.0]], f64)
    age_index = jnp.arange(60, 65, dtype=jnp.int32)
    econ = patient_economics(exposed, jnp.asarray(flags), taken, 0, age_index, es)
    zero = discount_factors(jnp.asarray(0.0, f64), 6, 4)
    full = discount_factors(jnp.asarray(0.03, f64), 5, 5)
    return econ, norm, zero, full


def test_discounting_matches_a_hand_computed_patient():
    econ, norm, zero, full = _economics_by_hand_case()
    u = norm[0, 60:65]
    de = [1.05 ** -k for k in range(4)]
    dc = [1.03 ** -k for k in range(4)]
    life_years = 1 * de[0] + 1 * de[1] + 1 * de[2] + 0.5 * de[3]  # year 4 beyond the horizon
    qalys = (u[0] * de[0] + u[1] * 0.5 * de[1] + u[2] * 0.9 * de[2]
             + 0.5 * u[3] * 0.9 * 0.7 * de[3])
    costs = (365.0 * dc[0]
             + (1000.0 + 365.0) * dc[1]
             + (100.0 + 0.5 * 365.0) * dc[2]
             + (5000.0 + 0.5 * 100.0) * dc[3])
    assert econ.life_years.dtype == jnp.float64
    np.testing.assert_allclose(float(econ.life_years), life_years, rtol=1e-12)
    np.testing.assert_allclose(float(econ.qalys), qalys, rtol=1e-12)
    np.testing.assert_allclose(float(econ.costs), costs, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(zero), [1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(np.asarray(full), [1.03 ** -k for k in range(5)], rtol=1e-14)


# --- 3. incremental analysis -----------------------------------------------------------------


def by_arm(rows):
    return {r["arm"]: r for r in rows}


def test_incremental_analysis_finds_strong_and_extended_dominance():
    # given out of cost order, to check the sorting
    rows = by_arm(incremental_analysis(["C", "A", "D", "B"], [300.0, 0.0, 250.0, 100.0],
                                       [10.6, 10.0, 10.4, 10.5]))
    assert rows["A"]["status"] == "reference" and rows["A"]["icer"] is None
    assert rows["D"]["status"] == "dominated" and rows["D"]["icer"] is None  # by B
    assert rows["B"]["status"] == "efficient" and rows["B"]["compared_with"] == "A"
    assert rows["B"]["icer"] == pytest.approx(100.0 / 0.5)
    assert rows["C"]["status"] == "efficient" and rows["C"]["compared_with"] == "B"
    assert rows["C"]["icer"] == pytest.approx(200.0 / 0.1)

    rows = by_arm(incremental_analysis(["A", "B", "C"], [0.0, 500.0, 1000.0],
                                       [10.0, 10.1, 10.5]))
    # B vs A: 5000 per QALY, C vs B: 1250: B is extendedly dominated, C is compared with A
    assert rows["A"]["status"] == "reference"
    assert rows["B"]["status"] == "extendedly dominated" and rows["B"]["icer"] is None
    assert rows["C"]["status"] == "efficient" and rows["C"]["compared_with"] == "A"
    assert rows["C"]["icer"] == pytest.approx(1000.0 / 0.5)

    # same QALYs at a higher cost is strongly dominated; a cheaper, better arm dominates all
    rows = by_arm(incremental_analysis(["X", "Y", "Z"], [100.0, 200.0, 50.0], [10.0, 10.0, 10.2]))
    assert rows["Z"]["status"] == "reference"
    assert rows["X"]["status"] == rows["Y"]["status"] == "dominated"


def test_incremental_analysis_of_tied_arms_does_not_divide_by_zero():
    rows = by_arm(incremental_analysis(["A", "B", "B twin"], [0.0, 100.0, 100.0],
                                       [10.0, 10.5, 10.5]))
    assert rows["A"]["status"] == "reference"
    assert rows["B"]["status"] == "efficient" and rows["B twin"]["status"] == "dominated"
    icers = [r["icer"] for r in rows.values() if r["icer"] is not None]
    assert icers and all(math.isfinite(v) for v in icers)
    assert pytest.approx(200.0) in icers


def test_acceptability_counts_the_draws_each_arm_wins():
    # draw 0: B gains 0.1 QALY for 1000; draw 1: B gains 0.02 for 1000; draw 2: B loses
    draws = pl.DataFrame({
        "draw": [0, 0, 1, 1, 2, 2], "arm": ["A", "B"] * 3, "subgroup": ["all"] * 6,
        "costs": [0.0, 1000.0, 0.0, 1000.0, 0.0, 1000.0],
        "qalys": [10.0, 10.1, 10.0, 10.02, 10.0, 9.9]})
    acc = acceptability(draws, [0.0, 20000.0, 100000.0])
    p = {(r["willingness_to_pay"], r["arm"]): r["probability_best"]
         for r in acc.iter_rows(named=True)}
    assert p[(0.0, "A")] == 1.0 and p[(0.0, "B")] == 0.0
    # at 20000 per QALY only draw 0 pays off (0.1 x 20000 = 2000 > 1000)
    assert p[(20000.0, "B")] == pytest.approx(1 / 3) and p[(20000.0, "A")] == pytest.approx(2 / 3)
    # at 100000: draws 0 and 1 (0.02 x 100000 = 2000 > 1000)
    assert p[(100000.0, "B")] == pytest.approx(2 / 3)
    for w in (0.0, 20000.0, 100000.0):
        assert p[(w, "A")] + p[(w, "B")] == pytest.approx(1.0)


# --- 4. direction of each harm -----------------------------------------------------------------

YEARS = 10
TREATED = slice(0, 5)
AFTER = slice(5, YEARS)


def regimen(agent, dose, route="", uterus_only=False):
    return Regimen(agent=agent, dose=dose, route=route, start="entry", duration_years=5,
                   uterus_only=uterus_only)


CEE = regimen("conjugated_estrogens", 0.625)
MPA = regimen("medroxyprogesterone_acetate", 2.5, uterus_only=True)
ARMS = {
    "none": None,
    "raloxifene": Arm("raloxifene", (regimen("raloxifene", 60.0),)),
    "transdermal": Arm("transdermal", (regimen("estradiol", 50.0, "transdermal"),),
                       allow_unopposed_estrogen=True),
    "cee": Arm("cee", (CEE,), allow_unopposed_estrogen=True),
    "cee+mpa": Arm("cee+mpa", (CEE, MPA)),
    "tamoxifen": Arm("tamoxifen", (regimen("tamoxifen", 20.0),)),
}


@pytest.fixture(scope="module")
def woman():
    spec = PopulationSpec(age_min=55.0, age_max=55.0, uterus_intact_fraction=1.0)
    p = sample_patient(3, 0, spec, jnp.float64)
    assert float(p.uterus_intact) == 1.0 and float(p.male) == 0.0
    return p


@with_x64
def hazards_of(patient, hs):
    age_index = jnp.floor(patient.age_entry + jnp.arange(YEARS)).astype(jnp.int32)
    out = {}
    for name, arm in ARMS.items():
        ex = yearly_exposure(arm, patient, YEARS, hs.after_years)
        out[name] = (ex, np.asarray(harm_years(patient, age_index, ex, hs).hazard))
    return out


def test_each_agent_moves_its_harms_in_the_trials_direction(woman, hs):
    h = {k: v[1] for k, v in hazards_of(woman, hs).items()}
    o = {name: HARMS.index(name) for name in HARMS}
    none = h["none"]
    assert none.shape == (YEARS, len(HARMS)) and (none > 0).all()
    t = TREATED

    # raloxifene (RUTH): fewer breast cancers, more venous thromboses
    assert (h["raloxifene"][t, o["invasive_breast_cancer"]]
            < none[t, o["invasive_breast_cancer"]]).all()
    for vte in ("dvt", "pe"):
        assert (h["raloxifene"][t, o[vte]] > none[t, o[vte]]).all()
    # transdermal estradiol raises DVT less than oral CEE (Canonico 2008 vs WHI)
    assert (none[t, o["dvt"]] < h["transdermal"][t, o["dvt"]]).all()
    assert (h["transdermal"][t, o["dvt"]] < h["cee"][t, o["dvt"]]).all()
    # CEE + MPA raises breast cancer vs none and vs CEE alone (WHI E+P vs E-alone)
    bc = o["invasive_breast_cancer"]
    assert (h["cee+mpa"][t, bc] > none[t, bc]).all()
    assert (h["cee+mpa"][t, bc] > h["cee"][t, bc]).all()
    # tamoxifen raises endometrial cancer (NSABP P-1)
    en = o["endometrial_cancer"]
    assert (h["tamoxifen"][t, en] > none[t, en]).all()
    # unopposed estrogen with a uterus raises endometrial cancer; opposed by MPA it does not
    assert (h["cee"][t, en] > none[t, en]).all()
    assert (h["cee+mpa"][t, en] <= none[t, en]).all()
    # these effects stop with the treatment (no after-stopping effect in the table for them)
    for name in ("raloxifene", "transdermal", "cee", "cee+mpa", "tamoxifen"):
        np.testing.assert_allclose(h[name][AFTER], none[AFTER], rtol=1e-12, err_msg=name)


def test_hazard_ratios_are_those_of_the_table(woman, hs):
    """On treatment, hazard / untreated hazard = exp(sum of the routes' log hazard ratios)."""
    h = {k: v[1] for k, v in hazards_of(woman, hs).items()}
    effects = {}
    with open(HARM_EFFECTS, newline="") as f:
        for row in csv.DictReader(f):
            if row["period"] == "on_treatment":
                effects[(row["component"], row["outcome"])] = float(row["hr"])

    def hr(comp, outcome):
        return effects.get((comp, outcome), 1.0)

    for j, outcome in enumerate(HARMS):
        ratio = h["raloxifene"][TREATED, j] / h["none"][TREATED, j]
        np.testing.assert_allclose(ratio, hr("raloxifene.oral", outcome), rtol=1e-9)
        ratio = h["cee+mpa"][TREATED, j] / h["none"][TREATED, j]
        np.testing.assert_allclose(
            ratio, hr("conjugated_estrogens.oral", outcome)
            * hr("medroxyprogesterone_acetate.oral", outcome), rtol=1e-9, err_msg=outcome)
    ratio = h["cee"][TREATED, ENDOMETRIAL] / h["none"][TREATED, ENDOMETRIAL]
    np.testing.assert_allclose(ratio, hr("unopposed_estrogen", "endometrial_cancer"), rtol=1e-9)


def test_a_woman_without_a_uterus_has_no_endometrial_risk_and_takes_no_progestogen(woman, hs):
    no_uterus = woman._replace(uterus_intact=jnp.asarray(0.0, jnp.float64))
    with_uterus = hazards_of(woman, hs)
    without = hazards_of(no_uterus, hs)
    for name, (ex, h) in without.items():
        assert (h[:, ENDOMETRIAL] == 0.0).all(), name
        assert (np.asarray(ex.unopposed) == 0.0).all(), name
        other = [j for j in range(len(HARMS)) if j != ENDOMETRIAL]
        assert (h[:, other] > 0.0).all(), name
    mpa = component("medroxyprogesterone_acetate", "oral")
    cee = component("conjugated_estrogens", "oral")
    ex_without, h_without = without["cee+mpa"]
    ex_with, _ = with_uterus["cee+mpa"]
    # the uterus_only progestogen: taken (and costed) only with a uterus
    assert (np.asarray(ex_without.taken)[:, mpa] == 0.0).all()
    assert (np.asarray(ex_without.effect)[:, mpa] == 0.0).all()
    np.testing.assert_array_equal(np.asarray(ex_with.taken)[TREATED, mpa], 1.0)
    np.testing.assert_array_equal(np.asarray(ex_with.taken)[AFTER, mpa], 0.0)
    # the estrogen is taken either way
    np.testing.assert_array_equal(np.asarray(ex_without.taken)[TREATED, cee], 1.0)
    # so CEE + MPA without a uterus is CEE alone
    np.testing.assert_allclose(h_without, without["cee"][1], rtol=1e-12)
    # the unopposed exposure is flagged only with a uterus and only while taken
    np.testing.assert_array_equal(np.asarray(with_uterus["cee"][0].unopposed),
                                  [1.0] * 5 + [0.0] * 5)
    np.testing.assert_array_equal(np.asarray(ex_with.unopposed), 0.0)


# --- 5. harm deaths leave untreated mortality unchanged ---------------------------------------

N_DEFAULT = 8192


@pytest.fixture(scope="module")
def default_runs(tmp_path_factory):
    base = load_study("default")
    assert "harms" not in base.config_text  # harms default to on
    root = tmp_path_factory.mktemp("default_runs")
    runs = {}
    for harms in (True, False):
        text = base.config_text.replace("[outcomes]",
                                        f"[outcomes]\nharms = {str(harms).lower()}")
        study = parse_study(text, base.path).with_overrides(patients=N_DEFAULT)
        assert study.outcomes.harms is harms
        run_study(study, root / f"harms_{harms}", force=True)
        runs[harms] = read_patients(root / f"harms_{harms}")
    return base, runs


def test_harm_deaths_leave_untreated_mortality_at_the_life_table_level(default_runs, hs):
    base, runs = default_runs
    untreated = {k: df.filter(pl.col("arm") == base.reference_arm) for k, df in runs.items()}
    n = untreated[True].height
    assert n == untreated[False].height == N_DEFAULT
    p_on, p_off = (untreated[k]["died"].cast(pl.Float64).mean() for k in (True, False))
    assert 0.0 < p_off < 1.0
    pooled = 0.5 * (p_on + p_off)
    se = math.sqrt(2.0 * pooled * (1.0 - pooled) / n)
    assert abs(p_on - p_off) < 4.0 * se, (p_on, p_off, se)
    # the check has power: without the life table's reduction by the harm deaths at baseline,
    # untreated women would die more by about the expected harm deaths over the horizon
    ages = untreated[True]["age_entry"].to_numpy()
    k = np.arange(base.horizon_years)
    idx = np.minimum(np.floor(ages[:, None] + k[None, :]).astype(int), hs.background.shape[1] - 1)
    extra = np.mean(1.0 - np.exp(-np.asarray(hs.background)[0][idx].sum(axis=1)))
    assert extra > 6.0 * se, (extra, se)
    # harm events happen only with harms on
    for h in HARMS:
        assert f"{h}_year" in runs[True].columns
        assert f"{h}_year" not in runs[False].columns
        assert f"exp_{h}_horizon" not in runs[False].columns
    assert runs[True].filter(pl.col("arm") == base.reference_arm).select(
        pl.any_horizontal([pl.col(f"{h}_year").is_not_null() for h in HARMS]).sum()).item() > 0


# --- 6. bad [economics] input ----------------------------------------------------------------

# the CLI tests' small study (two arms, women 50-52 without a uterus), with 100 patients
SMALL = CLI_SMALL.replace("patients = 12000", "patients = 100")


BAD_ECONOMICS = {
    "rate out of range": ("discount_costs = 0.5", "discount_costs", "0.5"),
    "misspelled key": ("discont_costs = 0.03", "discont_costs", "discount_costs"),
    "unknown route": ('drug_costs = { "estradiol.nasal" = 10 }', "drug_costs",
                      "estradiol.nasal"),
    "negative price": ('drug_costs = { "estradiol.transdermal" = -1 }', "drug_costs",
                       "estradiol.transdermal"),
    "horizon beyond the study": ("horizon_years = 6", "horizon_years", "6"),
    "text for a number": ('willingness_to_pay = "lots"', "willingness_to_pay", "lots"),
}


@pytest.mark.parametrize("case", list(BAD_ECONOMICS))
def test_bad_economics_exits_2_naming_the_field(tmp_path, case):
    line, field, detail = BAD_ECONOMICS[case]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(SMALL + f"\n[economics]\n{line}\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert str(cfg) in res.output and "[economics" in res.output
    assert field in res.output and detail in res.output
    assert "Traceback" not in res.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [cfg]


def test_valid_economics_section_is_parsed():
    study = parse_study(SMALL + """
[economics]
discount_costs = 0.0
discount_effects = 0.05
horizon_years = 4
willingness_to_pay = 50000
drug_costs = { "estradiol.transdermal" = 123.0 }
""", "ok.toml")
    e = study.economics
    assert (e.discount_costs, e.discount_effects, e.horizon_years) == (0.0, 0.05, 4.0)
    assert e.willingness_to_pay == 50000.0 and e.given
    assert e.drug_costs == (("estradiol.transdermal", 123.0),)
    assert not parse_study(SMALL, "ok.toml").economics.given
    es = economics_setup(tables_for("", "test"), e, study.horizon_years)
    assert float(es.drug[COMPONENTS.index("estradiol.transdermal")]) == 123.0
    assert float(es.years) == 4.0
    # the economic horizon is capped at the study's
    es = economics_setup(tables_for("", "test"), EconomicsOptions(), 5)
    assert float(es.years) == 5.0


# --- 7. harm sources -------------------------------------------------------------------------


def agent_blocks(output):
    blocks = {}
    for block in output.strip().split("\n\n"):
        head = block.splitlines()[0]
        blocks[head.split()[0]] = block
    return blocks


def harm_lines(block):
    """The lines under the "harms" header of one agent's block."""
    lines = block.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip().startswith("harms ("))
    return [ln.strip() for ln in lines[start + 1:] if ln.startswith("    ")]


def test_agents_sources_lists_the_harm_hazard_ratios_and_their_sources():
    res = CliRunner().invoke(main, ["agents", "--sources"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    blocks = agent_blocks(res.output)
    ralox = harm_lines(blocks["raloxifene"])
    assert any(ln.startswith("raloxifene.oral invasive_breast_cancer") and "RUTH" in ln
               and "Barrett-Connor" in ln for ln in ralox), ralox
    assert any(ln.startswith("raloxifene.oral dvt") and "RUTH" in ln for ln in ralox)
    cee = harm_lines(blocks["conjugated_estrogens"])
    assert cee and all(ln.startswith("conjugated_estrogens.oral ") for ln in cee), cee
    assert all("WHI" in ln and ("Nelson" in ln or "Anderson" in ln) for ln in cee), cee
    # every hazard ratio of the table is printed under its agent
    with open(HARM_EFFECTS, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["component"] != "unopposed_estrogen"]
    assert rows
    for r in rows:
        agent = r["component"].split(".")[0]
        lines = [ln for ln in harm_lines(blocks[agent])
                 if ln.startswith(f"{r['component']} {r['outcome']}")]
        assert any(f"HR {float(r['hr']):.2f}" in ln for ln in lines), (r["component"],
                                                                       r["outcome"], lines)
    # agents without harm effects in the table say so, the others do not
    with_effects = {r["component"].split(".")[0] for r in rows}
    for agent, block in blocks.items():
        header = next(ln for ln in block.splitlines() if ln.strip().startswith("harms ("))
        assert ("none found" in header) == (agent not in with_effects), (agent, header)
    assert set(blocks) - with_effects  # e.g. the growth-hormone secretagogues
    # without --sources, no harm lines
    plain = CliRunner().invoke(main, ["agents"], catch_exceptions=False)
    assert plain.exit_code == 0 and "raloxifene" in agent_blocks(plain.output)
    assert "harms (hazard ratio" not in plain.output
    assert "raloxifene.oral invasive_breast_cancer" not in plain.output


# --- 8. probabilistic inputs -----------------------------------------------------------------


@pytest.fixture(scope="module")
def economic_inputs(tables, hs):
    opts = EconomicsOptions(drug_costs=(("estradiol.transdermal", 500.0),))
    es = economics_setup(tables, opts, 30)
    spread = input_spread(tables, opts)
    return hs, es, spread


def test_parameter_draws_are_deterministic_bounded_and_centred(economic_inputs):
    hs, es, spread = economic_inputs
    draw = jax.jit(lambda k: draw_inputs(hs, es, spread, k))
    h1, e1 = draw(jax.random.key(1))
    h1b, e1b = draw(jax.random.key(1))
    h2, e2 = draw(jax.random.key(2))
    for a, b in ((h1, h1b), (e1, e1b)):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    spread_hr = np.asarray(spread.log_hr) > 0
    assert spread_hr.any()
    assert (np.asarray(h1.log_hr)[spread_hr] != np.asarray(h2.log_hr)[spread_hr]).all()
    assert not np.allclose(np.asarray(e1.cost_first), np.asarray(e2.cost_first))
    # inputs without stated uncertainty are not drawn
    fixed = ~spread_hr
    np.testing.assert_array_equal(np.asarray(h1.log_hr)[fixed], np.asarray(hs.log_hr)[fixed])
    e2_route = COMPONENTS.index("estradiol.transdermal")
    assert float(e1.drug[e2_route]) == float(e2.drug[e2_route]) == 500.0  # user's price

    keys = jax.random.split(jax.random.key(7), 4000)
    hd, ed = jax.vmap(lambda k: draw_inputs(hs, es, spread, k))(keys)
    for name in ("first_year", "later"):
        v = np.asarray(getattr(ed, name))
        assert v.min() >= 0.0 and v.max() <= 1.0, name
    for name in ("cost_first", "cost_later", "drug"):
        v, mean = np.asarray(getattr(ed, name)), np.asarray(getattr(es, name))
        assert (v[:, mean > 0] > 0).all() and (v[:, mean == 0] == 0).all(), name
    # the mean of the draws of a log hazard ratio is its table value (within 4 SE)
    c, o = component("raloxifene", "oral"), HARMS.index("invasive_breast_cancer")
    sd = float(spread.log_hr[c, o])
    assert sd > 0
    draws = np.asarray(hd.log_hr)[:, c, o]
    assert abs(draws.mean() - float(hs.log_hr[c, o])) < 4 * sd / math.sqrt(len(keys))
    assert draws.std() == pytest.approx(sd, rel=0.1)
    assert float(hs.log_hr[c, o]) == pytest.approx(math.log(0.56))
    means = np.asarray(hd.log_hr).mean(axis=0)
    sds = np.asarray(spread.log_hr)
    assert (np.abs(means - np.asarray(hs.log_hr)) <= 4 * sds / math.sqrt(len(keys)) + 1e-12).all()
    # draws of the event types cover every event of the economic read-out
    assert ed.first_year.shape == (len(keys), len(EVENT_TYPES))


def test_whi_virtual_trial_hazard_ratios_lie_inside_the_published_intervals():
    """Acceptance: the WHI E+P virtual trial's breast cancer, stroke, VTE, CHD and hip
    fracture hazard ratios (and the other outcomes of the file) lie inside Rossouw 2002's 95 %
    intervals; the harm ratios move the right way and the hip ratio (bone) is below 1."""
    from bonecohort.fit.targets import load_targets
    from bonecohort.shell.validate import validation_table

    table = with_x64(validation_table)(load_targets("whi_ep_harms"), patients=600)
    rows = {r["id"]: r for r in table.iter_rows(named=True)}
    for tid in ("WHI_BC", "WHI_STROKE", "WHI_VTE", "WHI_CHD", "WHI_HIP"):
        assert rows[tid]["fits"], rows[tid]
    assert rows["WHI_BC"]["simulated"] > 1.0 and rows["WHI_VTE"]["simulated"] > 1.5
    assert rows["WHI_HIP"]["simulated"] < 1.0
    assert table["fits"].all()
