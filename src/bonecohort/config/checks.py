"""Validation helpers shared by every user-facing file (studies, targets, parameters).

Every problem is one ``ConfigError`` paragraph naming the file, the section and the field, with
a "did you mean" hint for misspelled keys and choices.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path

from bonecohort.data import find_config, shipped_names


class ConfigError(Exception):
    """Invalid user input; the message is a complete, user-facing paragraph."""


def fail(path, section, field, problem):
    raise ConfigError(f"{path}: [{section}] {field}: {problem}")


def unknown_keys(table: dict, allowed: set, path, section):
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            fail(path, section, key, f"unknown key.{hint} Allowed keys: "
                  f"{', '.join(sorted(allowed))}.")


def check_int(value, path, section, field, lo, hi, file=None):
    if isinstance(value, bool) or not isinstance(value, int):
        fail(file or path, section, field, f"expected an integer, got {value!r}.")
    if not lo <= value <= hi:
        fail(file or path, section, field, f"must be between {lo} and {hi}, got {value}.")
    return value


def check_number(value, path, section, field, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(path, section, field, f"expected a finite number, got {value!r}.")
    if not lo <= value <= hi:
        fail(path, section, field, f"must be between {lo} and {hi}, got {value}.")
    return float(value)


def check_str(value, path, section, field, choices=None):
    if not isinstance(value, str) or not value.strip():
        fail(path, section, field, f"expected a non-empty string, got {value!r}.")
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(value, sorted(choices), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        fail(path, section, field, f"'{value}' is not one of {', '.join(sorted(choices))}.{hint}")
    return value


def table(value, path, section):
    if not isinstance(value, dict):
        fail(path, section, "(section)", f"expected a table, got {type(value).__name__}.")
    return value


def shipped_or_file(path, folder: Path, kind: str) -> Path:
    """``path`` if it exists, else the file of that name shipped with the package in
    ``folder`` (``default`` names ``bonecohort/data/studies/default.toml``); a
    ``ConfigError`` listing the shipped ones otherwise."""
    found = find_config(path, folder)
    if found is None:
        raise ConfigError(f"{path}: no such file (nor a {kind} shipped with bonecohort: "
                          f"{', '.join(shipped_names(folder))}).")
    return found


def read_text(path) -> str:
    """The text of a config file; a missing or unreadable file is a ``ConfigError``."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot be read ({exc}).") from None


def named_entry(raw, path, kind: str, i: int, allowed: set, taken, what: str, key="name"):
    """Entry ``i`` of a list of tables ``[[kind]]`` named by ``key`` (unique among ``taken``).
    Returns the table, its name and the section that names it in later messages."""
    section = f"{kind}[{i}]"
    raw = table(raw, path, section)
    unknown_keys(raw, allowed, path, section)
    name = check_str(raw.get(key), path, section, key)
    if name in taken:
        fail(path, section, key, f"duplicate {what} {key} '{name}'.")
    return raw, name, f"{kind}[{i}] ('{name}')"


def check_folder(sec: dict, path, section, field="tables") -> str:
    """A folder named by ``sec[field]`` (relative to the config file's folder), as a path
    string; "" when the field is absent."""
    value = sec.get(field, "")
    if not value:
        return ""
    value = check_str(value, path, section, field)
    where = Path(path).parent / value
    if not where.is_dir():
        fail(path, section, field, f"'{value}' is not a directory (relative paths are read "
             f"from the config file's folder: {where}).")
    return str(where)


def check_flag(table_: dict, key: str, default: bool, path, section) -> bool:
    """``table_[key]`` as true or false (``default`` when absent)."""
    value = table_.get(key, default)
    if not isinstance(value, bool):
        fail(path, section, key, f"expected true or false, got {value!r}.")
    return value
