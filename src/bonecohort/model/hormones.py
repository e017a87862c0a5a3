"""Sex-steroid receptor activity and its action on bone cells (pure JAX, one patient).

Receptor activities (Hill coefficient 1; magnitudes are calibration parameters, params.py):

    a_ER = (E2/K_E + sum_i eps_i S_i/K_i) / (1 + E2/K_E + sum_i S_i/K_i)
        SERMs compete with estradiol for ER; eps_i is the bone efficacy of SERM i, so a
        saturating SERM pulls a_ER towards eps_i: up from postmenopausal levels, down from
        premenopausal ones (tamoxifen: bone loss before menopause, gain after).
    a_AR = T / (T + K_T)

    At a site whose SERM odds ratio is q (``SiteParams.serm_odds``; 1 at the lumbar spine),
    each SERM acts with efficacy eps' where eps'/(1 - eps') = q eps/(1 - eps), occupancy
    unchanged: SERMs are tissue-selective, and their hip gain relative to their spine gain
    is larger than estradiol's. Raloxifene 60 mg/day vs placebo: spine +2.6 %, femoral neck
    +2.1 % at 3 years (MORE, Ettinger 1999 JAMA 282:637); spine +2.4 %, total hip +2.4 % at
    2 years (Delmas 1997 NEJM 337:1641); CEE with MPA vs placebo: spine +4.5 %, total hip
    +3.7 % at 3 years (WHI, Cauley 2003 JAMA 290:1729). With several SERMs at once, eps is
    their occupancy-weighted mean efficacy sum eps_i S_i/K_i / sum S_i/K_i.

Actions on the Pivonka core (multipliers of its rates):

    RANKL expression  x (1 + g rho_L s (1 - a_ER))   estrogen suppresses RANKL on marrow
        stromal / osteoblast-lineage cells (Eghbali-Fatourechi 2003 J Clin Invest 111:1221)
    OPG production    x (1 + g rho_O a_ER)           (Hofbauer 1999 Endocrinology 140:4367)
    OC apoptosis      x (1 + g rho_A a_ER)           (Hughes 1996 Nat Med 2:1132)
    OB apoptosis      x (1 - g delta_E a_ER)         (Kousteni 2001 Cell 104:719)
    OBp -> OBa        x (1 + kappa_AR a_AR)          androgens on osteoblast differentiation
                                                     (Kasperk 1989 Endocrinology 124:1576)
    OBu commitment    x (1 + delta_IGF dIGF)         IGF-1 on osteoblast recruitment
                                                     (Giustina 2008 Endocr Rev 29:535)

g is the site gain (``SiteParams.er_gain``), s the patient's RANKL sensitivity. Every
multiplier is divided by its value at the patient's reference hormones (untreated, age 30),
so the patient sits exactly at the Pivonka 2008 steady state at peak bone mass.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from bonecohort.model.params import CellAction, HormoneParams


class Hormones(NamedTuple):
    """Hormonal milieu at one instant (scalars)."""

    e2: float  # pg/mL, serum estradiol (endogenous + exogenous, E2-equivalent)
    t: float  # ng/dL, serum testosterone
    serm_occ: float = 0.0  # sum S/K_S of SERMs
    serm_ago: float = 0.0  # sum eps_S S/K_S
    igf: float = 0.0  # relative IGF-1 rise


def site_serm_agonism(h: Hormones, serm_odds):
    """sum eps'_i S_i/K_i at a site whose SERM efficacy odds are ``serm_odds`` times the
    spine's: occ q eps / (1 + (q - 1) eps) with eps = serm_ago / serm_occ (0 without SERM)."""
    occ, ago = h.serm_occ, h.serm_ago
    denominator = jnp.where(occ > 0.0, occ + (serm_odds - 1.0) * ago, 1.0)
    return serm_odds * ago * occ / denominator


def er_activity(h: Hormones, hp: HormoneParams, serm_odds=1.0):
    """Estrogen-receptor activity a_ER in [0, 1) at a site with SERM odds ratio
    ``serm_odds`` (1: the efficacies as tabled)."""
    r = h.e2 / hp.K_E
    return (r + site_serm_agonism(h, serm_odds)) / (1.0 + r + h.serm_occ)


def ar_activity(h: Hormones, hp: HormoneParams):
    """Androgen-receptor activity a_AR in [0, 1)."""
    return h.t / (h.t + hp.K_T)


def _raw_action(h: Hormones, hp: HormoneParams, gain, rankl_sensitivity,
                serm_odds) -> CellAction:
    a, ar = er_activity(h, hp, serm_odds), ar_activity(h, hp)
    return CellAction(
        rankl=1.0 + gain * hp.rho_L * rankl_sensitivity * (1.0 - a),
        opg=1.0 + gain * hp.rho_O * a,
        oc_apoptosis=1.0 + gain * hp.rho_A * a,
        ob_apoptosis=1.0 - gain * hp.delta_E * a,
        obp_differentiation=1.0 + hp.kappa_AR * ar,
        obu_differentiation=1.0 + hp.delta_IGF * h.igf,
    )


def hormone_action(h: Hormones, ref: Hormones, hp: HormoneParams, gain=1.0,
                   rankl_sensitivity=1.0, serm_odds=1.0) -> CellAction:
    """Cell-rate multipliers for hormones ``h``, relative to the reference ``ref``."""
    now = _raw_action(h, hp, gain, rankl_sensitivity, serm_odds)
    base = _raw_action(ref, hp, gain, rankl_sensitivity, serm_odds)
    return CellAction(*(x / x0 for x, x0 in zip(now, base)))
