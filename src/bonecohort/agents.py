"""Agents: dose -> step-averaged exposure, with units, plausible range, evidence and sources.

Each agent maps a daily dose to an average serum level added to the endogenous one while the
regimen is active (rate-averaged exposure, DESIGN.md section 5: at month-long steps pulses are
replaced by their average).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Agent:
    """Static description of one agent (host-side metadata, never traced)."""

    name: str
    mechanism: str
    route: str
    dose_unit: str
    dose_range: tuple[float, float]
    e2_per_dose: float  # pg/mL of serum estradiol per dose unit, at steady state
    evidence: str
    sources: str


ESTRADIOL_TRANSDERMAL = Agent(
    name="estradiol_transdermal",
    mechanism="17beta-estradiol: estrogen-receptor agonist (RANKL down, OPG up, OC apoptosis up)",
    route="transdermal patch",
    dose_unit="ug/day",
    dose_range=(14.0, 100.0),
    # Matrix patches raise serum E2 roughly in proportion to the delivered dose; the 50 ug/day
    # patch gives averages of about 35-55 pg/mL above the postmenopausal baseline, the level
    # regarded as effective for bone (Vivelle/Vivelle-Dot and Climara prescribing information,
    # clinical pharmacology; Menostar 14 ug/day about 4-6 pg/mL above baseline, Ettinger 2004
    # Obstet Gynecol 104:443). We use 0.8 pg/mL per ug/day; the slope is an exposure estimate,
    # not a fitted value.
    e2_per_dose=0.8,
    evidence="high (RCTs of BMD and fractures: PEPI 1996, WHI 2003, ULTRA 2004)",
    sources="Ettinger 2004 Obstet Gynecol 104:443; Vivelle-Dot and Climara labels",
)

AGENTS = {a.name: a for a in (ESTRADIOL_TRANSDERMAL,)}
