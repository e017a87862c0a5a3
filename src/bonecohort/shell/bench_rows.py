"""Measurements shared by the benchmark's workloads: result rows, device and memory
information, timing after compilation (bench.py documents the workloads)."""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


@dataclass
class Row:
    workload: str
    solver: str
    dtype: str
    n: int
    wall_s: float
    patient_years_per_s: float
    max_rel_error: float | None = None
    peak_rss_bytes: int = 0
    device_peak_bytes: int | None = None
    settings: dict = field(default_factory=dict)


def device_info() -> dict:
    dev = jax.devices()[0]
    return {"platform": dev.platform, "device_kind": getattr(dev, "device_kind", str(dev)),
            "device_count": jax.device_count(), "jax": jax.__version__,
            "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "hostname": platform.node()}


def _memory() -> dict:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    stats = jax.devices()[0].memory_stats() or {}
    return {"peak_rss_bytes": int(rss), "device_peak_bytes": stats.get("peak_bytes_in_use")}


def _on_host():
    """Context for one-patient-at-a-time host solvers: their jitted right-hand sides run on
    the CPU, so an accelerator's dispatch latency is not charged to scipy."""
    return jax.default_device(jax.devices("cpu")[0])


def _timed(fn, *args, repeats: int = 3, long_s: float = 2.0):
    """Seconds of a call after a first (compiling) call, the fastest of up to ``repeats``
    calls (the shared machine's noise only ever adds time; calls longer than ``long_s`` are
    not repeated); returns (seconds, result)."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
        if best > long_s:
            break
    return best, out
