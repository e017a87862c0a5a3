"""Protocols: regimens and arms (static), and the per-step exposures they give one patient.

A ``Regimen`` is one agent by one route at one dose, from a start for a duration, taken with
an adherence (fraction of doses) and a persistence (discontinuation hazard per year). A
regimen may start when an earlier regimen of the same arm stops (``start = "after"``), which
makes sequences and switches. After a regimen stops, nothing is carried over: the model's
state (bone volume above its set point) produces whatever offset follows.

Windows are snapped to whole months from entry: doses are counted in months and step grids
have a whole number of steps a month, so no step straddles a switch (a switch inside a step
would cost the linearly implicit method its accuracy). The regimen-building functions are
pure JAX on one patient; ``Regimen`` and ``Arm`` are hashable static data.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from bonecohort.exposure.agents import AGENTS, EXPOSURES
from bonecohort.exposure.endogenous import StepInputs, window_fraction
from bonecohort.model.params import AgentParams


class Regimen(NamedTuple):
    """One agent given from ``start`` for ``duration_years``.

    start: "fmp" (``start_value`` years after the final menstrual period, or after a
    bilateral oophorectomy, or at entry if that is later), "age" (at age ``start_value``, or
    entry if later), "entry" (``start_value`` years after entry) or "after" (when regimen
    number ``after`` of the same arm stops, including early discontinuation).
    """

    agent: str
    dose: float
    route: str = ""
    start: str = "entry"
    start_value: float = 0.0
    duration_years: float = 1e9
    adherence: float = 1.0
    persistence: float = 0.0  # discontinuation hazard, 1/yr
    after: int = -1
    name: str = ""
    uterus_only: bool = False  # given only to women with an intact uterus (a progestogen)

    @property
    def route_name(self) -> str:
        """The route given, or the agent's first route."""
        return self.route or next(iter(AGENTS[self.agent].routes))

    @property
    def route_spec(self):
        return AGENTS[self.agent].routes[self.route_name]


class Arm(NamedTuple):
    name: str
    regimens: tuple = ()
    allow_unopposed_estrogen: bool = False


def snap_months(age, patient):
    """``age`` rounded to whole months from the patient's entry."""
    return patient.age_entry + jnp.round((age - patient.age_entry) * 12.0) / 12.0


def menopause_age(patient):
    """Natural FMP, or an earlier bilateral oophorectomy."""
    return jnp.minimum(patient.fmp_age, patient.surgery_age)


def regimen_windows(arm: Arm, patient):
    """[(start, stop)] ages of each regimen of ``arm`` for ``patient``, snapped to months.

    A regimen with persistence lambda > 0 stops early at -log(u)/lambda years, u the patient's
    uniform for that regimen slot.
    """
    windows = []
    for j, reg in enumerate(arm.regimens):
        if reg.start == "after":
            start = windows[reg.after][1]
        elif reg.start == "fmp":
            start = snap_months(jnp.maximum(menopause_age(patient) + reg.start_value,
                                            patient.age_entry), patient)
        elif reg.start == "age":
            start = snap_months(jnp.maximum(reg.start_value, patient.age_entry), patient)
        else:
            start = snap_months(patient.age_entry + reg.start_value, patient)
        duration = jnp.asarray(reg.duration_years, patient.age_entry.dtype)
        if reg.persistence > 0.0:
            kept = -jnp.log(patient.persistence_u[j]) / reg.persistence
            duration = jnp.minimum(duration, kept)
        windows.append((start, snap_months(start + duration, patient)))
    return windows


def surgery_switch(patient):
    """Age (snapped to months) at which the ovaries are removed (+inf: never)."""
    return snap_months(patient.surgery_age, patient)


def switch_ages(arm: Arm | None, patient) -> list:
    """Ages at which the exposures of ``arm`` (None: untreated) may change: each regimen's
    start and stop and the surgical menopause (``2 x regimens + 1`` values; a step grid with
    these among its edges has constant exposures in every step)."""
    ages = [surgery_switch(patient)]
    for start, stop in (regimen_windows(arm, patient) if arm is not None else []):
        ages += [start, stop]
    return ages


def regimen_exposure(reg: Regimen, agents: AgentParams | None) -> dict:
    """Exposure of ``reg`` taken continuously, with the fitted agent constants ``agents``
    (``AgentParams``; None or a missing key: the table of exposure/agents.py)."""
    route = reg.route_spec
    key = route.pk_key or f"{reg.agent}.{reg.route_name}"
    scale = ((agents.exposure if agents else None) or {}).get(key, 1.0)
    efficacy = ((agents.efficacy if agents else None) or {}).get(route.serm)
    occupancy = ((agents.occupancy if agents else None) or {}).get(route.serm, 1.0)
    return route.exposure(reg.dose, scale, efficacy, occupancy)


def dose_share(reg: Regimen, patient):
    """Share of ``reg``'s doses that ``patient`` takes while it runs: its adherence, and none
    for a ``uterus_only`` regimen without a uterus."""
    return reg.adherence * (patient.uterus_intact if reg.uterus_only else 1.0)


def regimens_taken(a, b, patient, arm: Arm | None, slots: int | None = None):
    """Share of each regimen of ``arm`` taken over steps [a, b): (..., slots) with ``a``'s
    shape in front, the part of the step inside the regimen's window times ``dose_share``;
    ``slots`` (default: the arm's regimens) pads with regimens taken by nobody."""
    regimens = arm.regimens if arm is not None else ()
    windows = regimen_windows(arm, patient) if regimens else []
    shares = [window_fraction(a, b, start, stop) * dose_share(reg, patient)
              for reg, (start, stop) in zip(regimens, windows)]
    slots = len(regimens) if slots is None else slots
    shares += [jnp.zeros_like(a)] * (slots - len(shares))
    return jnp.stack(shares, -1) if shares else jnp.zeros(a.shape + (0,), a.dtype)


def ovary_fraction(a, b, patient):
    """Share of steps [a, b) with the ovaries in place (before a surgical menopause)."""
    return window_fraction(a, b, jnp.full_like(a, -jnp.inf), surgery_switch(patient))


def exposure_rows(regimens, agents: AgentParams | None, slots: int | None = None):
    """``regimen_exposure`` of each regimen as a row of ``EXPOSURES`` values, (slots, 6),
    zero rows padding to ``slots`` (default: the regimens); JAX, as the fitted agent constants
    may be traced."""
    rows = [jnp.stack([jnp.asarray(regimen_exposure(reg, agents).get(k, 0.0))
                       for k in EXPOSURES]) for reg in regimens]
    slots = len(regimens) if slots is None else slots
    rows += [jnp.zeros(len(EXPOSURES))] * (slots - len(rows))
    return jnp.stack(rows) if rows else jnp.zeros((0, len(EXPOSURES)))


def combined_inputs(ovary, taken=None, exposure=None) -> StepInputs:
    """Step inputs from the ovarian share ``ovary`` (...), the regimens' taken shares
    ``taken`` (..., regimens) and their ``exposure_rows`` (regimens, 6), summed in regimen
    order (None: untreated)."""
    total = [jnp.zeros_like(ovary) for _ in EXPOSURES]
    if taken is not None:
        exposure = exposure.astype(ovary.dtype)
        for j in range(taken.shape[-1]):
            total = [t + taken[..., j] * exposure[j, i] for i, t in enumerate(total)]
    return StepInputs(ovary=ovary, **dict(zip(EXPOSURES, total)))


def step_inputs(a, b, patient, arm: Arm | None, agents: AgentParams | None = None) -> StepInputs:
    """Exposures over steps [a, b) (arrays of equal shape) under ``arm`` (None: untreated),
    with the fitted agent constants ``agents`` (``model.params.AgentParams``)."""
    return combined_inputs(ovary_fraction(a, b, patient), regimens_taken(a, b, patient, arm),
                           exposure_rows(arm.regimens if arm is not None else (), agents))
