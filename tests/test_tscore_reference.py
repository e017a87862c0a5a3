"""T-scores by sex: men's reported T-scores and their eligibility use the men's reference;
fracture hazards keep the FRAX (women's) reference for both sexes."""

import numpy as np
import polars as pl
from click.testing import CliRunner

from bonecohort.model.params import NHANES_MEN, NHANES_WOMEN
from bonecohort.shell.cli import main

BOTH = """
[study]
name = "both"
patients = 600
seed = 3
horizon_years = 2
chunk_size = 600

[population]
sex = "both"
age_min = 60
age_max = 70
uterus_intact_fraction = 0

[[arms]]
name = "none"
{extra}
"""


def run(tmp_path, label, extra=""):
    cfg = tmp_path / f"{label}.toml"
    cfg.write_text(BOTH.format(extra=extra))
    res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(tmp_path / label), "-q"])
    assert res.exit_code == 0, res.output
    return pl.read_parquet(tmp_path / label / "patients" / "*.parquet").sort("patient_id")


def test_each_sex_is_scored_against_its_own_reference(tmp_path):
    df = run(tmp_path, "default")
    for sex, ref in (("female", NHANES_WOMEN), ("male", NHANES_MEN)):
        rows = df.filter(pl.col("sex") == sex)
        assert rows.height > 100
        expected = (rows["fn_bmd_entry"].to_numpy() - ref.mean) / ref.sd
        np.testing.assert_allclose(rows["fn_tscore_entry"].to_numpy(), expected, rtol=1e-6)
    # another men's reference moves men's T-scores only; fractures (FRAX units) do not move
    other = run(tmp_path, "other", "[outcomes]\ntscore_reference_mean_male = 0.858\n"
                                   "tscore_reference_sd_male = 0.120")
    men = pl.col("sex") == "male"
    assert df.filter(~men)["fn_tscore_entry"].equals(other.filter(~men)["fn_tscore_entry"])
    assert (other.filter(men)["fn_tscore_entry"].to_numpy()
            > df.filter(men)["fn_tscore_entry"].to_numpy()).all()
    assert df["exp_p10_hip"].equals(other["exp_p10_hip"])


def test_men_enter_on_their_own_tscore(tmp_path):
    df = run(tmp_path, "eligible", "[eligibility]\ntscore_max = -1.0")
    men = df.filter(pl.col("sex") == "male")
    assert men.height > 0 and (men["fn_tscore_entry"] <= -1.0).all()
    by_men_reference = (men["fn_bmd_entry"].to_numpy() - NHANES_MEN.mean) / NHANES_MEN.sd
    np.testing.assert_allclose(men["fn_tscore_entry"].to_numpy(), by_men_reference, rtol=1e-6)
    # with the women's reference some of these men would not be eligible
    assert ((men["fn_bmd_entry"].to_numpy() - NHANES_WOMEN.mean) / NHANES_WOMEN.sd > -1.0).any()
