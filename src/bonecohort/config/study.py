"""Study configuration: TOML file -> validated ``Study`` (imperative shell).

Every problem is reported as one ``ConfigError`` paragraph naming the file, the section and the
field, with a "did you mean" hint for misspelled keys (checks.py). Validation runs on the host;
the result is built from the simulator's static types (``PopulationSpec``, ``Arm``, ``Grid``).
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from bonecohort.config.checks import (
    ConfigError,
    check_flag,
    check_folder,
    check_int,
    check_number,
    check_str,
    fail,
    read_text,
    shipped_or_file,
    table,
    unknown_keys,
)
from bonecohort.config.economics import EconomicsOptions, parse_economics
from bonecohort.config.regimens import parse_arm
from bonecohort.data import STUDIES_DIR
from bonecohort.model.params import NHANES_MEN, NHANES_WOMEN, BmdReference
from bonecohort.population import PopulationSpec
from bonecohort.solve.life_course import Grid
from bonecohort.solve.rosenbrock import METHODS


class TScoreReference(NamedTuple):
    """Femoral-neck T-score reference per sex. Women's: the WHO / FRAX reference, in whose
    units fracture hazards are computed for both sexes (outcomes/readout.py); men's: used for
    men's reported T-scores and their eligibility."""

    female: BmdReference = NHANES_WOMEN
    male: BmdReference = NHANES_MEN

    def of(self, male: bool) -> BmdReference:
        return self.male if male else self.female


@dataclass(frozen=True)
class OutcomeOptions:
    """[outcomes]: how fractures and deaths are read out (outcomes/readout.py)."""

    by_age: float = 80.0  # fractures "by age" are those before this age
    probability_ages: tuple = ()  # ages at which to report 10-year fracture probabilities
    tscore_reference: TScoreReference = TScoreReference()  # g/cm2, per sex
    tables: str = ""  # directory of epidemiology tables; "" = the shipped ones
    harms: bool = True  # non-skeletal outcomes of treatment (outcomes/harms.py)


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
    economics: EconomicsOptions = EconomicsOptions()
    rtol: float = 0.0  # > 0: error-controlled steps (solve/adaptive.py); 0: steps_per_year

    @property
    def grid(self) -> Grid:
        return Grid.for_entry_ages(self.population.age_max, self.horizon_years,
                                   steps_per_year=self.steps_per_year, solver=self.solver,
                                   rtol=self.rtol)

    def with_overrides(self, patients=None, seed=None, chunk_size=None) -> "Study":
        where = "command line"
        if patients is not None:
            check_int(patients, where, "options", "--patients", 1, 10**9, self.path)
        if seed is not None:
            check_int(seed, where, "options", "--seed", 0, 2**32 - 1, self.path)
        if chunk_size is not None:
            check_int(chunk_size, where, "options", "--chunk-size", 1, 10**7, self.path)
        return replace(self, patients=self.patients if patients is None else patients,
                       seed=self.seed if seed is None else seed,
                       chunk_size=self.chunk_size if chunk_size is None else chunk_size)


SECTIONS = {"study", "population", "arms"}
OPTIONAL_SECTIONS = {"outcomes", "eligibility", "economics"}
STUDY_KEYS = {"name", "description", "patients", "seed", "horizon_years", "chunk_size", "dtype",
              "steps_per_year", "rtol", "solver", "reference_arm"}
POPULATION_KEYS = {"sex", "age_min", "age_max", "male_fraction", "uterus_intact_fraction",
                   "surgical_menopause_fraction", "surgery_age_min", "surgery_age_max",
                   "hypogonadal_fraction"}
OUTCOME_KEYS = {"by_age", "probability_ages", "tscore_reference_mean", "tscore_reference_sd",
                "tscore_reference_mean_male", "tscore_reference_sd_male", "tables", "harms"}
ELIGIBILITY_KEYS = {"years_since_menopause_min", "years_since_menopause_max", "tscore_min",
                    "tscore_max", "testosterone_min", "testosterone_max", "uterus"}
SEXES = {"female": 0.0, "male": 1.0, "both": 0.5}


def _parse_population(pop, path) -> PopulationSpec:
    sec = "population"
    sex = check_str(pop.get("sex", "female"), path, sec, "sex", set(SEXES))
    for key in ("age_min", "age_max"):
        if key not in pop:
            fail(path, sec, key, "missing (age range at study entry, years).")
    age_min = check_number(pop["age_min"], path, sec, "age_min", 30.0, 100.0)
    age_max = check_number(pop["age_max"], path, sec, "age_max", 30.0, 100.0)
    if age_max < age_min:
        fail(path, sec, "age_max", f"must be >= age_min ({age_min}), got {age_max}.")
    male = SEXES[sex]
    if "male_fraction" in pop:
        if sex != "both":
            fail(path, sec, "male_fraction", "only with sex = \"both\".")
        male = check_number(pop["male_fraction"], path, sec, "male_fraction", 0.0, 1.0)
    fraction = lambda key, default: check_number(pop.get(key, default), path, sec, key,  # noqa
                                                  0.0, 1.0)
    surgery = [check_number(pop.get(k, d), path, sec, k, 30.0, 65.0)
               for k, d in (("surgery_age_min", 40.0), ("surgery_age_max", 50.0))]
    if surgery[1] < surgery[0]:
        fail(path, sec, "surgery_age_max", f"must be >= surgery_age_min ({surgery[0]}).")
    if sex == "male":
        for key in ("uterus_intact_fraction", "surgical_menopause_fraction"):
            if key in pop:
                fail(path, sec, key, "applies to women; this population is male.")
    if sex == "female" and "hypogonadal_fraction" in pop:
        fail(path, sec, "hypogonadal_fraction", "applies to men; this population is female.")
    return PopulationSpec(
        age_min=age_min, age_max=age_max, male_fraction=male,
        uterus_intact_fraction=fraction("uterus_intact_fraction", 0.8),
        surgical_fraction=fraction("surgical_menopause_fraction", 0.0),
        surgery_age_min=surgery[0], surgery_age_max=surgery[1],
        hypogonadal_fraction=fraction("hypogonadal_fraction", 0.1))


def _parse_outcomes(sec: dict, path) -> OutcomeOptions:
    name = "outcomes"
    unknown_keys(sec, OUTCOME_KEYS, path, name)
    ages = sec.get("probability_ages", [])
    if not isinstance(ages, list):
        fail(path, name, "probability_ages", f"expected a list of ages, got {ages!r}.")
    ages = tuple(check_number(a, path, name, "probability_ages", 50.0, 100.0) for a in ages)
    tables = check_folder(sec, path, name)
    return OutcomeOptions(
        by_age=check_number(sec.get("by_age", 80.0), path, name, "by_age", 50.0, 120.0),
        probability_ages=ages,
        tscore_reference=TScoreReference(*(BmdReference(
            check_number(sec.get(f"tscore_reference_mean{suffix}", ref.mean), path, name,
                         f"tscore_reference_mean{suffix}", 0.3, 1.5),
            check_number(sec.get(f"tscore_reference_sd{suffix}", ref.sd), path, name,
                         f"tscore_reference_sd{suffix}", 0.05, 0.3))
            for suffix, ref in (("", NHANES_WOMEN), ("_male", NHANES_MEN)))),
        tables=tables, harms=check_flag(sec, "harms", True, path, name))


def _bounds(sec, path, field, lo, hi, default):
    """(min, max) of an eligibility criterion; an absent bound stays open."""
    got = []
    for side, fallback in (("min", default[0]), ("max", default[1])):
        key = f"{field}_{side}"
        got.append(check_number(sec[key], path, "eligibility", key, lo, hi) if key in sec
                   else fallback)
    if got[1] < got[0]:
        fail(path, "eligibility", f"{field}_max", f"must be >= {field}_min ({got[0]}).")
    return tuple(got)


def _parse_eligibility(sec: dict, path, sexes) -> Eligibility:
    unknown_keys(sec, ELIGIBILITY_KEYS, path, "eligibility")
    if "male" in sexes:
        for key in ("years_since_menopause_min", "years_since_menopause_max", "uterus"):
            if key in sec:
                fail(path, "eligibility", key, "applies to women; this population includes "
                      "men (set [population] sex = \"female\").")
    inf = math.inf
    return Eligibility(
        years_since_menopause=_bounds(sec, path, "years_since_menopause", -70.0, 70.0,
                                      (-inf, inf)),
        tscore=_bounds(sec, path, "tscore", -8.0, 8.0, (-inf, inf)),
        testosterone=_bounds(sec, path, "testosterone", 0.0, 3000.0, (0.0, inf)),
        uterus=check_str(sec.get("uterus", "any"), path, "eligibility", "uterus",
                          {"intact", "absent", "any"}))


DEFAULT_RTOL = 1e-4  # error-controlled RODAS4 steps: BMD within ~4e-5 of Radau (README, Numerics)


def _check_steps(study: dict, path, solver: str) -> tuple[int, float]:
    """(steps_per_year, rtol): fixed steps when ``steps_per_year`` is given, otherwise
    error-controlled steps to ``rtol`` (default ``DEFAULT_RTOL``)."""
    if "steps_per_year" in study and "rtol" in study:
        fail(path, "study", "rtol", "give either rtol (error-controlled steps) or "
             "steps_per_year (fixed steps), not both.")
    if "steps_per_year" in study:
        value = check_int(study["steps_per_year"], path, "study", "steps_per_year", 12, 360)
        if value % 12:
            fail(path, "study", "steps_per_year", f"must be a multiple of 12 (whole steps per "
                 f"month, so that treatment switches fall on step boundaries), got {value}.")
        return value, 0.0
    rtol = check_number(study.get("rtol", DEFAULT_RTOL), path, "study", "rtol", 1e-8, 1e-2)
    if not METHODS[solver].e:
        fail(path, "study", "solver", f"{solver} has no embedded error estimate for "
             "error-controlled steps: use rodas3 or rodas4, or give steps_per_year.")
    return 12, float(rtol)


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
    unknown_keys(raw, SECTIONS | OPTIONAL_SECTIONS, path, "top level")
    for sec in SECTIONS:
        if sec not in raw:
            fail(path, sec, "(section)", "missing; see configs/default.toml for an example.")
    study = table(raw["study"], path, "study")
    unknown_keys(study, STUDY_KEYS, path, "study")
    pop = table(raw["population"], path, "population")
    unknown_keys(pop, POPULATION_KEYS, path, "population")

    name = check_str(study.get("name", Path(path).stem), path, "study", "name")
    horizon = check_int(study.get("horizon_years", 30), path, "study", "horizon_years", 1, 70)
    population = _parse_population(pop, path)
    sexes = [s for s, present in (("female", population.male_fraction < 1.0),
                                  ("male", population.male_fraction > 0.0)) if present]
    eligibility = _parse_eligibility(table(raw.get("eligibility", {}), path, "eligibility"),
                                     path, sexes)
    intact = (population.uterus_intact_fraction
              if "female" in sexes and eligibility.uterus != "absent" else 0.0)

    arms_raw = raw["arms"]
    if not isinstance(arms_raw, list) or not arms_raw:
        fail(path, "arms", "(section)", "expected one or more [[arms]] tables.")
    arms, names = [], set()
    for i, arm in enumerate(arms_raw):
        arms.append(parse_arm(arm, i, path, horizon, sexes, intact, names))
        names.add(arms[-1].name)
    reference = check_str(study.get("reference_arm", arms[0].name), path, "study",
                           "reference_arm", names)
    solver = check_str(study.get("solver", "rodas3" if "steps_per_year" in study else "rodas4"),
                       path, "study", "solver", set(METHODS))
    steps = _check_steps(study, path, solver)
    return Study(
        path=path, config_text=text,
        config_hash=hashlib.sha256(text.encode()).hexdigest(),
        name=name,
        description=str(study.get("description", "")),
        patients=check_int(study.get("patients", 10000), path, "study", "patients", 1, 10**9),
        seed=check_int(study.get("seed", 0), path, "study", "seed", 0, 2**32 - 1),
        horizon_years=horizon,
        chunk_size=check_int(study.get("chunk_size", 10000), path, "study", "chunk_size", 1,
                              10**7),
        dtype=check_str(study.get("dtype", "float32"), path, "study", "dtype",
                         {"float32", "float64"}),
        steps_per_year=steps[0],
        rtol=steps[1],
        solver=solver,
        population=population,
        arms=tuple(arms),
        reference_arm=reference,
        outcomes=_parse_outcomes(table(raw.get("outcomes", {}), path, "outcomes"), path),
        eligibility=eligibility,
        economics=parse_economics(table(raw.get("economics", {}), path, "economics"), path,
                                  horizon),
    )


def load_study(path) -> Study:
    """Read and validate a study file, or a study shipped with the package by name
    (``default``, ``mht_timing``, ...: ``bonecohort/data/studies``)."""
    path = shipped_or_file(path, STUDIES_DIR, "study")
    return parse_study(read_text(path), str(path))
