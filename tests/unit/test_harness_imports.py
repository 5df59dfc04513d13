"""The dependency rules (STYLE.md): ``installer`` never imports ``harness`` (it installs onto machines it
did not create) and ``harness`` never imports ``installer`` or ``scenarios`` (scenarios compose both);
``core``, the ground floor, imports none of the packages that stand on it. Checked on the source with
``ast``, including imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.errors import CommandFailed, InputError, KhaError
from harness.errors import HarnessError, SpecError
from images.errors import ImageError, UnknownRecipe
from installer.errors import CommandError, ConfigError, InstallerError
from scenarios.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[2]


def imported_packages(package: str) -> dict[str, set[str]]:
    """For every .py file under ``package``: the top-level package names it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(("package", "forbidden"), [
    ("core", {"installer", "harness", "images", "scenarios", "kha"}),
    ("installer", {"harness", "scenarios", "kha"}),
    ("harness", {"installer", "scenarios", "kha"}),
    ("images", {"installer", "harness", "scenarios", "kha"}),
])
def test_dependency_direction(package: str, forbidden: set[str]) -> None:
    files = imported_packages(package)
    assert files, f"no source files found under {package}/"
    offenders = {f: sorted(names & forbidden) for f, names in files.items() if names & forbidden}
    assert offenders == {}


def test_the_scanner_sees_imports_inside_functions(tmp_path: Path) -> None:
    tree = ast.parse("def f():\n    from installer import topology\n    import harness.spec\n")
    seen = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    seen |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert seen == {"installer", "harness.spec"}


def test_every_package_stands_on_one_error_root() -> None:
    """Each package's error tree hangs under core's ``KhaError``, so the CLI catches them with one type."""
    for root in (InstallerError, HarnessError, ImageError, ScenarioError, CommandFailed):
        assert issubclass(root, KhaError), root
    for bad_input in (ConfigError, SpecError, UnknownRecipe):
        assert issubclass(bad_input, InputError), bad_input
    assert issubclass(CommandError, CommandFailed)
