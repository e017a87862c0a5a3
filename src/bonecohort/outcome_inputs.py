"""Harm, utility and cost inputs of a study: tables -> the arrays of the outcome read-out.

``harm_setup`` and ``economics_setup`` assemble ``outcomes.harms.HarmSetup`` and
``outcomes.economics.EconomicsSetup`` from the tables of data/harm_tables.py in the order of
``HARMS`` (outcomes), ``COMPONENTS`` (agent routes) and ``EVENT_TYPES`` (harms, then fracture
sites). ``InputSpread`` keeps each input's stated uncertainty (SD of a log hazard ratio or
log cost, SD of a utility multiplier), and ``draw_inputs`` draws one set for a probabilistic
sensitivity analysis: log hazard ratios and log costs normal, utility multipliers normal
clipped to [0, 1].
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.config.checks import ConfigError
from bonecohort.config.economics import EconomicsOptions
from bonecohort.data.harm_tables import (
    HARMS_DIR,
    MAX_AGE,
    HarmTableError,
    HarmTables,
    load_harm_tables,
)
from bonecohort.outcomes.economics import EconomicsSetup
from bonecohort.outcomes.events import excess_weight
from bonecohort.outcomes.harms import COMPONENTS, ENDOMETRIAL, HARMS, HarmSetup
from bonecohort.outcomes.hazards import FractureSite

EVENT_TYPES = HARMS + tuple(f"{s.key}_fracture" for s in FractureSite)
UNOPPOSED = "unopposed_estrogen"
# Share of US women with a uterus, for the endometrial deaths in the life table (about one in
# five women aged 50-59 has had a hysterectomy; Merrill 2008 Womens Health Issues 18:18).
UTERUS_SHARE = 0.8


class InputSpread(NamedTuple):
    """SDs of the drawn inputs (same shapes as the arrays they spread)."""

    log_hr: np.ndarray  # (C, O)
    log_hr_after: np.ndarray  # (C, O)
    log_hr_unopposed: np.ndarray  # (O,)
    first_year: np.ndarray  # (T,)
    later: np.ndarray  # (T,)
    log_cost_first: np.ndarray  # (T,)
    log_cost_later: np.ndarray  # (T,)
    log_drug: np.ndarray  # (C,)


def tables_for(folder: str, where: str) -> HarmTables:
    try:
        return load_harm_tables(folder or HARMS_DIR)
    except (HarmTableError, KeyError, ValueError) as exc:
        raise ConfigError(f"{where}: harm and economics tables: {exc}") from None


def _effect_arrays(tables: HarmTables):
    """(log_hr, sd, log_hr_after, sd_after, after_years, unopposed, sd_unopposed)."""
    c, o = len(COMPONENTS), len(HARMS)
    on, on_sd, off, off_sd = (np.zeros((c, o)) for _ in range(4))
    years = np.zeros(c)
    unopposed, unopposed_sd = np.zeros(o), np.zeros(o)
    for e in tables.effects:
        if e.outcome not in HARMS:
            continue
        j = HARMS.index(e.outcome)
        if e.component == UNOPPOSED:
            unopposed[j], unopposed_sd[j] = e.log_hr, e.log_hr_sd
            continue
        if e.component not in COMPONENTS:
            raise HarmTableError(f"harm_effects.csv: unknown component '{e.component}' (known: "
                                 f"agent.route names of `bonecohort agents`, or {UNOPPOSED}).")
        i = COMPONENTS.index(e.component)
        if e.period == "on_treatment":
            on[i, j], on_sd[i, j] = e.log_hr, e.log_hr_sd
        else:
            off[i, j], off_sd[i, j] = e.log_hr, e.log_hr_sd
            years[i] = max(years[i], e.after_years)
    return on, on_sd, off, off_sd, years, unopposed, unopposed_sd


def background_deaths(incidence, cf, excess, excess_years):
    """Deaths per person-year at each age that the harm events cause at baseline rates,
    (2, ages): case fatality of the events at that age plus the excess deaths of events in
    the ``excess_years`` before it (events.excess_weight; a stationary population; endometrial cancer
    weighted by ``UTERUS_SHARE``). Removed from the life table's hazard (outcomes/harms.py)."""
    share = np.ones(len(HARMS))
    share[ENDOMETRIAL] = UTERUS_SHARE
    deaths = np.einsum("o,os,osa->sa", share, cf, incidence)
    for o in range(len(HARMS)):
        for lag in range(0, int(np.ceil(excess_years[o])) + 1):
            # the event's own year (half) and the years after it (events.excess_weight)
            weight = 0.5 if lag == 0 else float(excess_weight(lag, excess_years[o]))
            earlier = np.concatenate([np.zeros((2, lag)), incidence[o, :, :MAX_AGE - lag]],
                                     axis=1)
            deaths += weight * share[o] * excess[o][:, None] * earlier
    return deaths


def harm_setup(tables: HarmTables) -> HarmSetup:
    on, _, off, _, years, unopposed, _ = _effect_arrays(tables)
    incidence = np.stack([tables.incidence[h] for h in HARMS])
    mort = [tables.mortality.get(h, (np.zeros(2), np.zeros(2), 0.0)) for h in HARMS]
    cf = np.stack([m[0] for m in mort])
    excess = np.stack([m[1] for m in mort])
    excess_years = np.array([m[2] for m in mort])
    background = background_deaths(incidence, cf, excess, excess_years)
    return HarmSetup(incidence=incidence, log_hr=on, log_hr_after=off, after_years=years,
                     log_hr_unopposed=unopposed, case_fatality=cf, excess=excess,
                     excess_years=excess_years, background=background)


def _economic_inputs(tables: HarmTables, opts: EconomicsOptions) -> dict:
    """{input: (values, SDs)} of the utility multipliers (``EVENT_TYPES``), event costs and
    drug prices (``COMPONENTS``; the study's ``drug_costs`` replace the table's, with no
    spread)."""
    def pick(table, keys, default):
        pairs = [table.get(k, default)[:2] for k in keys]
        return np.array([v for v, _ in pairs]), np.array([sd for _, sd in pairs])

    out = {name: pick(tables.utilities, [(t, period) for t in EVENT_TYPES], (1.0, 0.0))
           for name, period in (("first_year", "first_year"), ("later", "later"))}
    out.update({name: pick(tables.costs, [(t, kind) for t in EVENT_TYPES], (0.0, 0.0))
                for name, kind in (("cost_first", "event_first_year"),
                                   ("cost_later", "event_later_annual"))})
    drug, drug_sd = pick(tables.costs, [(c, "drug_annual") for c in COMPONENTS], (0.0, 0.0))
    for route, usd in opts.drug_costs:
        drug[COMPONENTS.index(route)], drug_sd[COMPONENTS.index(route)] = usd, 0.0
    out["drug"] = (drug, drug_sd)
    return out


def economics_setup(tables: HarmTables, opts: EconomicsOptions, horizon: float
                    ) -> EconomicsSetup:
    inputs = _economic_inputs(tables, opts)
    norm = tables.utility_norm
    if norm.shape != (2, MAX_AGE):
        raise ConfigError("utilities.csv: age norms must cover both sexes.")
    return EconomicsSetup(norm=norm, **{k: v for k, (v, _) in inputs.items()},
                          discount_costs=np.asarray(opts.discount_costs),
                          discount_effects=np.asarray(opts.discount_effects),
                          years=np.asarray(min(opts.horizon_years, horizon)))


def input_spread(tables: HarmTables, opts: EconomicsOptions) -> InputSpread:
    _, on_sd, _, off_sd, _, _, unopposed_sd = _effect_arrays(tables)
    sd = {k: v for k, (_, v) in _economic_inputs(tables, opts).items()}
    return InputSpread(on_sd, off_sd, unopposed_sd, sd["first_year"], sd["later"],
                       sd["cost_first"], sd["cost_later"], sd["drug"])


def draw_inputs(hs: HarmSetup | None, es: EconomicsSetup | None, spread: InputSpread, key):
    """One draw of the harm, utility and cost inputs around ``hs`` and ``es`` (jax key;
    either may be None, and stays so)."""
    keys = iter(jax.random.split(key, 8))

    def normal(mean, sd):
        mean = jnp.asarray(mean)
        return mean + jnp.asarray(sd) * jax.random.normal(next(keys), mean.shape, mean.dtype)

    if hs is not None:
        hs = hs._replace(log_hr=normal(hs.log_hr, spread.log_hr),
                         log_hr_after=normal(hs.log_hr_after, spread.log_hr_after),
                         log_hr_unopposed=normal(hs.log_hr_unopposed, spread.log_hr_unopposed))
    if es is None:
        return hs, es

    def lognormal(value, sd):
        return jnp.asarray(value) * jnp.exp(normal(jnp.zeros_like(jnp.asarray(value)), sd))

    es = es._replace(first_year=jnp.clip(normal(es.first_year, spread.first_year), 0.0, 1.0),
                     later=jnp.clip(normal(es.later, spread.later), 0.0, 1.0),
                     cost_first=lognormal(es.cost_first, spread.log_cost_first),
                     cost_later=lognormal(es.cost_later, spread.log_cost_later),
                     drug=lognormal(es.drug, spread.log_drug))
    return hs, es


@functools.lru_cache(maxsize=1)
def shipped_tables() -> HarmTables:
    """The shipped harm, utility and cost tables, read once per process."""
    return load_harm_tables()


def harm_sources(agent: str, tables: HarmTables | None = None) -> list[str]:
    """'outcome: HR (grade) source' lines of the harm effects of ``agent``'s routes."""
    tables = tables or shipped_tables()
    lines = []
    for e in tables.effects:
        if e.component.split(".")[0] == agent:
            when = "" if e.period == "on_treatment" else f" after stopping ({e.after_years:g} y)"
            lines.append(f"{e.component} {e.outcome}{when}: HR {np.exp(e.log_hr):.2f} "
                         f"(grade {e.grade}) {e.source}")
    return lines


def priced_routes(tables: HarmTables | None = None) -> set:
    """The agent routes with an annual drug price in the shipped (or given) cost table."""
    tables = tables or shipped_tables()
    return {item for item, kind in tables.costs if kind == "drug_annual"}
