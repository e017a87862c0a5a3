"""Targets files: published trial results as virtual trials to fit and validate against.

A targets file (TOML; configs/targets/public.toml documents the format) holds

* ``[target_set]``: name, description, source, ``tolerance_pp`` (a BMD target fits if the model is
  within max(tolerance_pp, its stated standard error) percentage points);
* ``[[trials]]``: virtual trials written in the study language (population, eligibility, arms,
  horizon, patients, seed), validated by the same code as a study (config.py);
* ``[[targets]]``: one statistic of one trial: arm (and comparator), site, window, measure,
  observed value and, where the source states a spread, its standard error (``se``) or 95 %
  interval (``ci95``); optionally ``weight`` (multiplies its squared misfit in the fit
  objective, default 1) and ``verified`` (the number was checked against the source's text
  or table, default false).

A trial's ``horizon_years`` may be fractional (WHI E+P: 5.6 years): its patients are simulated
over the whole years that cover it, and windows and lifetime risks end at it.

Errors name the file, the trial or target and the field, like a study's (exit code 2).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bonecohort.config import ConfigError, Study, read_text, study_from_table
from bonecohort.config.checks import (
    check_int,
    check_number,
    check_str,
    fail,
    named_entry,
    shipped_or_file,
    table,
    unknown_keys,
)
from bonecohort.data import TARGETS_DIR
from bonecohort.model.params import SITE_NAMES
from bonecohort.outcomes.harms import HARMS

MODEL_SITES = SITE_NAMES
BMD_SITES = MODEL_SITES + ("total_hip", "femoral_trochanter")
# Fracture sites of targets -> the kind of first fracture read out (outcomes.hazards.KINDS).
# "Any clinical fracture" is read as the model's major osteoporotic fractures (the four
# simulated sites): the shipped epidemiology tables hold no ratio of all clinical fractures
# to those four, so an arm's ratio is assumed to carry over.
FRACTURES = {"hip_fracture": "hip", "clinical_vertebral_fracture": "vertebral",
             "forearm_fracture": "forearm", "humerus_fracture": "humerus",
             "major_osteoporotic_fracture": "mof", "any_clinical_fracture": "mof"}
# Harm outcomes of targets (outcomes.harms.HARMS; "venous_thromboembolism" reads the first DVT
# or PE): read like fractures, from the harm hazards of a trial simulated with harms.
HARM_SITES = HARMS
FRACTURES.update({h: h for h in HARM_SITES})
FRACTURES["venous_thromboembolism"] = "vte"
BMD_MEASURES = ("pct_change_within_arm", "pct_change_difference_vs_comparator",
                "annualized_pct_change")
FRACTURE_MEASURES = ("hazard_ratio", "cumulative_risk", "lifetime_risk")
MEASURES = BMD_MEASURES + FRACTURE_MEASURES
NEEDS_COMPARATOR = ("pct_change_difference_vs_comparator", "hazard_ratio")
ORIGINS = ("entry", "fmp")

FILE_KEYS = {"target_set", "trials", "targets"}
HEADER_KEYS = {"name", "description", "source", "tolerance_pp"}
TRIAL_KEYS = {"name", "description", "horizon_years", "patients", "seed", "population",
              "eligibility", "arms"}
TARGET_KEYS = {"id", "trial", "arm", "comparator", "site", "model_site", "window", "measure",
               "observed", "se", "se_from", "ci95", "n", "note", "source", "weight", "verified"}
WINDOW_KEYS = {"from", "start_years", "end_years"}


@dataclass(frozen=True)
class Window:
    origin: str  # "entry" or "fmp"
    start: float  # years from the origin
    end: float

    @property
    def years(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Trial:
    name: str
    description: str
    study: Study  # population, eligibility, arms, patients, seed; whole years simulated
    horizon: float  # years of follow-up (may be fractional; study.horizon_years covers it)


@dataclass(frozen=True)
class Target:
    id: str
    trial: str
    arm: str
    comparator: str | None
    site: str  # as published
    model_site: str | None  # the simulated site a BMD target is read from; None: fractures
    window: Window
    measure: str
    observed: float
    se: float | None  # standard error of `observed` (log scale for hazard ratios)
    n: int | None
    note: str
    source: str
    weight: float = 1.0  # multiplies the squared misfit in the fit objective
    verified: bool = False  # the number was checked against the source's text or table

    @property
    def fracture(self) -> str | None:
        """The kind of first fracture a fracture target reads (``KINDS``); None for BMD."""
        return FRACTURES.get(self.site)


@dataclass(frozen=True)
class TargetSet:
    path: str
    name: str
    description: str
    source: str
    tolerance_pp: float
    trials: dict  # name -> Trial
    targets: tuple  # Target, in file order
    sha256: str

    def tolerance(self, target: Target) -> float:
        """The fit criterion of ``target``: percentage points for BMD measures and fracture
        risks (max(tolerance_pp, stated se)), the 95 % half-width on the log scale for hazard
        ratios."""
        if target.measure == "hazard_ratio":
            return 1.96 * target.se
        return max(self.tolerance_pp, target.se or 0.0)

    def with_patients(self, patients: int | None) -> "TargetSet":
        """This set with every trial's ``patients`` replaced (None: as in the file)."""
        if patients is None:
            return self
        return replace(self, trials={k: replace(t, study=t.study.with_overrides(patients=patients))
                                     for k, t in self.trials.items()})

    def with_seed(self, seed: int | None) -> "TargetSet":
        """This set with every trial's ``seed`` replaced (None: as in the file)."""
        if seed is None:
            return self
        return replace(self, trials={k: replace(t, study=t.study.with_overrides(seed=seed))
                                     for k, t in self.trials.items()})

    def residual(self, target: Target, simulated, xp=np):
        """Misfit in units of the tolerance (|r| <= 1: the target fits): the difference for
        BMD measures, the log ratio for hazard ratios. Works on numpy or JAX values."""
        log = target.measure == "hazard_ratio"
        return misfit(simulated, target.observed, self.tolerance(target), log, xp)


def misfit(simulated, observed, tolerance, log_scale, xp=np):
    """(simulated - observed) / tolerance, on the log scale where ``log_scale`` (elementwise;
    the inner ``where`` keeps the log and its gradient finite on the other entries)."""
    ratio = xp.where(log_scale, simulated, 1.0) / xp.where(log_scale, observed, 1.0)
    return xp.where(log_scale, xp.log(ratio), simulated - observed) / tolerance


def _relabel(exc: ConfigError, path: str, prefix: str) -> ConfigError:
    """A study-parser error, re-addressed to the trial it came from."""
    msg = str(exc)
    head = f"{path}: ["
    return ConfigError(msg.replace(head, f"{head}{prefix}.", 1) if msg.startswith(head)
                       else msg)


def _parse_trial(raw, path, i, seed, taken) -> Trial:
    raw, name, section = named_entry(raw, path, "trials", i, TRIAL_KEYS, taken, "trial")
    for key in ("population", "arms"):
        if key not in raw:
            fail(path, section, key, "missing; a trial needs a population and its arms.")
    horizon = check_number(raw.get("horizon_years", 5), path, section, "horizon_years", 0.1, 70)
    study = {"name": name, "horizon_years": math.ceil(horizon),
             "patients": raw.get("patients", 2000), "seed": raw.get("seed", seed),
             "description": raw.get("description", "")}
    tables = {"study": study, "population": raw["population"], "arms": raw["arms"]}
    if "eligibility" in raw:
        tables["eligibility"] = raw["eligibility"]
    try:
        parsed = study_from_table(tables, path, repr(sorted(raw.items())))
    except ConfigError as exc:
        raise _relabel(exc, path, section) from None
    return Trial(name, str(raw.get("description", "")), parsed, float(horizon))


def _choice(value, path, section, field, choices):
    return check_str(value, path, section, field, set(choices))


def _parse_window(raw, path, section, trial: Trial, measure: str) -> Window:
    """The window of a target; a lifetime risk's ends at the trial's horizon (``end_years``
    may be left out), and fracture windows run from entry."""
    raw = table(raw, path, f"{section}.window")
    unknown_keys(raw, WINDOW_KEYS, path, f"{section}.window")
    horizon = trial.horizon
    if measure == "lifetime_risk":
        raw = {"end_years": horizon, **raw}
    for key in WINDOW_KEYS:
        if key not in raw:
            fail(path, section, f"window.{key}", "missing (from = \"entry\" or \"fmp\", "
                  "start_years, end_years).")
    origin = _choice(raw["from"], path, section, "window.from", ORIGINS)
    start = check_number(raw["start_years"], path, section, "window.start_years", -30, 70)
    end = check_number(raw["end_years"], path, section, "window.end_years", -30, 70)
    if end <= start:
        fail(path, section, "window.end_years", f"must be after start_years ({start}).")
    if measure == "lifetime_risk" and end != horizon:
        fail(path, section, "window.end_years", f"a lifetime risk runs to the end of trial "
             f"'{trial.name}' (horizon_years = {horizon}); leave end_years out.")
    if measure in FRACTURE_MEASURES and origin != "entry":
        fail(path, section, "window.from", f"{measure} is read from entry (from = \"entry\").")
    if origin == "entry" and (start < 0 or end > horizon):
        fail(path, section, "window", f"[{start}, {end}] years from entry is outside trial "
              f"'{trial.name}' (0 to horizon_years = {horizon}).")
    if origin == "fmp" and trial.study.population.male_fraction > 0:
        fail(path, section, "window.from", f"\"fmp\" needs a female trial; '{trial.name}' "
              "includes men.")
    return Window(origin, start, end)


def _parse_model_site(raw, path, section, site: str, fracture: bool):
    """The simulated site a BMD target is read from (None for fractures)."""
    if fracture:
        if "model_site" in raw:
            fail(path, section, "model_site", "only for BMD targets.")
        return None
    model_site = raw.get("model_site", site if site in MODEL_SITES else None)
    if model_site is None:
        fail(path, section, "model_site", f"missing; '{site}' is not simulated, name the "
             f"site that stands for it ({', '.join(MODEL_SITES)}).")
    return _choice(model_site, path, section, "model_site", MODEL_SITES)


def _parse_spread(raw, path, section, observed: float, measure: str):
    """Standard error of the observed value from ``se`` or ``ci95`` (log scale for hazard
    ratios, which must state one); None when the source states neither."""
    log = measure == "hazard_ratio"
    se = None
    if "se" in raw:
        se = check_number(raw["se"], path, section, "se", 1e-6, 100.0)
    if "ci95" in raw:
        ci = raw["ci95"]
        if (not isinstance(ci, list) or len(ci) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in ci) or not ci[0] < observed < ci[1]):
            fail(path, section, "ci95", f"expected [low, high] around observed ({observed}), "
                  f"got {ci!r}.")
        if log and ci[0] <= 0:
            fail(path, section, "ci95", "a hazard ratio's interval must be positive.")
        se_ci = ((math.log(ci[1]) - math.log(ci[0])) if log else (ci[1] - ci[0])) / 3.92
        if se is not None and not math.isclose(se, se_ci, rel_tol=0.05):
            fail(path, section, "se", f"{se} disagrees with ci95 (which gives {se_ci:.3g}); "
                  "give one of them.")
        se = se_ci
    if log and se is None:
        fail(path, section, "ci95", "missing; a hazard-ratio target needs its 95 % interval.")
    return se


def _parse_arms(raw, path, section, trial: Trial, measure: str):
    """(arm, comparator) of a target; the comparator only where the measure compares arms."""
    arms = [a.name for a in trial.study.arms]
    arm = _choice(raw["arm"], path, section, "arm", arms)
    if measure not in NEEDS_COMPARATOR:
        if "comparator" in raw:
            fail(path, section, "comparator", f"not used by {measure} (within one arm).")
        return arm, None
    if "comparator" not in raw:
        fail(path, section, "comparator", f"missing; {measure} compares two arms of "
              f"'{trial.name}' ({', '.join(arms)}).")
    comparator = _choice(raw["comparator"], path, section, "comparator", arms)
    if comparator == arm:
        fail(path, section, "comparator", "must differ from arm.")
    return arm, comparator


def _parse_flags(raw, path, section):
    """(weight, verified): optional per-target fit weight and verification flag."""
    weight = 1.0
    if "weight" in raw:
        weight = check_number(raw["weight"], path, section, "weight", 0.0, 1e6)
    verified = raw.get("verified", False)
    if not isinstance(verified, bool):
        fail(path, section, "verified", f"expected true or false, got {verified!r}.")
    return float(weight), verified


def _parse_trial_ref(raw, path, section, trials: dict) -> Trial:
    trial = trials.get(raw["trial"]) if isinstance(raw["trial"], str) else None
    if trial is None:
        close = difflib.get_close_matches(str(raw["trial"]), sorted(trials), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        fail(path, section, "trial", f"'{raw['trial']}' is not a trial of this file "
              f"({', '.join(trials)}).{hint}")
    return trial


def _parse_target(raw, path, i, trials: dict, seen: set) -> Target:
    raw, tid, section = named_entry(raw, path, "targets", i, TARGET_KEYS, seen, "target", "id")
    for key in ("trial", "arm", "site", "window", "measure", "observed"):
        if key not in raw:
            fail(path, section, key, "missing.")
    trial = _parse_trial_ref(raw, path, section, trials)
    measure = _choice(raw["measure"], path, section, "measure", MEASURES)
    arm, comparator = _parse_arms(raw, path, section, trial, measure)
    site = _choice(raw["site"], path, section, "site", BMD_SITES + tuple(FRACTURES))
    fracture = site in FRACTURES
    if fracture != (measure in FRACTURE_MEASURES):
        fail(path, section, "measure", f"{measure} does not apply to site '{site}' (hazard "
             "ratios and risks are for fracture sites, % changes for BMD sites).")
    model_site = _parse_model_site(raw, path, section, site, fracture)
    window = _parse_window(raw["window"], path, section, trial, measure)
    lo_obs, hi_obs = {"hazard_ratio": (1e-3, 100.0)}.get(
        measure, (0.0, 100.0) if fracture else (-100.0, 100.0))
    observed = check_number(raw["observed"], path, section, "observed", lo_obs, hi_obs)
    se = _parse_spread(raw, path, section, observed, measure)
    n = check_int(raw["n"], path, section, "n", 1, 10**7) if "n" in raw else None
    text = {k: raw.get(k, "") for k in ("note", "source", "se_from")}
    for key, value in text.items():
        if not isinstance(value, str):
            fail(path, section, key, f"expected a string, got {value!r}.")
    if not text["source"].strip():
        fail(path, section, "source", "missing; every target names its publication.")
    return Target(tid, trial.name, arm, comparator, site, model_site, window, measure,
                  observed, se, n, text["note"], text["source"],
                  *_parse_flags(raw, path, section))


def parse_targets(text: str, path: str = "<targets>") -> TargetSet:
    """Validate a targets TOML text; raise ``ConfigError`` naming file, section and field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from None
    unknown_keys(raw, FILE_KEYS, path, "top level")
    header = table(raw.get("target_set", {}), path, "target_set")
    unknown_keys(header, HEADER_KEYS, path, "target_set")
    rows = raw.get("targets")
    trials_raw = raw.get("trials")
    if not isinstance(trials_raw, list) or not trials_raw:
        fail(path, "trials", "(section)", "expected one or more [[trials]] tables.")
    trials = {}
    for i, t in enumerate(trials_raw):
        trial = _parse_trial(t, path, i, i + 1, trials)
        trials[trial.name] = trial
    if not isinstance(rows, list) or not rows:
        fail(path, "targets", "(section)", "expected one or more [[targets]] tables.")
    targets, seen = [], set()
    for i, r in enumerate(rows):
        target = _parse_target(r, path, i, trials, seen)
        seen.add(target.id)
        targets.append(target)
    return TargetSet(
        path=path,
        name=check_str(header.get("name", Path(path).stem), path, "target_set", "name"),
        description=str(header.get("description", "")),
        source=str(header.get("source", "")),
        tolerance_pp=check_number(header.get("tolerance_pp", 1.0), path, "target_set",
                                   "tolerance_pp", 0.0, 20.0),
        trials=trials, targets=tuple(targets),
        sha256=hashlib.sha256(text.encode()).hexdigest())


def load_targets(path) -> TargetSet:
    """Read and validate a targets file, or one shipped with the package by name
    (``public``: ``bonecohort/data/targets/public.toml``)."""
    path = shipped_or_file(path, TARGETS_DIR, "targets file")
    return parse_targets(read_text(path), str(path))
