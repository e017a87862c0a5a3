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
from .integrate import METHODS
from .population import REGIMEN_SLOTS, PopulationSpec
from .protocol import Arm, Regimen
from .simulate import Grid


class ConfigError(Exception):
    """Invalid user input; the message is a complete, user-facing paragraph."""


@dataclass(frozen=True)
class OutcomeOptions:
    """[outcomes]: how fractures and deaths are read out (outcomes.py)."""

    by_age: float = 80.0  # fractures "by age" are those before this age
    probability_ages: tuple = ()  # ages at which to report 10-year fracture probabilities
    tscore_mean: float = 0.858  # g/cm2, femoral-neck T-score reference (NHANES III women)
    tscore_sd: float = 0.120
    tables: str = ""  # directory of epidemiology tables; "" = configs/epidemiology


@dataclass(frozen=True)
class Eligibility:
    """[eligibility]: who enters the study, judged on the simulated history at entry."""

    years_since_menopause: tuple = (-math.inf, math.inf)
    tscore: tuple = (-math.inf, math.inf)  # femoral-neck T-score at entry
    testosterone: tuple = (0.0, math.inf)  # ng/dL at entry (untreated)
    uterus: str = "any"  # "intact", "absent" or "any" (women)

    @property
    def is_open(self) -> bool:
        return self == Eligibility()


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
    solver: str
    population: PopulationSpec
    arms: tuple
    reference_arm: str
    outcomes: OutcomeOptions = OutcomeOptions()
    eligibility: Eligibility = Eligibility()

    @property
    def grid(self) -> Grid:
        return Grid(prefix_years=math.ceil(self.population.age_max - 30.0),
                    horizon_years=self.horizon_years, steps_per_year=self.steps_per_year,
                    solver=self.solver)

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
OPTIONAL_SECTIONS = {"outcomes", "eligibility"}
STUDY_KEYS = {"name", "description", "patients", "seed", "horizon_years", "chunk_size", "dtype",
              "steps_per_year", "solver", "reference_arm"}
POPULATION_KEYS = {"sex", "age_min", "age_max", "male_fraction", "uterus_intact_fraction",
                   "surgical_menopause_fraction", "surgery_age_min", "surgery_age_max",
                   "hypogonadal_fraction"}
ARM_KEYS = {"name", "regimens", "allow_unopposed_estrogen"}
OUTCOME_KEYS = {"by_age", "probability_ages", "tscore_reference_mean", "tscore_reference_sd",
                "tables"}
ELIGIBILITY_KEYS = {"years_since_menopause_min", "years_since_menopause_max", "tscore_min",
                    "tscore_max", "testosterone_min", "testosterone_max", "uterus"}
REGIMEN_KEYS = {"name", "agent", "route", "dose", "dose_unit", "start", "duration_years",
                "adherence", "persistence"}
START_KINDS = {"years_from_fmp": "years after the final menstrual period (0 = at the FMP)",
               "years_from_baseline": "years after study entry",
               "age": "age in years",
               "after": "name of an earlier regimen of the arm; starts when it stops"}
START_SHORTHANDS = {"fmp": ("fmp", 0.0), "entry": ("entry", 0.0), "baseline": ("entry", 0.0)}
SEXES = {"female": 0.0, "male": 1.0, "both": 0.5}


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


def _parse_start(r, path, section, earlier):
    """-> (kind, value, after_index) from a regimen's ``start``."""
    if "start" not in r:
        return "entry", 0.0, -1
    start = r["start"]
    if isinstance(start, str):
        kind, value = START_SHORTHANDS[_check_str(start, path, section, "start",
                                                  set(START_SHORTHANDS))]
        return kind, value, -1
    start = _table(start, path, f"{section}.start")
    if len(start) != 1:
        _fail(path, section, "start", "give exactly one of "
              + "; ".join(f"{k} = <{v}>" for k, v in START_KINDS.items())
              + ", or one of the strings 'fmp', 'entry'.")
    key, value = next(iter(start.items()))
    _check_str(key, path, section, "start", set(START_KINDS))
    if key == "after":
        target = _check_str(value, path, section, "start.after")
        if target not in earlier:
            _fail(path, section, "start.after", f"'{target}' is not the name of an earlier "
                  f"regimen of this arm (named so far: {', '.join(earlier) or 'none'}).")
        return "after", 0.0, earlier.index(target)
    if key == "age":
        return "age", _check_number(value, path, section, "start.age", 20.0, 100.0), -1
    kind = {"years_from_fmp": "fmp", "years_from_baseline": "entry"}[key]
    return kind, _check_number(value, path, section, f"start.{key}", -30.0, 100.0), -1


def _parse_regimen(r, path, section, horizon, sexes, earlier):
    r = _table(r, path, section)
    _unknown_keys(r, REGIMEN_KEYS, path, section)
    for key in ("agent", "dose", "dose_unit"):
        if key not in r:
            _fail(path, section, key, "missing (every regimen needs agent, dose and "
                  "dose_unit; `bonecohort agents` lists them).")
    agent = AGENTS[_check_str(r["agent"], path, section, "agent", set(AGENTS))]
    if "route" in r:
        route_name = _check_str(r["route"], path, section, "route", set(agent.routes))
    elif len(agent.routes) == 1:
        route_name = next(iter(agent.routes))
    else:
        _fail(path, section, "route", f"missing; {agent.name} has routes "
              f"{', '.join(agent.routes)}.")
    route = agent.routes[route_name]
    unit = _check_str(r["dose_unit"], path, section, "dose_unit")
    if unit != route.dose_unit:
        _fail(path, section, "dose_unit", f"{agent.name} ({route_name}) is dosed in "
              f"'{route.dose_unit}', got '{unit}'.")
    dose = r["dose"]
    _check_number(dose, path, section, "dose", 0.0, math.inf)
    for sex in sexes:
        if sex not in route.dose_range:
            _fail(path, section, "agent", f"{agent.name} ({route_name}) is not used in "
                  f"{'men' if sex == 'male' else 'women'}; this population includes them "
                  f"(set [population] sex, or choose another agent).")
        lo, hi = route.dose_range[sex]
        if not lo <= dose <= hi:
            _fail(path, section, "dose", f"{dose} {unit} of {agent.name} ({route_name}) is "
                  f"outside the plausible range for {'men' if sex == 'male' else 'women'}, "
                  f"{lo}-{hi} {unit}.")
    kind, value, after = _parse_start(r, path, section, earlier)
    if kind == "fmp" and "male" in sexes:
        _fail(path, section, "start", "a start relative to the final menstrual period needs "
              "a population of women; use years_from_baseline or age.")
    duration = _check_number(r.get("duration_years", horizon), path, section, "duration_years",
                             -math.inf, math.inf)
    if duration < 1.0 / 12.0:
        _fail(path, section, "duration_years", f"must be at least one month (1/12 year), got "
              f"{duration}.")
    adherence = _check_number(r.get("adherence", 1.0), path, section, "adherence", 0.0, 1.0)
    if adherence == 0.0:
        _fail(path, section, "adherence", "must be above 0 (fraction of doses taken); remove "
              "the regimen for no treatment.")
    name = r.get("name", "")
    if name:
        name = _check_str(name, path, section, "name")
        if name in earlier:
            _fail(path, section, "name", f"duplicate regimen name '{name}' in this arm.")
    return Regimen(agent=agent.name, dose=float(dose), route=route_name, start=kind,
                   start_value=value, duration_years=duration, adherence=adherence,
                   persistence=_check_number(r.get("persistence", 0.0), path, section,
                                             "persistence", 0.0, 5.0),
                   after=after, name=name)


def _check_overlaps(regimens, path, section_of):
    """The same agent twice in one arm must not overlap in time (same start reference)."""
    for j, rj in enumerate(regimens):
        for i, ri in enumerate(regimens[:j]):
            if ri.agent != rj.agent or ri.start != rj.start or ri.start == "after":
                continue
            if (ri.start_value < rj.start_value + rj.duration_years
                    and rj.start_value < ri.start_value + ri.duration_years):
                _fail(path, section_of(j), "start", f"{rj.agent} overlaps regimen {i} of the "
                      f"same arm (both given from {ri.start}); combine the doses into one "
                      f"regimen or make them consecutive (start = {{after = \"<name>\"}}).")


def _check_uterus(arm_name, regimens, allow, path, section, intact_fraction):
    """Estrogen in women with a uterus needs a progestogen or bazedoxifene over its window."""
    if allow or intact_fraction == 0.0:
        return
    for j, reg in enumerate(regimens):
        if not AGENTS[reg.agent].is_estrogen or AGENTS[reg.agent].opposes_estrogen_in_uterus:
            continue
        covered = any(AGENTS[o.agent].opposes_estrogen_in_uterus and o.start == reg.start
                      and o.start_value <= reg.start_value
                      and o.start_value + o.duration_years >= reg.start_value
                      + reg.duration_years and (o.after == reg.after)
                      for o in regimens)
        if not covered:
            _fail(path, f"{section}.regimens[{j}]", "agent", f"arm '{arm_name}' gives "
                  f"{reg.agent} without a progestogen or bazedoxifene covering the same "
                  f"window, to a population where {intact_fraction:.0%} of women have an "
                  f"intact uterus (unopposed estrogen raises endometrial cancer risk). Add a "
                  f"regimen of progesterone or medroxyprogesterone_acetate with the same start "
                  f"and at least the same duration, or use conjugated_estrogens_bazedoxifene; "
                  f"or set [population] uterus_intact_fraction = 0 (women after "
                  f"hysterectomy), or set allow_unopposed_estrogen = true in the arm.")


def _parse_population(pop, path) -> PopulationSpec:
    sec = "population"
    sex = _check_str(pop.get("sex", "female"), path, sec, "sex", set(SEXES))
    for key in ("age_min", "age_max"):
        if key not in pop:
            _fail(path, sec, key, "missing (age range at study entry, years).")
    age_min = _check_number(pop["age_min"], path, sec, "age_min", 30.0, 100.0)
    age_max = _check_number(pop["age_max"], path, sec, "age_max", 30.0, 100.0)
    if age_max < age_min:
        _fail(path, sec, "age_max", f"must be >= age_min ({age_min}), got {age_max}.")
    male = SEXES[sex]
    if "male_fraction" in pop:
        if sex != "both":
            _fail(path, sec, "male_fraction", "only with sex = \"both\".")
        male = _check_number(pop["male_fraction"], path, sec, "male_fraction", 0.0, 1.0)
    fraction = lambda key, default: _check_number(pop.get(key, default), path, sec, key,  # noqa
                                                  0.0, 1.0)
    surgery = [_check_number(pop.get(k, d), path, sec, k, 30.0, 65.0)
               for k, d in (("surgery_age_min", 40.0), ("surgery_age_max", 50.0))]
    if surgery[1] < surgery[0]:
        _fail(path, sec, "surgery_age_max", f"must be >= surgery_age_min ({surgery[0]}).")
    if sex == "male":
        for key in ("uterus_intact_fraction", "surgical_menopause_fraction"):
            if key in pop:
                _fail(path, sec, key, "applies to women; this population is male.")
    if sex == "female" and "hypogonadal_fraction" in pop:
        _fail(path, sec, "hypogonadal_fraction", "applies to men; this population is female.")
    return PopulationSpec(
        age_min=age_min, age_max=age_max, male_fraction=male,
        uterus_intact_fraction=fraction("uterus_intact_fraction", 0.8),
        surgical_fraction=fraction("surgical_menopause_fraction", 0.0),
        surgery_age_min=surgery[0], surgery_age_max=surgery[1],
        hypogonadal_fraction=fraction("hypogonadal_fraction", 0.1))


def _parse_outcomes(sec: dict, path) -> OutcomeOptions:
    name = "outcomes"
    _unknown_keys(sec, OUTCOME_KEYS, path, name)
    ages = sec.get("probability_ages", [])
    if not isinstance(ages, list):
        _fail(path, name, "probability_ages", f"expected a list of ages, got {ages!r}.")
    ages = tuple(_check_number(a, path, name, "probability_ages", 50.0, 100.0) for a in ages)
    tables = sec.get("tables", "")
    if tables:
        tables = _check_str(tables, path, name, "tables")
        where = Path(path).parent / tables
        if not where.is_dir():
            _fail(path, name, "tables", f"'{tables}' is not a directory (relative paths are "
                  f"read from the config file's folder: {where}).")
        tables = str(where)
    return OutcomeOptions(
        by_age=_check_number(sec.get("by_age", 80.0), path, name, "by_age", 50.0, 120.0),
        probability_ages=ages,
        tscore_mean=_check_number(sec.get("tscore_reference_mean", 0.858), path, name,
                                  "tscore_reference_mean", 0.3, 1.5),
        tscore_sd=_check_number(sec.get("tscore_reference_sd", 0.120), path, name,
                                "tscore_reference_sd", 0.05, 0.3),
        tables=tables)


def _bounds(sec, path, field, lo, hi, default):
    """(min, max) of an eligibility criterion; an absent bound stays open."""
    got = []
    for side, fallback in (("min", default[0]), ("max", default[1])):
        key = f"{field}_{side}"
        got.append(_check_number(sec[key], path, "eligibility", key, lo, hi) if key in sec
                   else fallback)
    if got[1] < got[0]:
        _fail(path, "eligibility", f"{field}_max", f"must be >= {field}_min ({got[0]}).")
    return tuple(got)


def _parse_eligibility(sec: dict, path, sexes) -> Eligibility:
    _unknown_keys(sec, ELIGIBILITY_KEYS, path, "eligibility")
    if "male" in sexes:
        for key in ("years_since_menopause_min", "years_since_menopause_max", "uterus"):
            if key in sec:
                _fail(path, "eligibility", key, "applies to women; this population includes "
                      "men (set [population] sex = \"female\").")
    inf = math.inf
    return Eligibility(
        years_since_menopause=_bounds(sec, path, "years_since_menopause", -70.0, 70.0,
                                      (-inf, inf)),
        tscore=_bounds(sec, path, "tscore", -8.0, 8.0, (-inf, inf)),
        testosterone=_bounds(sec, path, "testosterone", 0.0, 3000.0, (0.0, inf)),
        uterus=_check_str(sec.get("uterus", "any"), path, "eligibility", "uterus",
                          {"intact", "absent", "any"}))


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
    return study_from_table(raw, path, text)


def study_from_table(raw: dict, path: str, text: str) -> Study:
    """Validate a parsed study (``raw``: the TOML tables; ``text``: what is hashed)."""
    _unknown_keys(raw, SECTIONS | OPTIONAL_SECTIONS, path, "top level")
    for sec in SECTIONS:
        if sec not in raw:
            _fail(path, sec, "(section)", "missing; see configs/default.toml for an example.")
    study = _table(raw["study"], path, "study")
    _unknown_keys(study, STUDY_KEYS, path, "study")
    pop = _table(raw["population"], path, "population")
    _unknown_keys(pop, POPULATION_KEYS, path, "population")

    name = _check_str(study.get("name", Path(path).stem), path, "study", "name")
    horizon = _check_int(study.get("horizon_years", 30), path, "study", "horizon_years", 1, 70)
    population = _parse_population(pop, path)
    sexes = [s for s, present in (("female", population.male_fraction < 1.0),
                                  ("male", population.male_fraction > 0.0)) if present]
    eligibility = _parse_eligibility(_table(raw.get("eligibility", {}), path, "eligibility"),
                                     path, sexes)
    intact = (population.uterus_intact_fraction
              if "female" in sexes and eligibility.uterus != "absent" else 0.0)

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
        section = f"arms[{i}] ('{arm_name}')"
        regs = arm.get("regimens", [])
        if not isinstance(regs, list):
            _fail(path, section, "regimens", "expected a list of [[arms.regimens]] tables.")
        if len(regs) > REGIMEN_SLOTS:
            _fail(path, section, "regimens", f"at most {REGIMEN_SLOTS} regimens per arm, got "
                  f"{len(regs)}.")
        allow = arm.get("allow_unopposed_estrogen", False)
        if not isinstance(allow, bool):
            _fail(path, section, "allow_unopposed_estrogen", f"expected true or false, got "
                  f"{allow!r}.")
        section_of = lambda j: f"{section}.regimens[{j}]"  # noqa: E731
        parsed = []
        for j, r in enumerate(regs):
            parsed.append(_parse_regimen(r, path, section_of(j), horizon, sexes,
                                         [p.name for p in parsed]))
        _check_overlaps(parsed, path, section_of)
        _check_uterus(arm_name, parsed, allow, path, section, intact)
        arms.append(Arm(arm_name, tuple(parsed), allow))
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
        steps_per_year=_check_steps(study.get("steps_per_year", 12), path),
        solver=_check_str(study.get("solver", "rodas3"), path, "study", "solver", set(METHODS)),
        population=population,
        arms=tuple(arms),
        reference_arm=reference,
        outcomes=_parse_outcomes(_table(raw.get("outcomes", {}), path, "outcomes"), path),
        eligibility=eligibility,
    )


def read_text(path) -> str:
    """The text of a config file; a missing or unreadable file is a ``ConfigError``."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot be read ({exc}).") from None


def load_study(path) -> Study:
    """Read and validate a study file."""
    return parse_study(read_text(path), str(path))
