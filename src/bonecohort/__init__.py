"""bonecohort: population cohort simulator of bone loss and fracture risk under hormonal protocols.

64-bit types are enabled so that float64 runs and reference computations are possible; every
array of a simulation is created with the study's explicit dtype (float32 by default).
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
