"""Arms and regimens of a study file: agents, routes, doses, starts, overlaps, uterus safety."""

from __future__ import annotations

import math

from bonecohort.config.checks import (
    check_flag,
    check_number,
    check_str,
    fail,
    named_entry,
    table,
    unknown_keys,
)
from bonecohort.exposure.agents import AGENTS
from bonecohort.exposure.protocol import Arm, Regimen
from bonecohort.population import REGIMEN_SLOTS

ARM_KEYS = {"name", "regimens", "allow_unopposed_estrogen"}

REGIMEN_KEYS = {"name", "agent", "route", "dose", "dose_unit", "start", "duration_years",
                "adherence", "persistence", "uterus_only"}
START_KINDS = {"years_from_fmp": "years after the final menstrual period (0 = at the FMP)",
               "years_from_baseline": "years after study entry",
               "age": "age in years",
               "after": "name of an earlier regimen of the arm; starts when it stops"}
START_SHORTHANDS = {"fmp": ("fmp", 0.0), "entry": ("entry", 0.0), "baseline": ("entry", 0.0)}


def _parse_start(r, path, section, earlier):
    """-> (kind, value, after_index) from a regimen's ``start``."""
    if "start" not in r:
        return "entry", 0.0, -1
    start = r["start"]
    if isinstance(start, str):
        kind, value = START_SHORTHANDS[check_str(start, path, section, "start",
                                                  set(START_SHORTHANDS))]
        return kind, value, -1
    start = table(start, path, f"{section}.start")
    if len(start) != 1:
        fail(path, section, "start", "give exactly one of "
              + "; ".join(f"{k} = <{v}>" for k, v in START_KINDS.items())
              + ", or one of the strings 'fmp', 'entry'.")
    key, value = next(iter(start.items()))
    check_str(key, path, section, "start", set(START_KINDS))
    if key == "after":
        target = check_str(value, path, section, "start.after")
        if target not in earlier:
            fail(path, section, "start.after", f"'{target}' is not the name of an earlier "
                  f"regimen of this arm (named so far: {', '.join(earlier) or 'none'}).")
        return "after", 0.0, earlier.index(target)
    if key == "age":
        return "age", check_number(value, path, section, "start.age", 20.0, 100.0), -1
    kind = {"years_from_fmp": "fmp", "years_from_baseline": "entry"}[key]
    return kind, check_number(value, path, section, f"start.{key}", -30.0, 100.0), -1


def parse_regimen(r, path, section, horizon, sexes, earlier):
    r = table(r, path, section)
    unknown_keys(r, REGIMEN_KEYS, path, section)
    for key in ("agent", "dose", "dose_unit"):
        if key not in r:
            fail(path, section, key, "missing (every regimen needs agent, dose and "
                  "dose_unit; `bonecohort agents` lists them).")
    agent = AGENTS[check_str(r["agent"], path, section, "agent", set(AGENTS))]
    if "route" in r:
        route_name = check_str(r["route"], path, section, "route", set(agent.routes))
    elif len(agent.routes) == 1:
        route_name = next(iter(agent.routes))
    else:
        fail(path, section, "route", f"missing; {agent.name} has routes "
              f"{', '.join(agent.routes)}.")
    route = agent.routes[route_name]
    unit = check_str(r["dose_unit"], path, section, "dose_unit")
    if unit != route.dose_unit:
        fail(path, section, "dose_unit", f"{agent.name} ({route_name}) is dosed in "
              f"'{route.dose_unit}', got '{unit}'.")
    dose = r["dose"]
    check_number(dose, path, section, "dose", 0.0, math.inf)
    for sex in sexes:
        if sex not in route.dose_range:
            fail(path, section, "agent", f"{agent.name} ({route_name}) is not used in "
                  f"{'men' if sex == 'male' else 'women'}; this population includes them "
                  f"(set [population] sex, or choose another agent).")
        lo, hi = route.dose_range[sex]
        if not lo <= dose <= hi:
            fail(path, section, "dose", f"{dose} {unit} of {agent.name} ({route_name}) is "
                  f"outside the plausible range for {'men' if sex == 'male' else 'women'}, "
                  f"{lo}-{hi} {unit}.")
    kind, value, after = _parse_start(r, path, section, earlier)
    if kind == "fmp" and "male" in sexes:
        fail(path, section, "start", "a start relative to the final menstrual period needs "
              "a population of women; use years_from_baseline or age.")
    duration = check_number(r.get("duration_years", horizon), path, section, "duration_years",
                             -math.inf, math.inf)
    if duration < 1.0 / 12.0:
        fail(path, section, "duration_years", f"must be at least one month (1/12 year), got "
              f"{duration}.")
    adherence = check_number(r.get("adherence", 1.0), path, section, "adherence", 0.0, 1.0)
    if adherence == 0.0:
        fail(path, section, "adherence", "must be above 0 (fraction of doses taken); remove "
              "the regimen for no treatment.")
    uterus_only = check_flag(r, "uterus_only", False, path, section)
    if uterus_only and sexes != ["female"]:
        fail(path, section, "uterus_only", "applies to a population of women.")
    name = r.get("name", "")
    if name:
        name = check_str(name, path, section, "name")
        if name in earlier:
            fail(path, section, "name", f"duplicate regimen name '{name}' in this arm.")
    return Regimen(agent=agent.name, dose=float(dose), route=route_name, start=kind,
                   start_value=value, duration_years=duration, adherence=adherence,
                   persistence=check_number(r.get("persistence", 0.0), path, section,
                                             "persistence", 0.0, 5.0),
                   after=after, name=name, uterus_only=uterus_only)


def check_overlaps(regimens, path, section_of):
    """The same agent twice in one arm must not overlap in time (same start reference)."""
    for j, rj in enumerate(regimens):
        for i, ri in enumerate(regimens[:j]):
            if ri.agent != rj.agent or ri.start != rj.start or ri.start == "after":
                continue
            if (ri.start_value < rj.start_value + rj.duration_years
                    and rj.start_value < ri.start_value + ri.duration_years):
                fail(path, section_of(j), "start", f"{rj.agent} overlaps regimen {i} of the "
                      f"same arm (both given from {ri.start}); combine the doses into one "
                      f"regimen or make them consecutive (start = {{after = \"<name>\"}}).")


def check_uterus(arm_name, regimens, allow, path, section, intact_fraction):
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
            fail(path, f"{section}.regimens[{j}]", "agent", f"arm '{arm_name}' gives "
                  f"{reg.agent} without a progestogen or bazedoxifene covering the same "
                  f"window, to a population where {intact_fraction:.0%} of women have an "
                  f"intact uterus (unopposed estrogen raises endometrial cancer risk). Add a "
                  f"regimen of progesterone or medroxyprogesterone_acetate with the same start "
                  f"and at least the same duration, or use conjugated_estrogens_bazedoxifene; "
                  f"or set [population] uterus_intact_fraction = 0 (women after "
                  f"hysterectomy), or set allow_unopposed_estrogen = true in the arm.")


def parse_arm(arm, i: int, path, horizon, sexes, intact: float, taken: set) -> Arm:
    """Validate ``[[arms]]`` table number ``i`` (``taken``: arm names so far; ``intact``:
    share of women with a uterus, for the unopposed-estrogen check)."""
    arm, arm_name, section = named_entry(arm, path, "arms", i, ARM_KEYS, taken, "arm")
    regs = arm.get("regimens", [])
    if not isinstance(regs, list):
        fail(path, section, "regimens", "expected a list of [[arms.regimens]] tables.")
    if len(regs) > REGIMEN_SLOTS:
        fail(path, section, "regimens", f"at most {REGIMEN_SLOTS} regimens per arm, got "
             f"{len(regs)}.")
    allow = check_flag(arm, "allow_unopposed_estrogen", False, path, section)

    def section_of(j):
        return f"{section}.regimens[{j}]"

    parsed = []
    for j, r in enumerate(regs):
        parsed.append(parse_regimen(r, path, section_of(j), horizon, sexes,
                                    [p.name for p in parsed]))
    check_overlaps(parsed, path, section_of)
    check_uterus(arm_name, parsed, allow, path, section, intact)
    return Arm(arm_name, tuple(parsed), allow)
