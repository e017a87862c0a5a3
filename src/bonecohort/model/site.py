"""One skeletal site: the Pivonka core in normalized form plus bone volume (pure JAX).

State ``y = (OBp/OBp*, OBa/OBa*, OCa/OCa*, BV/BV_ref)``, all dimensionless and 1 at the
reference steady state, so that float32 keeps its precision on the small changes that matter
(integrate changes, not absolute levels).

Bone volume (Pivonka 2008 eq. 13, deviation form of the CellML export, balanced at the
patient's reference steady state, k_form OBa* = k_res OCa*):

    d(BV/BV_ref)/dt = turnover/365.25 * (OBa/OBa* - OCa/OCa*)            [1/day]

where ``turnover`` is the site's yearly resorbed fraction at steady state.

Mechanostat (bone-volume feedback): osteoblast-precursor commitment D_OBu x (BV_ref/BV)^m.
Loss raises the strain energy density under unchanged habitual loads; Scheiner 2013 (CMAME
254:181) let overload drive osteoblast-precursor proliferation, and Martinez-Reina 2019 make the
stimulus depend on BV. We keep the form minimal, a power law of BV with a calibrated exponent
m = ``mech_gain``. In the Pivonka structure the imbalance k_form OBa - k_res OCa responds to D_OBu
about one-to-one in log terms and only weakly to RANKL (RANKL also drives the coupled
formation), so D_OBu is where a formation-side feedback can bite. The result is that
estrogen-deficiency loss decelerates with time constant ~ 1/(turnover m) (Sowers 2010 JCEM:
-3.3 %/yr in the 2 years after the final menstrual period, -1.1 %/yr in years 2-7).

BMD read-out: BMD_site(t) = BMD_site(t_ref) * BV(t)/BV_ref (no separate mineralization state;
its lag would add a slow component, left for a later calibration).
"""

from __future__ import annotations

import jax.numpy as jnp

from bonecohort.model.cells import cell_rates
from bonecohort.model.params import CellAction, CoreParams, Dosing, SiteParams

DAYS_PER_YEAR = 365.25


def site_rates(y, core: CoreParams, ss, site: SiteParams, action: CellAction,
               dosing: Dosing = Dosing(), turnover_scale=1.0, log_set_point=0.0):
    """dy/dt (1/day) for normalized state ``y`` (shape (4,)) of one site.

    ``ss`` is the Pivonka steady state (OBp*, OBa*, OCa*) in pM; ``action`` carries hormone and
    drug multipliers (the mechanostat factor (BV/BV_set)^-m is applied here on top of them;
    ``log_set_point`` = log BV_set, 0 at the reference, negative with age-related loss).
    """
    x_obp, x_oba, x_oca, bv = y[0], y[1], y[2], y[3]
    mech = jnp.exp(-site.mech_gain * (jnp.log(bv) - log_set_point))
    act = action._replace(obu_differentiation=action.obu_differentiation * mech)
    cells = (x_obp * ss[0], x_oba * ss[1], x_oca * ss[2])
    d_obp, d_oba, d_oca = cell_rates(cells, core, dosing, act)
    d_bv = turnover_scale * site.turnover / DAYS_PER_YEAR * (x_oba - x_oca)
    return jnp.stack([d_obp / ss[0], d_oba / ss[1], d_oca / ss[2], d_bv])
