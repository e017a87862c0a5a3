"""`bonecohort validate`: virtual trials read out the statistics that targets name."""

import polars as pl
from click.testing import CliRunner

from bonecohort.shell.cli import main

TARGETS = """
[target_set]
name = "mini"

[[trials]]
name = "early postmenopause"
horizon_years = 3
patients = 150
  [trials.population]
  sex = "female"
  age_min = 50
  age_max = 56
  uterus_intact_fraction = 0
  [trials.eligibility]
  years_since_menopause_min = 0.5
  [[trials.arms]]
  name = "placebo"
  [[trials.arms]]
  name = "estradiol"
    [[trials.arms.regimens]]
    agent = "estradiol"
    route = "transdermal"
    dose = 50
    dose_unit = "ug/day"
    duration_years = 3

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
id = "RATE"
trial = "early postmenopause"
arm = "placebo"
site = "lumbar_spine"
window = { from = "entry", start_years = 0.0, end_years = 2.0 }
measure = "annualized_pct_change"
observed = -1.5
source = "test"

[[targets]]
id = "GAIN"
trial = "early postmenopause"
arm = "estradiol"
comparator = "placebo"
site = "total_hip"
model_site = "femoral_neck"
window = { from = "entry", start_years = 0.0, end_years = 2.0 }
measure = "pct_change_difference_vs_comparator"
observed = 2.0
source = "test"
"""


def test_validate_reads_out_each_target_and_writes_table_and_plot(tmp_path):
    path = tmp_path / "mini.toml"
    path.write_text(TARGETS)
    res = CliRunner().invoke(main, ["validate", str(path), "--out", str(tmp_path / "v"), "-q"])
    assert res.exit_code == 0, res.output
    table = pl.read_parquet(tmp_path / "v" / "validation.parquet")
    assert table["id"].to_list() == ["LOSS", "RATE", "GAIN"]
    assert pl.read_csv(tmp_path / "v" / "validation.csv").height == 3
    assert (tmp_path / "v" / "validation.svg").read_text().lstrip().startswith("<?xml")
    sim = dict(zip(table["id"], table["simulated"]))
    assert sim["LOSS"] < 0  # untreated women after menopause lose spine BMD
    assert abs(sim["RATE"] - sim["LOSS"] / 2.0) < 1e-6  # annualized over the 2-year window
    assert sim["GAIN"] > 0  # estradiol preserves bone against placebo
    row = table.row(0, named=True)
    assert abs(row["difference"] - (row["simulated"] - row["observed"])) < 1e-9
    assert row["fits"] == (abs(row["difference"]) <= 1.0)
    assert "LOSS" in res.output and "BMD targets within tolerance" in res.output


def test_validate_refuses_a_bad_targets_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(TARGETS.replace('trial = "early postmenopause"\narm = "placebo"',
                                    'trial = "early menopause"\narm = "placebo"', 1))
    res = CliRunner().invoke(main, ["validate", str(path), "--out", str(tmp_path / "v")])
    assert res.exit_code == 2 and "Did you mean 'early postmenopause'" in res.output
    assert not (tmp_path / "v").exists()


FRACTURES = TARGETS.replace("horizon_years = 3\npatients = 150", "horizon_years = 7\npatients = 60"
                            ).replace("duration_years = 3", "duration_years = 2").replace(
    "age_min = 50\n  age_max = 56", "age_min = 62\n  age_max = 70").replace(
    "years_since_menopause_min = 0.5", "years_since_menopause_min = 5") + "".join(
    f"""
[[targets]]
id = "{tid}"
trial = "early postmenopause"
arm = "estradiol"
{'comparator = "placebo"' if measure == "hazard_ratio" else ""}
site = "{site}"
window = {{ from = "entry", start_years = {start}{f", end_years = {end}" if end else ""} }}
measure = "{measure}"
observed = {0.7 if measure == "hazard_ratio" else 5.0}
{"ci95 = [0.5, 0.9]" if measure == "hazard_ratio" else ""}
source = "test"
""" for tid, site, measure, start, end in (
        ("HR01", "hip_fracture", "hazard_ratio", 0, 1),
        ("HR57", "hip_fracture", "hazard_ratio", 5, 7),
        ("HR07", "hip_fracture", "hazard_ratio", 0, 7),
        ("VERT", "clinical_vertebral_fracture", "hazard_ratio", 0, 2),
        ("CUM2", "major_osteoporotic_fracture", "cumulative_risk", 0, 2),
        ("CUM7", "major_osteoporotic_fracture", "cumulative_risk", 0, 7),
        ("LIFE", "major_osteoporotic_fracture", "lifetime_risk", 0, None)))


def test_fracture_targets_and_seed(tmp_path):
    """Hazard ratios over windows 0-1, 5-7 and 0-7 differ (estradiol for 2 years: its effect
    fades after stopping); risks rise with the window; --seed gives other patients, the same
    ones each time."""
    path = tmp_path / "fx.toml"
    path.write_text(FRACTURES)

    def run(out, *extra):
        res = CliRunner().invoke(main, ["validate", str(path), "--out", str(tmp_path / out),
                                        "-q", *extra])
        assert res.exit_code == 0, res.output
        table = pl.read_parquet(tmp_path / out / "validation.parquet")
        return table, dict(zip(table["id"], table["simulated"]))

    table, sim = run("a", "--seed", "3")
    assert set(table["seed"]) == {3} and set(table["verified"]) == {False}
    assert sim["HR01"] < 1.0 and sim["VERT"] < 1.0
    assert len({round(sim[k], 4) for k in ("HR01", "HR57", "HR07")}) == 3
    assert sim["HR01"] < sim["HR07"] < sim["HR57"]
    assert 0 < sim["CUM2"] < sim["CUM7"] == sim["LIFE"]
    again = run("b", "--seed", "3")[1]
    other = run("c", "--seed", "4")[1]
    assert again == sim
    assert other["LOSS"] != sim["LOSS"]
    res = CliRunner().invoke(main, ["validate", str(path), "--seed", "-1", "--out",
                                    str(tmp_path / "d")])
    assert res.exit_code == 2 and "--seed" in res.output
