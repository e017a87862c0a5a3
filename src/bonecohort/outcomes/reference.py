"""The untreated reference population that normalizes fracture hazards (no I/O).

FRAX-style hazards multiply the population incidence by a relative risk that averages to one
over the population of that age and sex (hazards.py). We obtain that population from the
model itself: a fixed virtual cohort of women and men followed untreated from peak bone mass
through ages 50-110 (``REFERENCE``: seed 0, 2,000 per sex, float32). From it, per sex and
integer age:

* Tbar: mean T-score of each simulated site at mid-year (the femoral neck's and the spine's,
  hazards.site_tscores), the reference of each fracture site's driving site;
* c_s: mean of GR_s^(-z) (OC/OC*)^gamma (1 + (RR_prior - 1) P_prior), where P_prior, the
  probability of an earlier fracture, is carried forward year by year from age 50 with the
  normalized hazards themselves;
* the mean turnover factor (for FRAX-style probabilities of a patient at average turnover);
* the share with a prior fracture (fractures before a study's entry are not simulated; a
  patient enters with one with this probability).

``build_norm`` takes the simulated cohort as an argument (the caller simulates it with the
batch runner, and may cache the result: shell/reference_cache.py), so this module only
computes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bonecohort.model.params import PEAK_BONE_AGE, BmdReference, FractureParams, Site
from bonecohort.outcomes.hazards import Norm, mid_year, relative_hazards, site_tscores
from bonecohort.population import PopulationSpec
from bonecohort.solve.life_course import Grid


class ReferenceDesign(NamedTuple):
    seed: int = 0
    per_sex: int = 2000
    start_age: int = 50
    years: int = 60

    @property
    def spec(self) -> PopulationSpec:
        age = float(self.start_age)
        return PopulationSpec(age_min=age, age_max=age, male_fraction=0.5)

    @property
    def grid(self) -> Grid:
        return Grid(prefix_years=int(self.start_age - PEAK_BONE_AGE), horizon_years=self.years,
                    solver="rodas4", rtol=1e-4)


REFERENCE = ReferenceDesign()


def cohort_years(patients, life, tscore_ref: BmdReference):
    """Mid-year T-scores (n, years, sites) and turnover (n, years, sites) of the untreated arm
    of a simulated reference cohort (host arrays; ``hazards.site_tscores``, ``mid_year``)."""
    peak_t = tscore_ref.tscore(np.asarray(patients.peak_fn_bmd))
    entry = np.asarray(life.bmd_entry)  # (n, sites) relative to peak
    rel = entry[:, None, :] * np.moveaxis(np.asarray(life.bmd_rel)[:, 0], 1, 2)
    ref = (tscore_ref.mean, tscore_ref.sd)
    t = mid_year(site_tscores(peak_t, entry, ref, np), site_tscores(peak_t[:, None], rel, ref, np),
                 axis=1, xp=np)
    oc = mid_year(np.asarray(life.oc_entry), np.asarray(life.oc)[:, 0], axis=2, xp=np)
    return t, np.moveaxis(oc, 1, 2)


def build_norm(male, tscore, oc, incidence, fp: FractureParams,
               design: ReferenceDesign = REFERENCE) -> Norm:
    """Norms of a reference cohort: ``male`` (n,), mid-year ``tscore`` and ``oc`` (n, years,
    sites) from ``cohort_years``; ``incidence`` (4, 2, ages) per person-year."""
    max_age = incidence.shape[-1]
    rel_fn = jax.jit(jax.vmap(relative_hazards, in_axes=(None, 0, 0, None)))
    tbar = np.zeros((len(Site), 2, max_age))
    c = np.ones((4, 2, max_age))
    turnover_mean = np.ones((4, 2, max_age))
    prevalence = np.zeros((2, max_age))
    first, last = design.start_age, design.start_age + design.years - 1
    for sex in (0, 1):
        rows = male == sex
        t, o = tscore[rows], oc[rows]
        prior = np.zeros(t.shape[0])
        for k in range(design.years):
            age = first + k
            tbar[:, sex, age] = t[:, k].mean(axis=0)
            prevalence[sex, age] = prior.mean()
            z = t[:, k] - tbar[:, sex, age]
            rel = np.asarray(rel_fn(age + 0.5, z, o[:, k], fp), np.float64)  # (n, 4)
            weight = 1.0 + (fp.prior_rr - 1.0) * prior
            c[:, sex, age] = (rel * weight[:, None]).mean(axis=0)
            at_mean = np.asarray(rel_fn(age + 0.5, jnp.zeros_like(z), o[:, k], fp), np.float64)
            turnover_mean[:, sex, age] = at_mean.mean(axis=0)  # (OC/OC*)^gamma per site
            h = incidence[:, sex, age] * rel / c[:, sex, age]
            prior = prior + (1.0 - prior) * (1.0 - np.exp(-h.sum(axis=1)))
        tbar[:, sex, :first] = tbar[:, sex, first:first + 1]
        tbar[:, sex, last + 1:] = tbar[:, sex, last:last + 1]
        c[:, sex, last + 1:] = c[:, sex, last:last + 1]
        turnover_mean[:, sex, last + 1:] = turnover_mean[:, sex, last:last + 1]
        prevalence[sex, last + 1:] = prevalence[sex, last]
    return Norm(tbar=tbar, c=c, turnover_mean=turnover_mean, prior_prevalence=prevalence)
