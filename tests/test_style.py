# SPDX-License-Identifier: AGPL-3.0-or-later
"""The code's mechanical checks, run with the tests so CI enforces them: ruff's lint rules and
formatter (configured in pyproject.toml), mypy on the `appliance` package, whose Synapse types
make an upgrade that renames something fail here rather than at run time, and an SPDX licence
line in every source file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from appliance.config.layout import SOURCE_ROOT

TOOLS = Path(sys.executable).parent
SPDX = "# SPDX-License-Identifier: AGPL-3.0-or-later"


def run_tool(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TOOLS / argv[0]), *argv[1:]],
        cwd=SOURCE_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_ruff_finds_nothing():
    result = run_tool("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tree_is_formatted():
    result = run_tool("ruff", "format", "--no-cache", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_source_file_names_its_licence():
    listed = subprocess.run(
        ["git", "ls-files", "*.py", "scripts/*", ".ci/*"],
        cwd=SOURCE_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    unlabelled = [
        name
        for name in listed
        if (SOURCE_ROOT / name).is_file()
        and (SOURCE_ROOT / name).stat().st_size
        and SPDX not in (SOURCE_ROOT / name).read_text().split("\n", 2)[:2]
    ]
    assert unlabelled == [], f"add the line {SPDX!r} at the top (after a #! line)"


def test_mypy_finds_nothing_in_the_appliance_package():
    result = run_tool("mypy", "--no-incremental", "appliance")
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_modules_outside_packages_have_distinct_names():
    """pytest imports a test file outside a package by its bare name: two such files with one
    name stop a whole run at collection (the fast tier alone would not show it)."""
    tests = SOURCE_ROOT / "tests"
    seen: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        if not (path.parent / "__init__.py").exists():
            seen.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
