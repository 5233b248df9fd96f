"""Every module the package imports is installed by ``pip install .`` with no extras.

Regression test for issue 14: ``jobqueue/up.py`` imported httpx, which only ``[dev]`` listed,
so every ``jobqueue`` command failed on a plain install while the suite (which installs
``[dev]``) stayed green. The slow, end-to-end proof is
``tests/acceptance/test_fresh_install.py``; this one names the culprit in a second.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _runtime_distributions() -> set[str]:
    """The project's runtime dependencies, and what the extras they name pull in."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names: set[str] = set()
    for line in project["dependencies"]:
        requirement = Requirement(line)
        names.add(canonicalize_name(requirement.name))
        for extra in requirement.extras:
            for needed in importlib.metadata.requires(requirement.name) or []:
                sub = Requirement(needed)
                if sub.marker is not None and sub.marker.evaluate({"extra": extra}):
                    names.add(canonicalize_name(sub.name))
    return names


def _imported_top_level_modules() -> dict[str, set[str]]:
    """Top-level module name -> the package files importing it (every import, lazy ones too)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "jobqueue").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                found.setdefault(module.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_import_is_the_standard_library_or_a_runtime_dependency() -> None:
    runtime = _runtime_distributions()
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in _imported_top_level_modules().items():
        if module in sys.stdlib_module_names or module in ("__future__", "jobqueue"):
            continue
        distributions = {canonicalize_name(d) for d in providers.get(module, [])}
        if not distributions & runtime:
            missing[module] = sorted(files)
    assert missing == {}, f"imported but not in [project.dependencies]: {missing}"
