"""Parameters of the remodeling model, as immutable pytrees.

Every field carries its unit and source. Containers are ``NamedTuple`` so that they are JAX
pytrees: a batch of patients is the same container with an extra leading axis on the fields
that vary between patients, and ``jax.grad`` can differentiate through any field.

Sources
-------
* ``CoreParams``: Pivonka P. et al. (2008) "Model structure and control of bone remodeling: a
  theoretical study", Bone 43:249-263, doi:10.1016/j.bone.2008.03.025, with the corrections to
  the printed values recorded in the public ``bone-models`` package (v0.1.0,
  ``bone_models/parameters/pivonka_parameters.py``): beta_RANKL is 1.684e2 (paper: e4),
  R_RANKL is 2.703e6 (paper: 6e6), D_OBp includes Lemaire's f0 = 0.05.
* ``HormoneParams`` and ``SiteParams``: forms in model/hormones.py (receptor coupling)
  and section 3 (bone-volume feedback, sites). Their magnitudes are *calibration parameters*,
  not published constants. The values below were set by hand so that untreated women
  reproduce the published menopausal loss rates (SWAN, Greendale 2012 JBMR 27:111; Sowers 2010
  JCEM) within a factor of two (see ``LUMBAR_SPINE`` below); they are the starting point of
  the fit. The model every command uses (``simulate.default_model``) replaces the fitted ones
  with the values in ``bonecohort/data/parameters/public.toml``, fitted to the 29 published
  results of ``bonecohort/data/targets/public.toml`` (fit/calibrate.py; provenance in that file).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numpy as np


class CoreParams(NamedTuple):
    """Pivonka 2008 bone-cell model constants (RANKL on OBp, OPG on OBa).

    Units: concentrations pM, time days.
    """

    D_OBu: float = 7.0e-4  # pM/day, differentiation flux of uncommitted osteoblasts
    D_OBp: float = 2.674077909527713e-1  # 1/day, OBp -> OBa differentiation (f0 included)
    D_OCp: float = 2.1e-3  # pM/day, differentiation flux of osteoclast precursors
    A_OBa: float = 1.89e-1  # 1/day, apoptosis of active osteoblasts
    A_OCa: float = 7.0e-1  # 1/day, apoptosis of active osteoclasts
    K_D1: float = 4.545454545454545e-3  # pM, TGF-beta activation of OBu
    K_D2: float = 1.415624253823446e-3  # pM, TGF-beta repression of OBp
    K_D3: float = 4.545454545454545e-3  # pM, TGF-beta activation of OCa apoptosis
    K_D4: float = 1.5e2  # pM, PTH activation (RANKL)
    K_D6: float = 2.225814277099542e-1  # pM, PTH repression (OPG)
    K_D8: float = 4.457452802710724  # pM, RANKL-RANK activation of OCp
    K_A1: float = 1.0e-3  # 1/pM, RANKL-OPG association
    K_A2: float = 3.411764705882353e-2  # 1/pM, RANKL-RANK association
    RANK: float = 10.0  # pM, fixed RANK concentration
    beta_PTH: float = 250.0  # pM/day, systemic PTH production
    D_PTH: float = 86.0  # 1/day, PTH degradation
    beta_OPG: float = 1.624900337835679e8  # 1/day, OPG production per active osteoblast
    D_OPG: float = 0.35  # 1/day, OPG degradation
    OPG_max: float = 2.0e8  # pM, OPG saturation
    R_RANKL: float = 2.703476379131062e6  # pM/pM, RANKL carrying capacity per OBp
    beta_RANKL: float = 1.684195714712206e2  # pM/day, intrinsic RANKL production
    D_RANKL: float = 1.0132471014805027e1  # 1/day, RANKL degradation
    D_TGFb: float = 1.0  # 1/day, TGF-beta degradation
    alpha: float = 1.0  # -, TGF-beta stored per unit resorbed bone
    k_res: float = 1.0  # %/(pM day), resorption per active osteoclast


class Dosing(NamedTuple):
    """External production terms P_*,d of Pivonka 2008 (pM/day): injections or drugs.

    Zero means no external source; these are inputs, not parameters.
    """

    PTH: float = 0.0
    OPG: float = 0.0
    RANKL: float = 0.0
    TGFb: float = 0.0


class CellAction(NamedTuple):
    """Multipliers on Pivonka rates through which hormones and the mechanostat act.

    All ones is the reference: the Pivonka 2008 equations unchanged.
    """

    rankl: float = 1.0  # on R_RANKL (RANKL expressed per osteoblast precursor)
    opg: float = 1.0  # on beta_OPG (OPG produced per active osteoblast)
    oc_apoptosis: float = 1.0  # on A_OCa
    ob_apoptosis: float = 1.0  # on A_OBa
    obp_differentiation: float = 1.0  # on D_OBp (androgen action, later agents)
    obu_differentiation: float = 1.0  # on D_OBu (IGF-1 action, later agents)


class HormoneParams(NamedTuple):
    """Sex-steroid receptor coupling (model/hormones.py); magnitudes are calibration
    parameters unless a source is given.

    a_ER = (E2/K_E + sum eps_S S/K_S) / (1 + E2/K_E + sum S/K_S)   (SERMs compete)
    a_AR = T / (T + K_T)
    Multipliers are taken relative to each patient's own untreated hormones at age 30, so
    every patient starts at the Pivonka steady state at peak bone mass.
    """

    K_E: float = 20.0  # pg/mL, half-activation of ER by serum estradiol
    rho_L: float = 2.0  # -, RANKL production x (1 + rho_L (1 - a_ER))
    rho_O: float = 1.0  # -, OPG production x (1 + rho_O a_ER)
    rho_A: float = 0.5  # -, OC apoptosis x (1 + rho_A a_ER)
    delta_E: float = 0.3  # -, OB apoptosis x (1 - delta_E a_ER)
    K_T: float = 300.0  # ng/dL, half-activation of AR by serum testosterone (assumption)
    kappa_AR: float = 0.3  # -, OBp differentiation x (1 + kappa_AR a_AR)
    delta_IGF: float = 0.02  # -, OBu commitment x (1 + delta_IGF dIGF); plausible 0-0.1
    # Aromatization in men: serum E2 ~ 20-30 pg/mL at T ~ 550 ng/dL (untreated men in
    # Finkelstein 2013 NEJM 369:1011).
    k_arom: float = 0.045  # pg/mL of E2 per ng/dL of T
    # Share of male serum E2 secreted directly by the testes, not from circulating T
    # (Longcope 1969 J Clin Invest 48:2191: ~15-20 %); aromatase inhibitors spare it.
    testis_e2_fraction: float = 0.2  # -
    # Rise of male T under full aromatase inhibition (less E2 feedback on LH): anastrozole
    # 1 mg/day raised T by ~58 % at x/(1+x) = 0.85 (Leder 2004 JCEM 89:1174).
    ai_t_feedback: float = 0.68  # -, T x (1 + ai_t_feedback I_AI)
    # Exogenous T suppresses LH and endogenous T: endogenous x 1/(1 + T_exo/T_supp)
    # (assumption; replacement doses suppress LH almost fully, e.g. Wang 2000 JCEM 85:2839).
    T_supp: float = 150.0  # ng/dL


class SiteParams(NamedTuple):
    """One skeletal site: turnover and bone-volume (mechanostat) feedback.

    turnover: fraction of the site's bone volume resorbed per year at steady state (1/yr);
      trabecular spine turns over faster than the cortical-rich femoral neck (Parfitt 1983;
      model/site.py). BV'/BV_ref = turnover/365.25 * (OBa/OBa* - OCa/OCa*) is Pivonka's
      deviation form k_form (OBa - OBa*) - k_res (OCa - OCa*) with k_form OBa* = k_res OCa*.
    mech_gain: mechanostat exponent m; osteoblast-precursor commitment x (BV_ref/BV)^m. As bone
      is lost the strain energy density under unchanged loads rises and drives formation
      (Scheiner 2013 CMAME 254:181; Martinez-Reina 2019), so loss decelerates (see site.py).
    er_gain: site gain on all estrogen-receptor actions.
    age_loss: age-related loss independent of sex steroids (fraction of BV per year from
      age 30), a drift of the mechanostat set point: BV settles at exp(-age_loss (age - 30))
      of its reference. NHANES III femoral-neck BMD falls ~0.3 %/yr across adult life in
      both sexes beyond what menopause explains (Looker 1998 Osteoporos Int 8:468); DXA spine
      BMD changes less with age (degenerative artefacts). MrOS men >= 65 lose ~0.4 %/yr at the
      femoral neck in total (Cawthon 2009 JBMR 24:1728), with falling testosterone adding the
      rest. Calibration parameter.
    formation_lag: years from resorption to refilling of a cavity (remodeling space; site.py).
    primary_mineral: mineral content of new matrix after primary mineralization, as a fraction
      of full mineralization (~0.7 within days: Hernandez 2000 J Rehabil Res Dev 37:235;
      Boivin & Meunier 2002 Calcif Tissue Int 70:503).
    secondary_rate: rate of secondary mineralization toward full (1/yr). Secondary
      mineralization runs over years (Boivin & Meunier 2002); calibration parameter.
    set_point_rate: adaptation rate of the mechanostat set point to the bone's own history
      (1/yr; Turner 1999 Bone 24:399); calibration parameter, 0 = no memory.
    serm_odds: odds ratio of a SERM's bone efficacy at the site to its efficacy at the lumbar
      spine (fixed at 1 there; hormones.py); 1 = no site selectivity. Calibration parameter
      of the femoral neck.
    """

    turnover: float
    mech_gain: float
    er_gain: float = 1.0
    age_loss: float = 0.0
    formation_lag: float = 0.25
    primary_mineral: float = 0.7
    secondary_rate: float = 0.5
    set_point_rate: float = 0.05
    serm_odds: float = 1.0


# Hand-set effective values (see module docstring): with E2 falling from 100 to 10 pg/mL around
# the FMP they give lumbar spine -7.1 % over FMP-1..FMP+2 y (SWAN: -7.38 %), -3.1 %/yr over
# FMP..FMP+2 (Sowers: -3.3), -1.4 %/yr over FMP+2..+7 (Sowers: -1.1) and femoral neck -4.6 %
# over FMP-1..FMP+2 (SWAN: -5.8 %). ``turnover`` here is an effective rate that also absorbs
# the remodeling-space transient; it is larger than histomorphometric activation frequencies.
LUMBAR_SPINE = SiteParams(turnover=0.5, mech_gain=1.5, er_gain=1.0, age_loss=0.001)
FEMORAL_NECK = SiteParams(turnover=0.4, mech_gain=1.5, er_gain=0.75, age_loss=0.003)


class Site(IntEnum):
    """Simulated skeletal sites, in the order of the site axis of ``SiteParams`` stacks and of
    every per-site output."""

    FEMORAL_NECK = 0
    LUMBAR_SPINE = 1

    @property
    def key(self) -> str:
        """Lower-case name used in files and columns (``femoral_neck``)."""
        return self.name.lower()


SITE_NAMES = tuple(s.key for s in Site)
SITE_PARAMS = {Site.FEMORAL_NECK: FEMORAL_NECK, Site.LUMBAR_SPINE: LUMBAR_SPINE}


def default_sites() -> SiteParams:
    """Both sites stacked on a leading axis, in ``Site`` order."""
    return SiteParams(*(np.array(v) for v in zip(*(SITE_PARAMS[s] for s in Site))))


class EndocrineParams(NamedTuple):
    """Population constants of the endogenous trajectories (forms in exposure/endogenous.py)."""

    E2_pre: float = 100.0  # pg/mL, cycle-averaged premenopausal estradiol
    width: float = 0.8  # years, logistic scale of the menopause transition around the FMP
    t_decline: float = 0.01  # 1/yr, testosterone decline with age (Harman 2001 JCEM 86:724)
    hypogonadal_factor: float = 0.35  # -, T of a hypogonadal man relative to his trajectory
    hypogonadal_width: float = 1.0  # years, logistic scale of the onset of hypogonadism


class FractureParams(NamedTuple):
    """Fracture and mortality constants (sources in outcomes/hazards.py). Per-fracture-site
    tuples are in the order hip, clinical vertebral, forearm, humerus
    (``outcomes.hazards.FractureSite``)."""

    hip_gr: tuple = (3.68, 3.07, 2.78, 2.28, 1.70)  # per SD at ages 50, 60, 70, 80, 90
    other_gr_65: float = 1.40
    other_gr_slope: float = 0.005  # 1/yr, log scale
    # Clinical vertebral fractures per SD of lumbar-spine BMD: RR 2.3 (1.9-2.8), Marshall 1996
    # BMJ 312:1254 (pooled over ages).
    vertebral_gr: float = 2.3
    # Turnover exponent per fracture site (calibration parameters; fitted by path
    # ``fracture.gamma.<site>``, e.g. ``fracture.gamma.vertebral``).
    gamma: tuple = (0.3, 0.3, 0.3, 0.3)
    prior_rr: float = 1.86
    hip_death_rr_first: tuple = (2.94, 3.86)  # women, men; year after a hip fracture
    hip_death_rr_later: tuple = (1.5, 1.8)


class AgentParams(NamedTuple):
    """Agent constants fitted to trials, overriding the pharmacology table of
    ``exposure/agents.py`` (whose values and sources are the priors' centres).

    exposure: "agent.route" -> multiplier on that route's exposure per dose (estradiol-
      equivalent, testosterone, aromatase inhibition, IGF-1); 1 = the table's slope.
    efficacy: SERM agent name -> its bone efficacy eps_S in (0, 1) (used by every route that
      carries that SERM, e.g. bazedoxifene in CE/bazedoxifene).
    occupancy: SERM agent name -> multiplier on its receptor occupancy S/K_S per dose (every
      route that carries that SERM); 1 = the table's.
    Keys not listed keep the table's values.
    """

    exposure: dict | None = None
    efficacy: dict | None = None
    occupancy: dict | None = None


class ModelParams(NamedTuple):
    """All model constants as one pytree (``sites`` stacked on a leading site axis, in
    ``Site`` order), the fracture-risk constants included (their turnover exponent is fitted
    with the rest)."""

    core: CoreParams
    hormones: HormoneParams
    endocrine: EndocrineParams
    sites: SiteParams
    fracture: FractureParams = FractureParams()
    agents: AgentParams = AgentParams()


def hand_set_model() -> ModelParams:
    """The constants as set by hand in this module (the start of a fit). The model commands
    use applies the shipped calibration on top (``fit.parameters.default_model``)."""
    return ModelParams(CoreParams(), HormoneParams(), EndocrineParams(), default_sites())


# Every patient starts at peak bone mass, at the Pivonka steady state with her or his own
# untreated hormones, at this age (years): the young-adult reference of NHANES III (ages
# 20-29) and of the WHO T-score (Looker 1998 Osteoporos Int 8:468).
PEAK_BONE_AGE = 30.0


class BmdReference(NamedTuple):
    """Femoral-neck BMD of a young-adult reference group (g/cm2): T = (BMD - mean) / sd."""

    mean: float
    sd: float

    def tscore(self, bmd):
        """T-score of ``bmd`` (numpy or JAX arrays, or floats)."""
        return (bmd - self.mean) / self.sd


# NHANES III, non-Hispanic white adults aged 20-29, femoral neck (Looker 1998 Osteoporos Int
# 8:468, Table 2). The women's values are the WHO / FRAX T-score reference for both sexes
# (Kanis 2008 Bone 42:467), the unit in which gradients of fracture risk are expressed.
NHANES_WOMEN = BmdReference(0.858, 0.120)
NHANES_MEN = BmdReference(0.934, 0.137)
