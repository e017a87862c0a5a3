"""Shared fixtures. Importing bonecohort enables 64-bit types for the reference computations."""

import bonecohort  # noqa: F401
