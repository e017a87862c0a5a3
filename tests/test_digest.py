"""Per-patient results change only when the model is meant to change.

A small fixed study of women (two arms, probabilities from an age, eligibility open); the
digest below is of its per-patient table (every column's name,
type and exact values, rows in (arm, patient) order). Floating-point results depend on the
JAX/XLA version and on the CPU's vector instructions, so the comparison is made where those
match the recorded ones, and skipped with the reason elsewhere.

History: recorded before the restructure into layers (which left it unchanged); re-recorded
when bone gained its memory (remodeling space, mineralization, adaptive set point), fractures
followed their own site and the constants were refitted (a deliberate change of every number);
re-recorded when the model's constants became arguments of the compiled chunk program instead
of constants folded into it (one compilation serves every parameter draw): float32 values moved
by at most 4e-6 of each column's scale (a few units in the last place), every event count and
integer column unchanged. When harms, QALYs and costs were added: with `[outcomes] harms =
false` the 65 columns of before are bitwise unchanged (the first test below keeps that
promise); with harms (the default) the deaths change by design (harm deaths replace part of
the life table's), recorded in the second digest. Both re-recorded when studies moved from
fixed monthly RODAS3 steps to error-controlled RODAS4 steps (rtol 1e-4; the fracture reference
cohort too): every event column unchanged in all 3,000 rows, BMD changes up to 0.20
percentage points (the spine of one woman 2 years after estradiol stopped, where the monthly
step was 2.0e-3 from Radau and the controlled one is 3.5e-5), end T-scores by at most 0.0014.
Both re-recorded when the constants were refitted to 22 trials (65 fitted targets, by
Levenberg-Marquardt, with transdermal estradiol's exposure among them): a deliberate change of
every number. Both re-recorded when bazedoxifene's occupancy joined the fitted constants (the
refit moves every constant; the study has no bazedoxifene arm). Both re-recorded when
transdermal estradiol's exposure per ug/day was re-centred on its PK readings at 14 and
50 ug/day (0.8 -> 0.6 pg/mL, prior log SD 0.5) and the constants refitted: this study's arm is
a 50 ug/day patch. Both re-recorded when a trial of 50 and 100 ug/day patches (Arrenbrecht
2002) joined the targets and the constants were refitted. Both re-recorded when the femoral
neck's SERM odds ratio joined the fitted constants (the refit moves every constant; the study
has no SERM arm), on a machine with other vector flags (the toolchain below). Both
re-recorded when controlled steps stopped landing on the read-outs (RODAS4's continuous
extension reads them inside the step) and restarted from 4 days after each switch: every event
and integer column unchanged in all 3,000 rows, BMD changes up to 0.05 percentage points,
entry T-scores by at most 0.003 (both runs ~2e-4 from Radau: tests/test_integrator.py).
Both re-recorded when a patient's arms ran one after the other instead of side by side
(the arms' loops compile differently, so accept/reject decisions moved in the last bit):
events unchanged, BMD changes up to 0.006 percentage points. Both re-recorded when the
natural history joined the arms' scan (one compiled loop for all segments): events unchanged,
entry BMD changes up to 2.4e-4, BMD changes up to 0.03 percentage points (controlled steps
follow the compiled arithmetic's last bits in their accept/reject decisions, so a change of
program moves results within the tolerance). Both re-recorded when the segments of a life
course became one loop that moves each patient on to her next segment as soon as she finishes
one (``integrate_segments``): every BMD, event and integer column bitwise unchanged; the four
expected-fracture columns (exp_hip_horizon, exp_mof_horizon, exp_p10_hip, exp_p10_mof) moved
by at most 8e-8 (the outcome program's fusions changed around them). The first re-recorded
when every chunk came to be computed in blocks of one fixed shape (cohort.py): of the 96
columns only life_years_disc and ref_life_years_disc moved, in 20 of 3,000 rows by at most
5e-7 years (a sum over years, which XLA reduces differently for another batch shape); the
65 columns without harms bitwise unchanged. Both re-recorded when
the step's linear systems moved from a pivoted elimination on whole rows to an elimination
entry by entry from the last state to the first (``solve/elimination.py``): every event
column unchanged in all 3,000 rows, BMD changes up to 0.027 percentage points, entry BMD by
at most 2.4e-4 g/cm2 (T-scores 0.002), expected fractures by at most 8.3e-6 (controlled steps
follow the last bits in their accept/reject decisions). Both re-recorded when the elimination
came to skip the iteration matrix's structural zeros (``model.site.JACOBIAN_PATTERN``): the
same arithmetic op by op, but XLA contracts multiply-adds differently in the smaller program;
every event column unchanged, BMD changes up to 0.013 percentage points, entry BMD by at most
1.2e-5 g/cm2 (T-scores 1e-4), expected fractures by at most 3e-6.
"""

import hashlib
import platform
from pathlib import Path

import jax
import jaxlib
import polars as pl
import pytest
from click.testing import CliRunner

from bonecohort.shell.cli import main

STUDY = """
[study]
name = "digest"
patients = 1500
seed = 11
horizon_years = 12
chunk_size = 500

[population]
age_min = 48
age_max = 58
uterus_intact_fraction = 0

[outcomes]
probability_ages = [60]

[[arms]]
name = "no treatment"

[[arms]]
name = "estradiol"
  [[arms.regimens]]
  agent = "estradiol"
  route = "transdermal"
  dose = 50
  dose_unit = "ug/day"
  start = "fmp"
  duration_years = 5
"""

RECORDED = {
    "sha256": "c03ac43803164e65b52914983d923a72007729c15327d390735c457618843a1a",
    "shape": (3000, 96),
    "without_harms": "299c3f604c63fe1cd326f3a068b3d0392d731101b44cad52bf759487b1ba7910",
    "columns_without_harms": 65,
    "toolchain": ("0.10.2", "0.10.2", "x86_64",
                  "avx avx2 avx512_bf16 avx512_bitalg avx512_vbmi2 avx512_vnni "
                  "avx512_vp2intersect avx512_vpopcntdq avx512bw avx512cd avx512dq avx512f "
                  "avx512ifma avx512vbmi avx512vl avx_vnni fma"),
}


def toolchain():
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        line = next((x for x in cpuinfo.read_text().splitlines() if x.startswith("flags")), "")
        flags = " ".join(sorted(f for f in line.split() if f.startswith(("avx", "fma"))))
    return (jax.__version__, jaxlib.__version__, platform.machine(), flags)


def digest(frame: pl.DataFrame) -> str:
    h = hashlib.sha256()
    for name in frame.columns:
        s = frame[name]
        h.update(name.encode())
        h.update(str(s.dtype).encode())
        h.update(repr(s.to_list()).encode())
    return h.hexdigest()


def _run(tmp_path, text) -> pl.DataFrame:
    if toolchain() != RECORDED["toolchain"]:
        pytest.skip(f"digest recorded with jax, jaxlib, machine, vector flags = "
                    f"{RECORDED['toolchain']}; here {toolchain()}")
    cfg = tmp_path / "digest.toml"
    cfg.write_text(text)
    res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    return pl.read_parquet(tmp_path / "out" / "patients" / "*.parquet").sort("arm",
                                                                              "patient_id")


def test_women_study_matches_the_recorded_digest(tmp_path):
    frame = _run(tmp_path, STUDY)
    assert frame.shape == RECORDED["shape"]
    assert digest(frame) == RECORDED["sha256"]


def test_without_harms_the_fracture_results_are_unchanged(tmp_path):
    """The harm layer switched off leaves every column of the fracture-only model bitwise as
    it was recorded before harms existed (economics columns aside, which are new)."""
    frame = _run(tmp_path, STUDY.replace("probability_ages = [60]",
                                         "probability_ages = [60]\nharms = false"))
    assert not any(c.endswith("_year") and c.split("_")[0] in ("invasive", "dvt", "pe")
                   for c in frame.columns)
    old = [c for c in frame.columns if c not in ("life_years_disc", "qalys", "costs")
           and not (c.startswith("ref_") and c not in ("ref_hip_any", "ref_mof_any"))]
    assert len(old) == RECORDED["columns_without_harms"]
    assert digest(frame.select(old)) == RECORDED["without_harms"]
