"""Calibrated parameter files: which model constants are fitted, how, and how they are stored.

A fitted constant is named by a path into ``ModelParams``: ``hormones.rho_L``,
``sites.turnover.lumbar_spine`` (site fields take a site name), ``fracture.gamma.vertebral``
(the turnover exponent takes a fracture site: hip, vertebral, forearm, humerus). The path
``fracture.gamma`` without a site names one exponent shared by the four sites: setting it sets
all four, reading it gives their mean (parameter files fitted before the exponent was per site
hold this path, and load unchanged). Each is fitted in an unconstrained coordinate: ``log`` for positive constants, ``logit`` for
fractions in (0, 1) (``delta_E`` and the femoral-neck ``er_gain``, which must keep
OB apoptosis positive and which we express relative to the spine's gain, fixed at 1).

File format (TOML), written by ``bonecohort calibrate`` and read by ``load_parameters``:

    [provenance]           targets file and its sha256, loss before and after, optimizer
                           settings, date, package versions (free-form; kept for the record)
    [parameters]           "path" = value, one per fitted constant
    [posterior]            optional: a Laplace approximation in the fitted coordinates
                           (fit/posterior.py: coordinates, covariance, prior, method)

Constants not listed keep their hand-set values (model/params.py).
The package ships the fit to ``data/targets/public.toml`` as ``data/parameters/public.toml``;
``default_model`` applies it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.cohort import with_x64
from bonecohort.config import ConfigError
from bonecohort.data import SHIPPED_PARAMETERS
from bonecohort.model.params import SITE_NAMES, ModelParams, hand_set_model
from bonecohort.outcomes.hazards import FractureSite

FRACTURE_SITE_NAMES = tuple(s.key for s in FractureSite)
# Per-site vector fields addressed by a third path part, with the names of their entries.
_INDEXED = {("sites", None): SITE_NAMES, ("fracture", "gamma"): FRACTURE_SITE_NAMES}


@dataclass(frozen=True)
class Free:
    """One fitted constant: its path in ``ModelParams`` and its transform."""

    path: str
    transform: str = "log"  # "log" (positive) or "logit" (in (0, 1))
    prior_sd: float | None = None  # SD of its prior in the fitted coordinate (None: the fit's)

    @property
    def parts(self) -> tuple:
        return tuple(self.path.split("."))

    def to_unconstrained(self, value):
        if self.transform == "log":
            return jnp.log(value)
        return jnp.log(value) - jnp.log1p(-value)

    def from_unconstrained(self, theta):
        if self.transform == "log":
            return jnp.exp(theta)
        return 1.0 / (1.0 + jnp.exp(-theta))


# The constants no paper gives (model/params.py): receptor-action magnitudes, the
# estradiol half-activation, aromatization and androgen action, each site's turnover,
# mechanostat gain and age-related drift, the femoral neck's estrogen gain relative to the
# spine, and the turnover exponent of fracture risk. delta_IGF is left out: no public target
# involves a GH secretagogue, so the targets cannot inform it.
DEFAULT_FREE = (
    Free("hormones.K_E"), Free("hormones.rho_L"), Free("hormones.rho_O"),
    Free("hormones.rho_A"), Free("hormones.delta_E", "logit"), Free("hormones.kappa_AR"),
    Free("hormones.k_arom"),
    Free("sites.turnover.femoral_neck"), Free("sites.turnover.lumbar_spine"),
    Free("sites.mech_gain.femoral_neck"), Free("sites.mech_gain.lumbar_spine"),
    Free("sites.age_loss.femoral_neck"), Free("sites.age_loss.lumbar_spine"),
    Free("sites.er_gain.femoral_neck", "logit"),
    # The SERMs' site selectivity: odds of their bone efficacy at the femoral neck relative
    # to the spine (hormones.py), centred on 1 (none) with log SD 0.7 (a factor 2).
    Free("sites.serm_odds.femoral_neck", prior_sd=0.7),
    *(Free(f"fracture.gamma.{site}") for site in FRACTURE_SITE_NAMES),
    # The remodeling space, secondary mineralization and set-point memory of each site
    # (model/site.py; the primary mineral fraction is kept at its published value).
    *(Free(f"sites.{field}.{site}") for field in ("formation_lag", "secondary_rate",
                                                 "set_point_rate") for site in SITE_NAMES),
    # Agents' constants (exposure/agents.py gives the priors' centres): the estradiol-
    # equivalent exposures of CEE (shared by CE/bazedoxifene) and the androgen exposure of
    # the testosterone patch within their PK spread (log SD 0.35, a factor ~1.4: the
    # between-study range of serum levels in the labels and trials cited there), that of
    # transdermal estradiol with log SD 0.5 (its four PK readings, 14 and 50 ug/day, spread
    # by a log SD of 0.59), the aromatase inhibition of anastrozole, and the bone efficacy
    # of each SERM in a trial.
    # Bazedoxifene's receptor occupancy per dose is fitted too (log SD 0.7, a factor 2: the
    # table's S/K_S is a judgement): the 10/20/40 mg dose-response (Miller 2008) fixes how
    # saturated 20 mg is, which sets how far it pulls CEE back in CE/bazedoxifene.
    Free("agents.exposure.conjugated_estrogens.oral", prior_sd=0.35),
    Free("agents.exposure.testosterone.patch", prior_sd=0.35),
    Free("agents.exposure.anastrozole.oral", prior_sd=0.35),
    Free("agents.exposure.estradiol.transdermal", prior_sd=0.5),
    Free("agents.efficacy.raloxifene", "logit"), Free("agents.efficacy.bazedoxifene", "logit"),
    Free("agents.efficacy.tamoxifen", "logit"),
    Free("agents.occupancy.bazedoxifene", prior_sd=0.7),
)
_GROUPS = ("hormones", "sites", "fracture", "agents")


def _names(group: str, field: str):
    """Entry names of a per-site vector field (None: a scalar field)."""
    return _INDEXED.get((group, None), _INDEXED.get((group, field)))


def check_path(path: str, model) -> Free:
    """The ``Free`` for ``path``, or a ValueError saying what is wrong with it."""
    parts = path.split(".")
    group = parts[0]
    if group not in _GROUPS:
        raise ValueError(f"'{path}': the first part must be one of {', '.join(_GROUPS)}")
    if group == "agents":
        return _check_agent_path(path, parts)
    container = getattr(model, group)
    if len(parts) < 2 or parts[1] not in container._fields:
        raise ValueError(f"'{path}': {group} has no field '{parts[1] if len(parts) > 1 else ''}'"
                         f" (fields: {', '.join(container._fields)})")
    names = _names(group, parts[1])
    shared = group == "fracture" and names is not None and len(parts) == 2
    if names is not None and not shared:
        if len(parts) != 3 or parts[2] not in names:
            raise ValueError(f"'{path}': name the site, e.g. {group}.{parts[1]}.{names[-1]} "
                             f"(sites: {', '.join(names)})")
    elif len(parts) != 2:
        raise ValueError(f"'{path}': expected {group}.<field>")
    if np.ndim(getattr(container, parts[1])) != (0 if names is None else 1):
        raise ValueError(f"'{path}': not a scalar constant")
    return _known(path, Free(path))


def get_value(model, free: Free):
    """The constant named by ``free``; for a shared per-site path, the mean of its entries."""
    group, field, *site = free.parts
    if group == "agents":
        return _agent_values(model, field).get(".".join(site), _agent_default(field, site))
    value = getattr(getattr(model, group), field)
    if site:
        return value[_names(group, field).index(site[0])]
    return jnp.mean(jnp.asarray(value)) if _names(group, field) else value


def set_values(model, frees, values):
    """``model`` with each ``frees[i]`` set to ``values[i]`` (works on traced values); a
    shared per-site path sets every entry."""
    for free, value in zip(frees, values):
        group, field, *site = free.parts
        if group == "agents":
            table = {**_agent_values(model, field), ".".join(site): value}
            model = model._replace(agents=model.agents._replace(**{field: table}))
            continue
        container = getattr(model, group)
        names = _names(group, field)
        old = jnp.asarray(getattr(container, field))
        if site:
            value = old.at[names.index(site[0])].set(value)
        elif names:
            value = jnp.broadcast_to(jnp.asarray(value), old.shape)
        model = model._replace(**{group: container._replace(**{field: value})})
    return model


def _check_agent_path(path: str, parts: list) -> Free:
    """``agents.exposure.<agent>.<route>``, ``agents.efficacy.<serm>`` or
    ``agents.occupancy.<serm>`` (exposure/agents.py)."""
    from bonecohort.exposure.agents import AGENTS

    field = parts[1] if len(parts) > 1 else ""
    exposure = (field == "exposure" and len(parts) == 4
                and parts[3] in getattr(AGENTS.get(parts[2]), "routes", {}))
    serm = (field in ("efficacy", "occupancy") and len(parts) == 3
            and _agent_default("efficacy", parts[2:]) is not None)
    if not (exposure or serm):
        serms = sorted({r.serm for a in AGENTS.values() for r in a.routes.values() if r.serm})
        raise ValueError(f"'{path}': expected agents.exposure.<agent>.<route> (e.g. "
                         "agents.exposure.conjugated_estrogens.oral), agents.efficacy.<SERM> or "
                         "agents.occupancy.<SERM> "
                         f"(SERMs: {', '.join(serms)})")
    return _known(path, Free(path, "logit" if field == "efficacy" else "log"))


def _known(path: str, default: Free) -> Free:
    """The default fit's ``Free`` for ``path`` (its transform and prior), else ``default``."""
    return next((f for f in DEFAULT_FREE if f.path == path), default)


def _agent_values(model, field: str) -> dict:
    return dict(getattr(model.agents, field) or {})


def _agent_default(field: str, key: list):
    """The table's value of an agent constant: exposure and occupancy scales 1, or the SERM's
    efficacy."""
    from bonecohort.exposure.agents import AGENTS

    if field in ("exposure", "occupancy"):
        return 1.0
    for agent in AGENTS.values():
        for route in agent.routes.values():
            if route.serm == key[0] and agent.name == key[0]:
                return route.serm_efficacy
    return None


@with_x64
def to_theta(model, frees):
    """Unconstrained coordinates of ``frees`` in ``model`` (a float64 vector)."""
    return jnp.stack([f.to_unconstrained(jnp.asarray(get_value(model, f), jnp.float64))
                      for f in frees])


def from_theta(model, frees, theta):
    return set_values(model, frees, [f.from_unconstrained(theta[i]) for i, f in enumerate(frees)])


def load_parameters(path, model):
    """``model`` with the constants of a parameter file applied; ``ConfigError`` naming the
    file, section and field on bad input."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the parameter file ({exc.strerror}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from None
    unknown = sorted(set(raw) - {"provenance", "parameters", "posterior"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; a parameter file "
                          "has [provenance], [parameters] and optionally [posterior].")
    table = raw.get("parameters")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{path}: [parameters] is missing or empty; it lists \"path\" = value "
                          "for each fitted constant, e.g. \"hormones.rho_L\" = 2.0.")
    frees, values = [], []
    for name, value in table.items():
        try:
            free = check_path(name, model)
        except ValueError as exc:
            raise ConfigError(f"{path}: [parameters] {exc}.") from None
        bad = isinstance(value, bool) or not isinstance(value, (int, float))
        if bad or not np.isfinite(value) or value <= 0 or (
                free.transform == "logit" and value >= 1):
            need = "in (0, 1)" if free.transform == "logit" else "a positive number"
            raise ConfigError(f"{path}: [parameters] \"{name}\": {value!r} must be {need}.")
        frees.append(free)
        values.append(float(value))
    model = set_values(model, frees, values)
    return _to_numpy(model)


def _to_numpy(model):
    """Host constants again (``set_values`` leaves JAX arrays), so the model hashes and
    compiles like a hand-built one."""
    return jax.tree.map(lambda v: np.asarray(v) if isinstance(v, jnp.ndarray) else v, model)


def format_parameters(model, frees, provenance: dict, posterior: dict | None = None,
                      values: dict | None = None) -> str:
    """TOML text of a parameter file (see the module docstring); ``posterior``: the fields
    of its [posterior] section (fit/posterior.py); ``values``: path -> value to write instead
    of reading them from ``model`` (a file rewritten keeps its numbers exactly)."""
    lines = ["# Fitted by `bonecohort calibrate`; constants not listed keep their hand-set",
             "# values (bonecohort/model/params.py).", "",
             "[provenance]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in provenance.items()]
    lines += ["", "[parameters]"]
    lines += [f"\"{f.path}\" = {float(values[f.path] if values else get_value(model, f))!r}"
              for f in frees]
    if posterior:
        lines += ["", "[posterior]"] + [f"{k} = {_toml_value(v)}" for k, v in posterior.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(x)}"
                                for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_model() -> ModelParams:
    """The model every command uses: the hand-set constants with the shipped calibration
    (``data/parameters/public.toml``, fitted to ``data/targets/public.toml``) applied."""
    return load_parameters(SHIPPED_PARAMETERS, hand_set_model())
