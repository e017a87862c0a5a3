"""Shared set-up. The test process enables JAX's 64-bit types for the reference computations
(the package itself leaves the setting alone; its runs enable it where they need it).

Compiled programs are kept in a persistent JAX compilation cache under .pytest_cache, shared
by the test workers and the command-line subprocesses that some tests start (the same chunk
programs are compiled in many processes otherwise), and so is the fracture reference
population. Set before jax is first used."""

import os
from pathlib import Path

CACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "2")
# the fracture reference population, likewise shared (fracture_reference._disk_path)
os.environ.setdefault("BONECOHORT_CACHE", str(CACHE.parent / "bonecohort"))

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

jax.config.update("jax_enable_x64", True)
