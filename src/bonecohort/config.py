"""Study configuration: TOML file -> validated ``Study`` (imperative shell).

Every problem is reported as one ``ConfigError`` paragraph naming the file, the section and the
field, with a "did you mean" hint for misspelled keys. Nothing here touches JAX.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .agents import AGENTS
from .population import PopulationSpec
from .simulate import Arm, Grid, Regimen


class ConfigError(Exception):
    """Invalid user input; the message is a complete, user-facing paragraph."""


@dataclass(frozen=True)
class Study:
    path: str
    config_text: str
    config_hash: str
    name: str
    description: str
    patients: int
    seed: int
    horizon_years: int
    chunk_size: int
    dtype: str
    steps_per_year: int
    sex: str
    population: PopulationSpec
    arms: tuple
    reference_arm: str

    @property
    def grid(self) -> Grid:
        return Grid(prefix_years=math.ceil(self.population.age_max - 30.0),
                    horizon_years=self.horizon_years, steps_per_year=self.steps_per_year)

    def with_overrides(self, patients=None, seed=None, chunk_size=None) -> "Study":
        from dataclasses import replace

        where = "command line"
        if patients is not None:
            _check_int(patients, where, "options", "--patients", 1, 10**9, self.path)
        if seed is not None:
            _check_int(seed, where, "options", "--seed", 0, 2**32 - 1, self.path)
        if chunk_size is not None:
            _check_int(chunk_size, where, "options", "--chunk-size", 1, 10**7, self.path)
        return replace(self, patients=self.patients if patients is None else patients,
                       seed=self.seed if seed is None else seed,
                       chunk_size=self.chunk_size if chunk_size is None else chunk_size)


SECTIONS = {"study", "population", "arms"}
STUDY_KEYS = {"name", "description", "patients", "seed", "horizon_years", "chunk_size", "dtype",
              "steps_per_year", "reference_arm"}
POPULATION_KEYS = {"sex", "age_min", "age_max"}
ARM_KEYS = {"name", "regimens"}
REGIMEN_KEYS = {"agent", "dose", "dose_unit", "start", "duration_years"}
START_KINDS = {"fmp": "years after the final menstrual period (0 = at the FMP)",
               "entry": "years after study entry", "age": "age in years"}


def _fail(path, section, field, problem):
    raise ConfigError(f"{path}: [{section}] {field}: {problem}")


def _unknown_keys(table: dict, allowed: set, path, section):
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            _fail(path, section, key, f"unknown key.{hint} Allowed keys: "
                  f"{', '.join(sorted(allowed))}.")


def _check_int(value, path, section, field, lo, hi, file=None):
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(file or path, section, field, f"expected an integer, got {value!r}.")
    if not lo <= value <= hi:
        _fail(file or path, section, field, f"must be between {lo} and {hi}, got {value}.")
    return value


def _check_number(value, path, section, field, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(path, section, field, f"expected a finite number, got {value!r}.")
    if not lo <= value <= hi:
        _fail(path, section, field, f"must be between {lo} and {hi}, got {value}.")
    return float(value)


def _check_str(value, path, section, field, choices=None):
    if not isinstance(value, str) or not value.strip():
        _fail(path, section, field, f"expected a non-empty string, got {value!r}.")
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(value, sorted(choices), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        _fail(path, section, field, f"'{value}' is not one of {', '.join(sorted(choices))}.{hint}")
    return value


def _table(value, path, section):
    if not isinstance(value, dict):
        _fail(path, section, "(section)", f"expected a table, got {type(value).__name__}.")
    return value


def _parse_regimen(r, path, section, horizon):
    r = _table(r, path, section)
    _unknown_keys(r, REGIMEN_KEYS, path, section)
    for key in ("agent", "dose", "start"):
        if key not in r:
            _fail(path, section, key, "missing (required for every regimen).")
    agent = AGENTS[_check_str(r["agent"], path, section, "agent", set(AGENTS))]
    unit = r.get("dose_unit", agent.dose_unit)
    if unit != agent.dose_unit:
        _fail(path, section, "dose_unit", f"{agent.name} is dosed in '{agent.dose_unit}', "
              f"got '{unit}'.")
    lo, hi = agent.dose_range
    dose = _check_number(r["dose"], path, section, "dose", lo, hi)
    start = r["start"]
    if isinstance(start, str):
        kind = _check_str(start, path, section, "start", {"fmp", "entry"})
        value = 0.0
    else:
        start = _table(start, path, f"{section}.start")
        if len(start) != 1:
            _fail(path, section, "start", "give exactly one of "
                  + "; ".join(f"{k} = <{v}>" for k, v in START_KINDS.items()) + ".")
        kind, value = next(iter(start.items()))
        _check_str(kind, path, section, "start", set(START_KINDS))
        bounds = (20.0, 100.0) if kind == "age" else (-30.0, 100.0)
        value = _check_number(value, path, section, f"start.{kind}", *bounds)
    duration = _check_number(r.get("duration_years", horizon), path, section, "duration_years",
                             1.0 / 12.0, 100.0)
    return Regimen(agent=agent.name, dose=dose, start=kind, start_value=value,
                   duration_years=duration)


def _check_steps(value, path):
    _check_int(value, path, "study", "steps_per_year", 12, 360)
    if value % 12:
        _fail(path, "study", "steps_per_year", f"must be a multiple of 12 (whole steps per "
              f"month, so that treatment switches fall on step boundaries), got {value}.")
    return value


def parse_study(text: str, path: str = "<config>") -> Study:
    """Validate a study TOML text; raise ``ConfigError`` naming file, section and field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from None
    if not raw:
        raise ConfigError(f"{path}: the file is empty; a study needs [study], [population] "
                          "and at least one [[arms]] table (see configs/default.toml).")
    _unknown_keys(raw, SECTIONS, path, "top level")
    for sec in SECTIONS:
        if sec not in raw:
            _fail(path, sec, "(section)", "missing; see configs/default.toml for an example.")
    study = _table(raw["study"], path, "study")
    _unknown_keys(study, STUDY_KEYS, path, "study")
    pop = _table(raw["population"], path, "population")
    _unknown_keys(pop, POPULATION_KEYS, path, "population")

    name = _check_str(study.get("name", Path(path).stem), path, "study", "name")
    horizon = _check_int(study.get("horizon_years", 30), path, "study", "horizon_years", 1, 70)
    sex = _check_str(pop.get("sex", "female"), path, "population", "sex", {"female"})
    for key in ("age_min", "age_max"):
        if key not in pop:
            _fail(path, "population", key, "missing (age range at study entry, years).")
    age_min = _check_number(pop["age_min"], path, "population", "age_min", 30.0, 100.0)
    age_max = _check_number(pop["age_max"], path, "population", "age_max", 30.0, 100.0)
    if age_max < age_min:
        _fail(path, "population", "age_max", f"must be >= age_min ({age_min}), got {age_max}.")

    arms_raw = raw["arms"]
    if not isinstance(arms_raw, list) or not arms_raw:
        _fail(path, "arms", "(section)", "expected one or more [[arms]] tables.")
    arms, names = [], set()
    for i, arm in enumerate(arms_raw):
        section = f"arms[{i}]"
        arm = _table(arm, path, section)
        _unknown_keys(arm, ARM_KEYS, path, section)
        arm_name = _check_str(arm.get("name"), path, section, "name")
        if arm_name in names:
            _fail(path, section, "name", f"duplicate arm name '{arm_name}'.")
        names.add(arm_name)
        regs = arm.get("regimens", [])
        if not isinstance(regs, list):
            _fail(path, section, "regimens", "expected a list of [[arms.regimens]] tables.")
        section_of = lambda j: f"arms[{i}] ('{arm_name}').regimens[{j}]"  # noqa: E731
        arms.append(Arm(arm_name, tuple(_parse_regimen(r, path, section_of(j), horizon)
                                        for j, r in enumerate(regs))))
    reference = _check_str(study.get("reference_arm", arms[0].name), path, "study",
                           "reference_arm", names)
    return Study(
        path=path, config_text=text,
        config_hash=hashlib.sha256(text.encode()).hexdigest(),
        name=name,
        description=str(study.get("description", "")),
        patients=_check_int(study.get("patients", 10000), path, "study", "patients", 1, 10**9),
        seed=_check_int(study.get("seed", 0), path, "study", "seed", 0, 2**32 - 1),
        horizon_years=horizon,
        chunk_size=_check_int(study.get("chunk_size", 10000), path, "study", "chunk_size", 1,
                              10**7),
        dtype=_check_str(study.get("dtype", "float32"), path, "study", "dtype",
                         {"float32", "float64"}),
        steps_per_year=_check_steps(study.get("steps_per_year", 24), path),
        sex=sex,
        population=PopulationSpec(age_min=age_min, age_max=age_max),
        arms=tuple(arms),
        reference_arm=reference,
    )


def load_study(path) -> Study:
    """Read and validate a study file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot be read ({exc}).") from None
    return parse_study(text, str(p))
