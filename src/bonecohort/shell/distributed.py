"""A run over several processes or machines (``jax.distributed``): each process simulates its
own chunks into the shared OUT (``run_distributed_process``); ``summarize_run`` checks that
every patient is there and writes the summaries, manifest and report. The output rules are
runner.py's (lock shared by the processes of one run, identity in ``run.json`` and in every
part, I/O failures exit 4).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax

from bonecohort.cohort import with_x64
from bonecohort.config import ConfigError, Study
from bonecohort.io import (
    Refused,
    RunDir,
    check_parts,
    claim_shared,
    io_failures,
    owned,
    read_journal,
)
from bonecohort.fit.parameters import default_model
from bonecohort.shell.draws import (
    SHIPPED_SOURCE,
    collect_draws,
    draw_record,
    missing_draws,
    posterior_of,
    simulate_draws,
)
from bonecohort.shell.runner import (
    RESUME_KEYS,
    local_devices,
    run_identity,
    simulate_study,
    write_summaries,
)

# how to continue once the cause of a RunIOError is fixed
RERUN_DISTRIBUTED = "rerun the same command (it continues from the last finished chunk)"
RERUN_SUMMARIZE = ("rerun the processes' `run --distributed` command (finished chunks are "
                   "kept), then `bonecohort summarize` again")


def _initialize_distributed(coordinator, num_processes, process_id) -> tuple[int, int]:
    try:
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=num_processes, process_id=process_id)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"--distributed: jax.distributed.initialize failed ({exc}); give "
                          "--coordinator, --num-processes and --process-id, or run under "
                          "SLURM or Open MPI.") from None
    return jax.process_index(), jax.process_count()


@with_x64
def run_distributed_process(study: Study, out: Path, log=lambda msg: None, progress=None,
                            devices: int | None = None, coordinator: str | None = None,
                            num_processes: int | None = None, process_id: int | None = None,
                            parameter_draws: tuple | None = None):
    """One process of a run over several processes (``jax.distributed``): it simulates its
    own chunks and writes their parts and its journal straight into ``out``, which all
    processes share (a shared file system across machines; they hold its lock shared).
    Summaries are made afterwards by ``summarize_run(out)``. Rerunning the same command
    resumes: finished chunks are kept. ``parameter_draws = (posterior, K, source)``: the
    process then simulates its share of the K draws of the constants (draws.py)."""
    if not study.eligibility.is_open:
        raise ConfigError(f"{study.path}: [eligibility]: a distributed run needs a study "
                          "without eligibility criteria (each process must know its patient "
                          "range in advance); run this study on one machine (--devices uses "
                          "all of its devices).")
    with owned(out, shared=True):
        index, processes = _initialize_distributed(coordinator, num_processes, process_id)
        k = parameter_draws[1] if parameter_draws else 0
        claim_shared(out, {**run_identity(study), "processes": processes,
                           "devices_per_process": len(local_devices(devices)),
                           **({"parameter_draws": k} if k else {})}, study.config_text)
        log(f"process {index} of {processes}, devices {local_devices(devices)}")
        with io_failures(out, RERUN_DISTRIBUTED):
            screened = simulate_study(study, out, log=log, progress=progress,
                                      devices=devices, process=(index, processes))
            if k:
                post = parameter_draws[0] or posterior_of()
                simulate_draws(study, out, post.models(default_model(), study.seed, k),
                               lambda s, w, m, j: simulate_study(s, w, model=m, devices=devices,
                                                         input_draw=j),
                               log, (index, processes))
    return index, processes, screened


def _unfinished(run: RunDir, patients: int) -> list[int]:
    """First patient id of each stretch of ``range(patients)`` that no journal of the
    processes of a distributed run covers."""
    done = {}
    for path in run.journals():
        done.update({c["start"]: c for c in read_journal(path, run.patients)})
    covered, gaps = 0, []
    for start in sorted(done):
        if start > covered:
            gaps.append(covered)
        covered = max(covered, start + done[start]["simulated"])
    if covered < patients:
        gaps.append(covered)
    return gaps


def _distributed_study(run: RunDir) -> tuple[Study, dict]:
    """The study of a distributed run directory (its ``study.toml`` with the overrides in
    ``run.json``) and its identity."""
    from bonecohort.config import load_study

    try:
        identity = json.loads(run.run_json.read_text())
        study = load_study(run.study_toml).with_overrides(
            identity["patients"], identity["seed"], identity["chunk_size"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{run.root}: not the directory of a distributed run ({exc}).") \
            from None
    return study, identity


def summarize_run(run_dir: Path, log=lambda msg: None) -> tuple[Study, dict]:
    """Summaries, manifest and report of a distributed run once every process has finished
    (reads the partitioned dataset ``run_dir/patients/*.parquet``, refusing parts of another
    run). Holds the directory's lock exclusively: refused while a process still runs."""
    run = RunDir(run_dir)
    study, identity = _distributed_study(run)
    with owned(run_dir), io_failures(run_dir, RERUN_SUMMARIZE):
        check_parts(run.parts(), {k: identity.get(k) for k in RESUME_KEYS},
                    f"remove it from {run.patients} (or summarize the run it belongs to).")
        gaps = _unfinished(run, study.patients)
        if gaps:
            raise Refused(f"{run_dir}: {len(gaps)} stretch(es) of patients are not finished, "
                          f"the first from patient id {gaps[0]:,} (of {study.patients:,}); "
                          "wait for every process, or rerun the missing processes with the "
                          "same command.")
        t0 = time.perf_counter()
        return study, write_summaries(study, run_dir, study.patients, t0, log,
                                      _collected_draws(run_dir, study, identity))


def _collected_draws(run_dir: Path, study: Study, identity: dict):
    """The per-draw tables and manifest record of a distributed run's parameter draws (None
    if it has none); refused while a draw is missing."""
    k = identity.get("parameter_draws", 0)
    if not k:
        return None
    missing = missing_draws(run_dir, k)
    if missing:
        raise Refused(f"{run_dir}: parameter draw(s) {', '.join(map(str, missing))} of {k} "
                      "are not finished; rerun the processes' command (finished draws are "
                      "kept).")
    record = draw_record(posterior_of(), study.seed, k, SHIPPED_SOURCE)
    return (*collect_draws(run_dir, k), record)
