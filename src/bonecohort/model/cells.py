"""Pivonka 2008 bone-cell population core for one patient (pure JAX).

States (pM): OBp osteoblast precursors, OBa active osteoblasts, OCa active osteoclasts.
Ligands are algebraic (quasi-steady) as in Pivonka et al. 2008, Bone 43:249, eqs. (1)-(12),
with RANKL expressed on OBp and OPG on OBa (the paper's preferred structure):

    TGFb   = (alpha k_res OCa + P_TGFb,d) / D_TGFb
    PTH    = (beta_PTH + P_PTH,d) / D_PTH
    P_OPG  = beta_OPG OBa pi_rep,PTH
    OPG    = (P_OPG + P_OPG,d) OPG_max / (P_OPG + D_OPG OPG_max)
    RANKL_eff = R_RANKL OBp pi_act,PTH
    RANKL  = RANKL_eff / (1 + K_A1 OPG + K_A2 RANK)
             * (beta_RANKL + P_RANKL,d) / (beta_RANKL + D_RANKL RANKL_eff)
    dOBp/dt = D_OBu pi_act,OBu - D_OBp OBp pi_rep,OBp
    dOBa/dt = D_OBp OBp pi_rep,OBp - A_OBa OBa
    dOCa/dt = D_OCp pi_act,OCp - A_OCa OCa pi_act,OCa

Hormones, drugs and the mechanostat act only through a ``CellAction`` of multipliers; all ones
leaves the equations exactly as published.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from bonecohort.model.params import CellAction, CoreParams, Dosing


class Ligands(NamedTuple):
    """Quasi-steady ligand concentrations (pM)."""

    TGFb: jnp.ndarray
    PTH: jnp.ndarray
    OPG: jnp.ndarray
    RANKL: jnp.ndarray


def ligands(cells, p: CoreParams, dosing: Dosing, action: CellAction) -> Ligands:
    """Ligand concentrations for cell concentrations ``cells = (OBp, OBa, OCa)`` in pM."""
    OBp, OBa, OCa = cells
    TGFb = (p.alpha * p.k_res * OCa + dosing.TGFb) / p.D_TGFb
    PTH = (p.beta_PTH + dosing.PTH) / p.D_PTH
    pi_act_pth = PTH / (PTH + p.K_D4)
    pi_rep_pth = p.K_D6 / (PTH + p.K_D6)
    P_OPG = action.opg * p.beta_OPG * OBa * pi_rep_pth
    OPG = (P_OPG + dosing.OPG) * p.OPG_max / (P_OPG + p.D_OPG * p.OPG_max)
    RANKL_eff = action.rankl * p.R_RANKL * OBp * pi_act_pth
    RANKL = (
        RANKL_eff
        / (1.0 + p.K_A1 * OPG + p.K_A2 * p.RANK)
        * (p.beta_RANKL + dosing.RANKL)
        / (p.beta_RANKL + p.D_RANKL * RANKL_eff)
    )
    return Ligands(TGFb, PTH, OPG, RANKL)


def cell_rates(cells, p: CoreParams, dosing: Dosing, action: CellAction):
    """Time derivatives (pM/day) of ``(OBp, OBa, OCa)``; returns a tuple of three arrays."""
    OBp, OBa, OCa = cells
    lig = ligands(cells, p, dosing, action)
    pi_act_obu = lig.TGFb / (lig.TGFb + p.K_D1)
    pi_rep_obp = p.K_D2 / (lig.TGFb + p.K_D2)
    pi_act_oca = lig.TGFb / (lig.TGFb + p.K_D3)
    rankl_rank = p.K_A2 * lig.RANKL * p.RANK
    pi_act_ocp = rankl_rank / (p.K_D8 + rankl_rank)
    commit = action.obu_differentiation * p.D_OBu * pi_act_obu
    mature = action.obp_differentiation * p.D_OBp * OBp * pi_rep_obp
    dOBp = commit - mature
    dOBa = mature - action.ob_apoptosis * p.A_OBa * OBa
    dOCa = p.D_OCp * pi_act_ocp - action.oc_apoptosis * p.A_OCa * OCa * pi_act_oca
    return dOBp, dOBa, dOCa


def steady_state(p: CoreParams, dosing: Dosing = Dosing(), action: CellAction = CellAction(),
                 guess=(6.196e-4, 5.584e-4, 8.070e-4), iterations: int = 40):
    """Steady state ``(OBp*, OBa*, OCa*)`` in pM by Newton's method on ``cell_rates``.

    Pure and differentiable; run it in float64 for a 1e-12 residual. The default guess is the
    published Pivonka 2008 steady state (6.1964e-4, 5.5839e-4, 8.0696e-4 pM).
    """
    import jax

    x = jnp.asarray(guess, dtype=jnp.result_type(float))

    def residual(y):
        return jnp.stack(cell_rates(tuple(y), p, dosing, action))

    def newton(_, y):
        return y - jnp.linalg.solve(jax.jacfwd(residual)(y), residual(y))

    return tuple(jax.lax.fori_loop(0, iterations, newton, x))
