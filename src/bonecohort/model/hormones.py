"""Estrogen-receptor activity and its action on bone cells (pure JAX, one patient).

Receptor occupancy (DESIGN.md section 4; Hill coefficient 1):

    a_ER = (E2/K_E) / (1 + E2/K_E)

Actions on the Pivonka core, each relative to the premenopausal reference a_ER(E2_ref) so
that a woman at E2_ref sits exactly at the Pivonka 2008 steady state:

    RANKL expression  x (1 + g rho_L (1 - a_ER)) / (1 + g rho_L (1 - a_ref))
        estrogen suppresses RANKL on marrow stromal / osteoblast-lineage cells
        (Eghbali-Fatourechi 2003 J Clin Invest 111:1221)
    OPG production    x (1 + g rho_O a_ER) / (1 + g rho_O a_ref)
        estrogen raises OPG (Hofbauer 1999 Endocrinology 140:4367)
    OC apoptosis      x (1 + g rho_A a_ER) / (1 + g rho_A a_ref)
        estrogen shortens osteoclast life span (Hughes 1996 Nat Med 2:1132)
    OB apoptosis      x (1 - g delta_E a_ER) / (1 - g delta_E a_ref)
        estrogen prolongs osteoblast survival (Kousteni 2001 Cell 104:719)

g is the site gain (``SiteParams.er_gain``). The magnitudes rho_L, rho_O, rho_A, delta_E, K_E
are calibration parameters (no paper gives them).
"""

from __future__ import annotations

from .params import CellAction, HormoneParams


def er_activity(e2, hp: HormoneParams):
    """Estrogen-receptor activity a_ER in [0, 1) for serum estradiol ``e2`` in pg/mL."""
    r = e2 / hp.K_E
    return r / (1.0 + r)


def estrogen_action(e2, hp: HormoneParams, gain=1.0, rankl_sensitivity=1.0) -> CellAction:
    """Cell-rate multipliers for serum estradiol ``e2`` (pg/mL); ones at ``hp.E2_ref``.

    ``rankl_sensitivity`` scales rho_L per patient (inter-individual variability).
    """
    a = er_activity(e2, hp)
    a_ref = er_activity(hp.E2_ref, hp)
    rho_L = gain * hp.rho_L * rankl_sensitivity
    return CellAction(
        rankl=(1.0 + rho_L * (1.0 - a)) / (1.0 + rho_L * (1.0 - a_ref)),
        opg=(1.0 + gain * hp.rho_O * a) / (1.0 + gain * hp.rho_O * a_ref),
        oc_apoptosis=(1.0 + gain * hp.rho_A * a) / (1.0 + gain * hp.rho_A * a_ref),
        ob_apoptosis=(1.0 - gain * hp.delta_E * a) / (1.0 - gain * hp.delta_E * a_ref),
    )
