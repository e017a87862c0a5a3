"""Compare finished runs that share their population and seed (imperative shell)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from bonecohort.config import ConfigError, parse_study


class CompareError(Exception):
    """Runs that cannot be compared; the message says why."""


def _load(run: Path):
    try:
        manifest = json.loads((run / "manifest.json").read_text())
        study = parse_study(manifest["config"], manifest.get("config_path", str(run)))
        outcomes = pl.read_parquet(run / "outcomes.parquet")
    except (OSError, ValueError, KeyError, ConfigError) as exc:
        raise CompareError(f"{run}: not a finished run directory ({exc}).") from None
    # a run made with --patients/--seed overrides records the values it used
    return manifest["seed"], manifest["patients"], study, outcomes


def compare_runs(runs) -> pl.DataFrame:
    """Overall outcomes of every arm of every run, one row each (run, arm, ...)."""
    loaded = [(Path(r), *_load(Path(r))) for r in runs]
    first_run, seed0, n0, study0, _ = loaded[0]
    for run, seed, n, study, _ in loaded[1:]:
        differences = [what for what, a, b in (
            ("seed", seed0, seed), ("patients", n0, n),
            ("population", study0.population, study.population),
            ("eligibility", study0.eligibility, study.eligibility)) if a != b]
        if differences:
            raise CompareError(
                f"{run} and {first_run} differ in {', '.join(differences)}; only runs of the "
                "same population, eligibility, patients and seed are compared (their patients "
                "and random numbers are then the same).")
    frames = []
    for run, _, _, study, outcomes in loaded:
        frames.append(outcomes.filter(pl.col("subgroup") == "all").select(
            pl.lit(str(run)).alias("run"), "arm", "patients",
            pl.col("hip_by_age").alias(f"hip/1000 by {study.outcomes.by_age:g}"),
            pl.col("mof_by_age").alias(f"MOF/1000 by {study.outcomes.by_age:g}"),
            "hip_rr", "mof_rr", "hip_nnt", "mof_nnt", "deaths_horizon", "life_years",
            pl.lit(study.reference_arm).alias("reference_arm")))
    try:
        return pl.concat(frames, how="vertical")
    except pl.exceptions.SchemaError:
        raise CompareError("the runs report fractures by different ages ([outcomes] by_age); "
                           "compare runs with the same by_age.") from None
