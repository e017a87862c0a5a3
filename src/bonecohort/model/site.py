"""One skeletal site: the Pivonka core in normalized form, bone volume, the remodeling space,
mineralization and an adaptive mechanostat set point (pure JAX).

State ``y`` (``STATE``), all dimensionless and at ``steady_state_vector`` at peak bone mass:

    OBp/OBp*, OBa/OBa*, OCa/OCa*   Pivonka 2008 cells relative to their steady state
    BV/BV_ref                      bone volume (matrix, mineralized or not)
    F                              refilling (formation) drive of the remodeling units
    mu = m/m*                      mean mineral content relative to its reference steady state
    s                              log-offset of the mechanostat set point (0 at the start)

BMD read-out (``bmd``): BMD/BMD_ref = BV/BV_ref x mu (areal density = matrix volume times its
mean degree of mineralization; Boivin & Meunier 2002 Calcif Tissue Int 70:503).

Bone volume (Pivonka 2008 eq. 13 in deviation form, balanced at the reference, with
refilling lagging resorption):

    d(BV/BV_ref)/dt = T (F - OCa/OCa*),    dF/dt = (OBa/OBa* - F) / tau_F

T = ``turnover`` (yearly resorbed fraction at steady state). **Remodeling space** (Heaney 1994
J Bone Miner Res 9:1515; Parfitt 1980): a cavity is refilled only after the reversal and
formation periods (~9 and ~145 days in iliac trabecular bone, Eriksen 1994 Endocr Rev 15:275),
so when activation rises the space of open cavities grows by about T tau_F (OCa/OCa* - 1) of
the bone volume before formation catches up - fast, reversible loss at the menopause and fast
early gain on antiresorptives, with the slow balance change afterwards. tau_F = ``formation_lag``
(years; hand-set 0.25, the reversal period plus half the formation period; fitted).

**Secondary mineralization** (Hernandez, Beaupre & Carter 2000 J Rehabil Res Dev 37:235;
Boivin & Meunier 2002): new matrix mineralizes to a primary fraction p0 ~ 0.7 of its final
content within days, then slowly approaches full mineralization at rate k_s. With formation
flux f = T F and resorption removing bone of mean mineral content m (per reference volume),

    d(m BV)/dt = f p0 - T OCa m + k_s (1 - m) BV  =>  dm/dt = (f/BV)(p0 - m) + k_s (1 - m),

m* = (T p0 + k_s)/(T + k_s) at the reference; the state is mu = m/m*. High turnover lowers the
mean mineral content (young bone), low turnover raises it over 1/(T + k_s) years: BMD lags
bone volume, gains on antiresorptives continue and persist for a while after stopping.
p0 = ``primary_mineral``, k_s = ``secondary_rate`` (1/yr; fitted).

**Mechanostat with an adaptive set point**: osteoblast-precursor commitment D_OBu x
(BV_set/BV)^m with log BV_set = -age_loss (age - 30) + s (Scheiner 2013 CMAME 254:181;
Martinez-Reina 2019 let the stimulus depend on BV). The set point follows the skeleton's own
history, ds/dt = k_a (log BV - log BV_set), the adaptation of the mechanostat's set point to
habitual strain (Frost 1987 Bone Miner 2:73; Turner 1999 Bone 24:399, "cellular
accommodation"): a skeleton that gained bone on treatment defends part of it after stopping
and one that lost bone regains it more slowly than the hormones alone would say. Two to three
years of MHT left spine BMD 3.7-4.7 % above placebo 15 years later (Bagger 2004 Bone
34:728). k_a = ``set_point_rate`` (1/yr; fitted). At peak bone mass every state is at rest:
the Pivonka steady state is exact (tests/test_physiology.py).
"""

from __future__ import annotations

import jax.numpy as jnp

from bonecohort.model.cells import cell_rates
from bonecohort.model.params import CellAction, CoreParams, Dosing, SiteParams

DAYS_PER_YEAR = 365.25
# The order matters to the solver: each step eliminates its linear system without pivoting
# from the last state to the first, the slow scalar states before the cells (stable in that
# order only: solve/elimination.py, tests/test_elimination.py).
STATE = ("obp", "oba", "oca", "bv", "formation", "mineral", "set_point")
BV, OCA, MINERAL = STATE.index("bv"), STATE.index("oca"), STATE.index("mineral")
# The states each rate of ``site_rates`` reads, in ``STATE`` order. With the diagonal (always
# nonzero in the step's iteration matrix) they are the structural nonzeros of its Jacobian,
# whose other entries the step's elimination skips (solve/elimination.py).
# tests/test_elimination.py checks that this is exactly where the Jacobian is ever nonzero.
READS = (
    ("obp", "oca", "bv", "set_point"),  # OBp: commitment (TGF-beta from resorption, x the
    #   mechanostat's (BV_set/BV)^m) minus maturation (OBp, repressed by TGF-beta)
    ("obp", "oba", "oca"),  # OBa: maturation minus apoptosis
    ("obp", "oba", "oca"),  # OCa: RANKL/OPG of the osteoblasts; TGF-beta-driven apoptosis
    ("oca", "formation"),  # BV: T (F - OCa)
    ("oba", "formation"),  # F: (OBa - F) / tau_F
    ("bv", "formation", "mineral"),  # mu: (T F / BV)(p0/m* - mu) + k_s (1/m* - mu); it feeds
    #   back into no other state
    ("bv", "set_point"),  # s: k_a (log BV - log BV_set)
)
JACOBIAN_PATTERN = tuple(tuple(name in reads or name == own for name in STATE)
                         for own, reads in zip(STATE, READS))


def steady_state_vector(dtype, leading=()):
    """The state at peak bone mass (shape ``leading + (len(STATE),)``)."""
    y = jnp.asarray([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0], dtype)
    return jnp.broadcast_to(y, tuple(leading) + y.shape)


def bmd(y):
    """BMD relative to the reference: bone volume times relative mineral content."""
    return y[..., BV] * y[..., MINERAL]


def reference_mineral(site: SiteParams):
    """m* = (T p0 + k_s) / (T + k_s): mean mineral content (fraction of full) at steady state."""
    t, ks = site.turnover, site.secondary_rate
    return (t * site.primary_mineral + ks) / (t + ks)


def site_rates(y, core: CoreParams, ss, site: SiteParams, action: CellAction,
               dosing: Dosing = Dosing(), log_set_point=0.0):
    """dy/dt (1/day) for the normalized state ``y`` (``STATE``) of one site.

    ``ss`` is the Pivonka steady state (OBp*, OBa*, OCa*) in pM; ``action`` carries hormone and
    drug multipliers (the mechanostat factor (BV/BV_set)^-m is applied here on top of them);
    ``log_set_point`` = the age-related part of log BV_set (0 at the reference, negative with
    age-related loss); the adaptive part is the state ``s``.
    """
    x_obp, x_oba, x_oca, bv, form, mu, s = (y[i] for i in range(len(STATE)))
    gap = jnp.log(bv) - log_set_point - s
    mech = jnp.exp(-site.mech_gain * gap)
    act = action._replace(obu_differentiation=action.obu_differentiation * mech)
    cells = (x_obp * ss[0], x_oba * ss[1], x_oca * ss[2])
    d_obp, d_oba, d_oca = cell_rates(cells, core, dosing, act)
    t = site.turnover / DAYS_PER_YEAR
    ks = site.secondary_rate / DAYS_PER_YEAR
    m_star = reference_mineral(site)
    d_bv = t * (form - x_oca)
    d_form = (x_oba - form) / (site.formation_lag * DAYS_PER_YEAR)
    d_mu = t * form / bv * (site.primary_mineral / m_star - mu) + ks * (1.0 / m_star - mu)
    d_s = site.set_point_rate / DAYS_PER_YEAR * gap
    return jnp.stack([d_obp / ss[0], d_oba / ss[1], d_oca / ss[2], d_bv, d_form, d_mu, d_s])
