"""The targets file format: the shipped public targets and clean errors for bad files."""

import csv
import math
from pathlib import Path

import pytest

from bonecohort.config import ConfigError
from bonecohort.fit.targets import load_targets, parse_targets

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT / "configs" / "targets" / "public.toml"
CSV = ROOT / "configs" / "targets" / "sources" / "targets_public.csv"


def test_every_published_target_is_encoded_with_its_value_and_source():
    ts = load_targets(PUBLIC)
    rows = list(csv.DictReader(CSV.open()))
    by_id = {t.id: t for t in ts.targets}
    assert set(r["id"] for r in rows) <= set(by_id)
    # targets beyond the CSV carry a full citation (journal, year, volume:pages)
    for t in ts.targets:
        if t.id not in {r["id"] for r in rows}:
            assert any(ch.isdigit() for ch in t.source) and ":" in t.source and t.note, t.id
    for r in rows:
        t = by_id[r["id"]]
        assert t.observed == pytest.approx(float(r["value"])), r["id"]
        assert t.site == r["site"] and t.measure == r["measure"] and t.source == r["source"]
        assert t.n == (int(r["n"]) if r["n"] else None)
        trial = ts.trials[t.trial]
        sex = {"F": 0.0, "M": 1.0}[r["sex"]]
        assert trial.study.population.male_fraction == sex, r["id"]
        assert (t.comparator is not None) == (r["measure"] in (
            "pct_change_difference_vs_comparator", "hazard_ratio"))
    # WHI hip-fracture HR: the interval 0.47-0.96 gives the log-scale standard error
    fx01 = by_id["FX01"]
    assert ts.tolerance(fx01) == pytest.approx(1.96 * math.log(0.96 / 0.47) / 3.92)
    # fractures by site, and the ATAC trial runs 2 years past the end of treatment
    assert {by_id[i].fracture for i in ("FX01", "FX02", "FX03")} == {"hip", "mof", "vertebral"}
    assert by_id["FX03"].window.end == 5.6 and ts.trials["ATAC_bone"].horizon == 7
    assert all(r.duration_years == 5 for a in ts.trials["ATAC_bone"].study.arms
               for r in a.regimens)


MINIMAL = """
[target_set]
name = "mini"

[[trials]]
name = "men"
horizon_years = 3
  [trials.population]
  sex = "male"
  age_min = 60
  age_max = 70
  [[trials.arms]]
  name = "placebo"
  [[trials.arms]]
  name = "testosterone"
    [[trials.arms.regimens]]
    agent = "testosterone"
    route = "gel"
    dose = 50
    dose_unit = "mg/day"
    duration_years = 3

[[targets]]
id = "T1"
trial = "men"
arm = "testosterone"
comparator = "placebo"
site = "lumbar_spine"
window = { from = "entry", start_years = 0.0, end_years = 2.0 }
measure = "pct_change_difference_vs_comparator"
observed = 2.0
source = "made up for a test"
"""


def test_minimal_file_parses():
    ts = parse_targets(MINIMAL, "mini.toml")
    (t,) = ts.targets
    assert (t.arm, t.comparator, t.model_site, t.window.years) == ("testosterone", "placebo",
                                                                   "lumbar_spine", 2.0)


BAD = {
    "unknown trial": (('trial = "men"', 'trial = "mne"'), "[targets[0] ('T1')] trial", "Did you mean 'men'"),
    "missing comparator": (('comparator = "placebo"\n', ''), "comparator: missing", None),
    "same comparator": (('comparator = "placebo"', 'comparator = "testosterone"'), "must differ", None),
    "window past horizon": (('end_years = 2.0', 'end_years = 4.0'), "outside trial 'men'", None),
    "fmp window for men": (('from = "entry"', 'from = "fmp"'), "needs a female trial", None),
    "unsimulated site": (('site = "lumbar_spine"', 'site = "total_hip"'), "model_site: missing", None),
    "hr on bmd": (('measure = "pct_change_difference_vs_comparator"', 'measure = "hazard_ratio"'), "does not apply", None),
    "trial population": (('age_min = 60', 'age_min = 20'), "[trials[0] ('men').population] age_min", None),
    "trial dose unit": (('dose_unit = "mg/day"', 'dose_unit = "mg"'), "[trials[0] ('men').arms[1]", None),
    "no source": (('source = "made up for a test"', 'source = ""'), "source: missing", None),
    "unknown key": (('observed = 2.0', 'observed = 2.0\nobserverd = 1'), "Did you mean 'observed'", None),
    "header key": (('name = "mini"', 'name = "mini"\ntolerance = 1'), "[target_set] tolerance", None),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_targets_get_one_clear_message(case):
    (old, new), expected, hint = BAD[case]
    assert old in MINIMAL
    with pytest.raises(ConfigError) as err:
        parse_targets(MINIMAL.replace(old, new, 1), "mini.toml")
    msg = str(err.value)
    assert msg.startswith("mini.toml: ") and expected in msg and "\n" not in msg
    if hint:
        assert hint in msg


def test_duplicate_ids_and_hazard_ratio_without_interval_are_refused():
    two = MINIMAL + MINIMAL[MINIMAL.index("[[targets]]"):]
    with pytest.raises(ConfigError, match="duplicate target id 'T1'"):
        parse_targets(two, "mini.toml")
    hr = MINIMAL.replace('site = "lumbar_spine"', 'site = "hip_fracture"').replace(
        'measure = "pct_change_difference_vs_comparator"', 'measure = "hazard_ratio"').replace(
        "observed = 2.0", "observed = 0.7")
    with pytest.raises(ConfigError, match="needs its 95 % interval"):
        parse_targets(hr, "mini.toml")
    assert parse_targets(hr.replace("observed = 0.7", "observed = 0.7\nci95 = [0.5, 0.9]"),
                         "mini.toml").targets[0].fracture == "hip"
