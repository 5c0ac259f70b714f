"""Guard rails of the architecture: ``_core`` imports nothing above it; runners see only the plan.

A runner reads what it needs of a node from the node's plan entry (``PlanNode``) and gives
the node its context with ``PlanNode.bind``; it never reads or writes the node object.

Both checks parse the source with :mod:`ast`, so an import inside a function counts, and
so does an attribute access in a branch that no test runs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nanostream
from nanostream._core import registry
from nanostream.runners import get_runner

SRC = Path(nanostream.__file__).parent
CORE = SRC / "_core"
RUNNERS = SRC / "runners"


def _imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute name), with its line, anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if node.module is None:  # "from . import x": x may be a module
                found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, module))
    return found


#: The compiled twin of _core/fast.py's loops: built from src/nanostream/_speedups.c, it
#: imports nothing of nanostream.
CORE_MAY_IMPORT = {"nanostream._speedups"}


def _core_violations(root: Path) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        for line, module in _imported_modules(path, "nanostream._core"):
            inside = module == "nanostream._core" or module.startswith("nanostream._core.")
            above = module == "nanostream" or module.startswith("nanostream.")
            if above and not inside and module not in CORE_MAY_IMPORT:
                bad.append(f"{path.name}:{line} imports {module}")
    return bad


def test_core_imports_nothing_above_it() -> None:
    assert _core_violations(CORE) == []


def test_core_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "late.py").write_text(
        textwrap.dedent(
            """
            from .errors import GraphError
            def f():
                from ..runners import get_runner
                import nanostream.observe
                from .. import config
            """
        )
    )
    assert _core_violations(tmp_path) == [
        "late.py:4 imports nanostream.runners",
        "late.py:5 imports nanostream.observe",
        "late.py:6 imports nanostream.config",
    ]


def _is_node_object(expr: ast.expr) -> bool:
    """``<anything>.node``: the user's node object a plan entry holds."""
    return isinstance(expr, ast.Attribute) and expr.attr == "node"


def _runner_violations(root: Path) -> list[str]:
    """Accesses to a node object's members (public or private), or ``_ns_`` members."""
    bad: list[tuple[str, int, str]] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                if node.attr.startswith("_ns_") or _is_node_object(node.value):
                    bad.append((path.name, node.lineno, f".{node.attr}"))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"getattr", "setattr", "hasattr", "delattr", "vars"}
                and node.args
            ):
                name = node.args[1] if len(node.args) > 1 else None
                private = isinstance(name, ast.Constant) and str(name.value).startswith("_ns_")
                if private or _is_node_object(node.args[0]):
                    what = ast.unparse(name) if name is not None else ""
                    bad.append((path.name, node.lineno, f"{node.func.id}(..., {what})"))
    return [f"{name}:{line} {what}" for name, line, what in sorted(bad)]


def test_runners_do_not_touch_node_objects() -> None:
    assert _runner_violations(RUNNERS) == []


def test_runner_check_sees_node_access(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        textwrap.dedent(
            """
            def start(pn, ctx, task):
                pn.node._ns_context = ctx
                x = pn.node._secret
                setattr(task, "_ns_stop_event", None)
                held = pn.node.items_held()
                ports = getattr(pn.node, "ports", ())
                state = vars(pn.node)
                return pn.bind(ctx), pn.holds_items, pn.ports, pn.function
            """
        )
    )
    assert _runner_violations(tmp_path) == [
        "bad.py:3 ._ns_context",
        "bad.py:4 ._secret",
        "bad.py:5 setattr(..., '_ns_stop_event')",
        "bad.py:6 .items_held",
        "bad.py:7 getattr(..., 'ports')",
        "bad.py:8 vars(..., )",
    ]


def test_core_works_without_the_layers_above_being_imported_by_it() -> None:
    """Importing _core alone imports the package, whose layers fill the registry."""
    code = (
        "import sys\n"
        "from nanostream._core.graph import Pipeline\n"
        "from nanostream._core.registry import get_runner, hook\n"
        "assert 'nanostream.runners.threads' not in sys.modules\n"
        "print(get_runner('threads').name, hook('run_inline').__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["threads", "nanostream.runners.cooperative"]


def test_a_package_adds_a_runner_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner named only in an installed package's metadata is found when asked for."""
    (tmp_path / "ns_layers_runner.py").write_text(
        textwrap.dedent(
            """
            from nanostream.runners.threads import ThreadsRunner

            class LoudRunner(ThreadsRunner):
                name = "loud"
            """
        )
    )
    dist = tmp_path / "ns_layers_runner-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ns-layers-runner\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[nanostream.runners]\nloud = ns_layers_runner:LoudRunner\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_runners", dict(registry._runners))  # forgotten after
    sink = nanostream.testing.Collect()
    nanostream.from_iterable([1, 2]) > sink
    sink.global_start(runner="loud")
    assert sink.items == [1, 2]
    assert get_runner("loud").name == "loud"


def test_an_unknown_runner_says_what_to_do() -> None:
    with pytest.raises(nanostream.GraphError) as info:
        get_runner("no-such-runner")
    message = str(info.value)
    assert "choose one of: cooperative, ray, threads" in message
    assert "'nanostream.runners' entry-point group" in message


# --------------------------------------------------------------------------- module size
MAX_LINES = 900
"""A module that grows past this holds several concerns: split it by concern."""

TEMPORARILY_LARGER: dict[str, str] = {}
"""Files another change is rewriting, with the reason they may be larger for now."""


def _oversized(root: Path, exceptions: dict[str, str]) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(relative.match(pattern) for pattern in exceptions):
            continue
        with path.open(encoding="utf-8") as file:
            lines = sum(1 for _ in file)
        if lines > MAX_LINES:
            bad.append(f"{relative.as_posix()}: {lines} lines")
    return bad


def test_every_module_is_at_most_900_lines() -> None:
    assert _oversized(SRC, TEMPORARILY_LARGER) == []


def test_size_check_sees_a_long_module_and_honours_only_listed_exceptions(
    tmp_path: Path,
) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "pkg" / "fits.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "runners").mkdir()
    (tmp_path / "runners" / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert _oversized(tmp_path, {}) == [
        f"pkg/long.py: {MAX_LINES + 1} lines",
        f"runners/big.py: {MAX_LINES + 1} lines",
    ]
    assert _oversized(tmp_path, {"runners/*.py": "being rewritten"}) == [
        f"pkg/long.py: {MAX_LINES + 1} lines"
    ]
