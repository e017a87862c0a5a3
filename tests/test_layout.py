"""The package's shape: import layers without circles, small modules and functions, and no
side effects on import."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bonecohort"

# From the top (the command line) to the bottom (constants and files). A module may import
# modules of its own layer part and of lower layers only; parts joined by "|" are siblings
# that must not import each other.
LAYERS = (
    "__main__",
    "shell",
    "fit",
    "reference_cache",
    "outcome_inputs",
    "config",
    "cohort",
    "outcomes",
    "solve",
    "population | exposure",
    "model",
    "io | data",
)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports_of(path: Path):
    """Every ``bonecohort`` module imported anywhere in ``path`` (function-local imports
    included), with the line of the import."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found = [n for n in names if n in MODULES]
        if found:
            yield max(found, key=len), node.lineno


def part_of(module: str):
    """(layer index, sibling part) of a module: its first name under bonecohort."""
    top = module.split(".")[1] if "." in module else ""
    for i, layer in enumerate(LAYERS):
        for part in (p.strip() for p in layer.split("|")):
            if top == part:
                return i, part
    return None


def test_every_module_belongs_to_a_layer():
    assert [m for m in MODULES if m != "bonecohort" and part_of(m) is None] == []


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for module, path in MODULES.items():
        if module == "bonecohort":
            continue
        layer, part = part_of(module)
        for target, line in imports_of(path):
            if target == "bonecohort":
                continue
            t_layer, t_part = part_of(target)
            if t_layer < layer or (t_layer == layer and t_part != part):
                wrong.append(f"{path.relative_to(SRC)}:{line} imports {target}")
    assert wrong == []


def test_no_import_circles():
    graph = {m: {t for t, _ in imports_of(p)} - {m} for m, p in MODULES.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_modules_and_functions_stay_small():
    big = []
    for module, path in MODULES.items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            big.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    big.append(f"{module}.{node.name}: {length} lines")
    assert big == []


@pytest.mark.parametrize("x64", ["0", "1"])
def test_importing_the_package_changes_nothing_in_the_process(x64):
    """Every module imported: 64-bit mode stays as the process set it, no plotting backend
    is chosen, pyplot is not loaded."""
    code = f"""
import importlib, sys
import jax
jax.config.update("jax_enable_x64", bool({x64}))
import matplotlib
backend = matplotlib.rcParams._get_backend_or_none()
for name in {sorted(MODULES)!r}:
    if name != "bonecohort.__main__":
        importlib.import_module(name)
assert jax.config.jax_enable_x64 == bool({x64}), "64-bit mode changed"
assert matplotlib.rcParams._get_backend_or_none() == backend, "a backend was chosen"
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
