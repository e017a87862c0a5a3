"""bonecohort: population cohort simulator of bone loss and fracture risk under hormonal protocols.

Importing the package changes nothing in the process: JAX's 64-bit mode is switched on only
for the duration of the calls that need it (``cohort.with_x64``: a run, a validation, a fit,
a benchmark), and plots pick no matplotlib backend.
"""

__version__ = "0.1.0"
