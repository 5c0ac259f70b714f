"""The package's own quality gates run with the tests: ruff, mypy (strict), public surface."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nanostream

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def test_ruff_lint_and_format() -> None:
    ruff = _tool("ruff")
    lint = subprocess.run(
        [ruff, "check", "src", "tests", "benchmarks", "conftest.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [ruff, "format", "--check", "src", "tests", "benchmarks", "conftest.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def _readme_commands() -> list[str]:
    """The commands of the README's first screen: its indented lines before the first section."""
    first_screen = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    return [line.strip() for line in first_screen.splitlines() if line.startswith("    ")]


def test_the_readme_gives_two_commands_and_ci_starts_with_them() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    install, test = commands
    assert "pip install" in install and "nanostream run examples/" in install
    assert test == ".venv/bin/python -m pytest"
    script = [
        line
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert script[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."']
    assert script[2:4] == commands, "the first commands of .ci/run must be the README's"


def test_mypy_strict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_surface_is_sorted_and_importable() -> None:
    names = list(nanostream.__all__)
    assert names == sorted(names)
    for name in names:
        assert hasattr(nanostream, name), name


def test_every_public_name_has_a_docstring_with_an_example() -> None:
    missing = []
    for name in nanostream.__all__:
        obj = getattr(nanostream, name)
        if name.startswith("__") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        doc = getattr(obj, "__doc__", "") or ""
        if ">>>" not in doc:
            missing.append(name)
    assert not missing, f"public names without a runnable example: {missing}"


def test_no_page_or_docstring_says_ray_skips_acknowledgements() -> None:
    # Every built-in runner calls acknowledgements (docs/ray.md); older text said Ray did not.
    stale = re.compile(
        r"``ray``, for now|[Rr]ay(?: runner)?[^.\n]{0,40}(?:does not|doesn't|never) "
        r"(?:call )?acknowledg"
    )
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in [
            *ROOT.glob("src/nanostream/**/*.py"),
            *ROOT.glob("docs/*.md"),
            ROOT / "README.md",
        ]
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if stale.search(line)
    ]
    assert not found, found
