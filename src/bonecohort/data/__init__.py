"""Data shipped inside the package (read with ``importlib.resources``, so a wheel install
finds them from any folder):

* ``epidemiology/``: fracture incidence and life tables with their sources (SOURCES.md there);
* ``parameters/public.toml``: the calibration every command applies by default;
* ``studies/``: the default study and the example studies (``bonecohort run default``);
* ``targets/``: published trial results to fit and validate against, with their sources.

The repository's ``configs/`` folder links to these files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def resource(*parts: str) -> Path:
    """Path of a file or folder shipped in ``bonecohort/data``."""
    return Path(str(resources.files(__name__).joinpath(*parts)))


EPIDEMIOLOGY_DIR = resource("epidemiology")
SHIPPED_PARAMETERS = resource("parameters", "public.toml")
STUDIES_DIR = resource("studies")
TARGETS_DIR = resource("targets")


def shipped_names(folder: Path) -> list[str]:
    """Names (file stems) of the TOML files in a shipped folder."""
    return sorted(p.stem for p in folder.glob("*.toml"))


def find_config(name: str | Path, folder: Path = STUDIES_DIR) -> Path | None:
    """``name`` as a file if it exists; else the shipped file of that name in ``folder``
    (``default`` or ``default.toml``); else None."""
    path = Path(name)
    if path.exists():
        return path
    if path.parent == Path(".") and path.stem in shipped_names(folder):
        return folder / f"{path.stem}.toml"
    return None
