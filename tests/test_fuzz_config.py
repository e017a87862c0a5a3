"""Property-based: malformed study configs never crash the loader.

Each example starts from a valid config and breaks it in one of several ways that make it
invalid for sure (syntax damage, a required key removed, a value of the wrong type or out of
range, an unknown key). ``bonecohort run`` must answer every one with exit code 2, a
one-paragraph message naming the file, no traceback, and nothing written.
"""

import string

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bonecohort.shell.cli import main
from bonecohort.config import (ARM_KEYS, ELIGIBILITY_KEYS, OUTCOME_KEYS, POPULATION_KEYS,
                               REGIMEN_KEYS, STUDY_KEYS)

VALID = """[study]
name = "fuzz"
patients = 100
seed = 3
horizon_years = 5

[population]
sex = "female"
age_min = 50
age_max = 60

[[arms]]
name = "none"

[[arms]]
name = "E2"
  [[arms.regimens]]
  agent = "estradiol"
  route = "transdermal"
  dose = 50
  dose_unit = "ug/day"
  duration_years = 5
  [[arms.regimens]]
  agent = "progesterone"
  dose = 200
  dose_unit = "mg/day"
  duration_years = 5
"""

# (line to replace, replacements that are invalid)
WRONG_VALUES = {
    "patients = 100": ["patients = 0", "patients = -5", 'patients = "100"', "patients = 1.5",
                       "patients = [100]", "patients = true"],
    "seed = 3": ["seed = -1", "seed = 4294967296", 'seed = "x"', "seed = 3.5"],
    "horizon_years = 5": ["horizon_years = 0", "horizon_years = 500", "horizon_years = {}"],
    'sex = "female"': ['sex = "f"', "sex = 1", 'sex = ""', 'sex = ["female"]'],
    "age_min = 50": ["age_min = -50", "age_min = 1e9", 'age_min = "fifty"', "age_min = nan",
                     "age_min = 70"],
    'name = "none"': ['name = ""', "name = 3", 'name = "E2"'],
    'agent = "estradiol"': ['agent = "estrogen"', "agent = 1", 'agent = "testosterone"'],
    'route = "transdermal"': ['route = "nasal"', "route = 2"],
    "dose = 50": ["dose = -50", "dose = 0", "dose = 1e6", 'dose = "50"', "dose = inf"],
    'dose_unit = "ug/day"': ['dose_unit = "mg/day"', 'dose_unit = "ug"', "dose_unit = 50"],
    "duration_years = 5\n  [[arms.regimens]]": ["duration_years = -5\n  [[arms.regimens]]",
                                                "duration_years = 0\n  [[arms.regimens]]"],
}
REQUIRED_LINES = ["age_min = 50", "age_max = 60", 'name = "E2"', 'dose_unit = "ug/day"',
                  "dose = 200", '  agent = "progesterone"', "[population]"]
SECTIONS = {"[study]": STUDY_KEYS, "[population]": POPULATION_KEYS,
            '[[arms]]\nname = "none"': ARM_KEYS, "  [[arms.regimens]]": REGIMEN_KEYS}
ALL_KEYS = (STUDY_KEYS | POPULATION_KEYS | ARM_KEYS | REGIMEN_KEYS | OUTCOME_KEYS
            | ELIGIBILITY_KEYS)
JUNK = ["[[[", "= =", "[study", '"unterminated', "key = ", "\x00", "]]", "a.b.c = 1\na = 2"]


@st.composite
def malformed(draw):
    kind = draw(st.sampled_from(["wrong", "drop", "unknown", "junk", "truncate"]))
    if kind == "wrong":
        line = draw(st.sampled_from(sorted(WRONG_VALUES)))
        return VALID.replace(line, draw(st.sampled_from(WRONG_VALUES[line])), 1)
    if kind == "drop":
        return VALID.replace(draw(st.sampled_from(REQUIRED_LINES)), "", 1)
    if kind == "unknown":
        header = draw(st.sampled_from(sorted(SECTIONS)))
        key = draw(st.text(string.ascii_lowercase + "_", min_size=1, max_size=12))
        if key in ALL_KEYS:
            key += "_unknown"
        return VALID.replace(header, f"{header}\n{key} = 1", 1)
    if kind == "junk":
        lines = VALID.splitlines()
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(JUNK)))
        return "\n".join(lines)
    # truncated inside the E2 arm's regimens: a broken header, a regimen without its
    # required keys, or estradiol left without its progestogen
    first = VALID.index("[[arms.regimens]]") + 2
    cut = draw(st.integers(first, VALID.index('  dose_unit = "mg/day"')))
    return VALID[:cut]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(text=malformed())
def test_malformed_configs_get_a_clean_error(tmp_path_factory, text):
    root = tmp_path_factory.mktemp("fuzz")
    cfg = root / "bad.toml"
    cfg.write_text(text)
    res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(root / "out")])
    assert res.exit_code == 2, (text, res.output)
    message = res.output.strip()
    assert message.startswith("error: ") and str(cfg) in message, message
    assert "\n" not in message and "Traceback" not in message
    assert sorted(p.name for p in root.iterdir()) == ["bad.toml"]
