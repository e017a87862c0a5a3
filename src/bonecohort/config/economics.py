"""[economics] of a study: discounting, horizon, willingness to pay, drug prices (validated).

Every key is optional; the defaults are those of US cost-effectiveness guidance (Second Panel
on Cost-Effectiveness in Health and Medicine, Sanders 2016 JAMA 316:1093: health-sector
perspective, 3 % a year for costs and effects) and a willingness to pay of 100,000 USD per
QALY (Neumann 2014 N Engl J Med 371:796 discusses 50,000-150,000).

    currency = "USD"             label printed with costs (the tables are US dollars)
    currency_year = "mixed"      price year stated by the user; the shipped tables keep each
                                 source's own year (us_costs.csv), not inflated
    discount_costs = 0.03        per year, 0-0.1
    discount_effects = 0.03      per year, 0-0.1 (life-years and QALYs)
    horizon_years = <study>      economic horizon from entry, at most the study's horizon
    willingness_to_pay = 100000  per QALY, for net monetary benefit
    drug_costs = { "estradiol.transdermal" = 600.0, ... }  annual cost per agent route,
                                 replacing the table's (names: `bonecohort agents`)
    tables = ""                  folder of harm, utility and cost tables (default shipped)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bonecohort.config.checks import (
    check_folder,
    check_number,
    check_str,
    table,
    unknown_keys,
)
from bonecohort.exposure.agents import AGENTS

ECONOMICS_KEYS = {"currency", "currency_year", "discount_costs", "discount_effects",
                  "horizon_years", "willingness_to_pay", "drug_costs", "tables"}


@dataclass(frozen=True)
class EconomicsOptions:
    currency: str = "USD"
    currency_year: str = "mixed"
    discount_costs: float = 0.03
    discount_effects: float = 0.03
    horizon_years: float = math.inf  # capped at the study's horizon
    willingness_to_pay: float = 100000.0
    drug_costs: tuple = ()  # (("agent.route", usd per year), ...)
    tables: str = ""
    given: bool = False  # the study has an [economics] section


def routes() -> set:
    return {f"{a.name}.{r}" for a in AGENTS.values() for r in a.routes}


def parse_economics(sec: dict, path, horizon: int) -> EconomicsOptions:
    """Validate a study's ``[economics]`` table (``sec``; {} when absent)."""
    name = "economics"
    unknown_keys(sec, ECONOMICS_KEYS, path, name)
    drugs = table(sec.get("drug_costs", {}), path, f"{name}.drug_costs")
    known = routes()
    for route, usd in drugs.items():
        check_str(route, path, f"{name}.drug_costs", route, known)
        check_number(usd, path, f"{name}.drug_costs", route, 0.0, 1e7)
    years = sec.get("horizon_years", horizon)
    check_number(years, path, name, "horizon_years", 1.0, float(horizon))
    tables = check_folder(sec, path, name)
    return EconomicsOptions(
        currency=check_str(sec.get("currency", "USD"), path, name, "currency"),
        currency_year=str(check_str(str(sec.get("currency_year", "mixed")), path, name,
                                    "currency_year")),
        discount_costs=check_number(sec.get("discount_costs", 0.03), path, name,
                                    "discount_costs", 0.0, 0.1),
        discount_effects=check_number(sec.get("discount_effects", 0.03), path, name,
                                      "discount_effects", 0.0, 0.1),
        horizon_years=float(years),
        willingness_to_pay=check_number(sec.get("willingness_to_pay", 100000.0), path, name,
                                        "willingness_to_pay", 0.0, 1e7),
        drug_costs=tuple(sorted((k, float(v)) for k, v in drugs.items())),
        tables=tables, given=bool(sec))
