"""Collection rules for the whole repository: src/ doctests, docs/ pages and tests/.

What needs an optional package that is not installed is reported as *skipped*, with the
package and the command that installs it, never as a collection error:

* a module of the package that imports the package at its top (see ``IMPORT_NEEDS``) is
  not imported for its doctests;
* a doctest whose name matches a pattern of its module's ``__doctest_requires__``
  (``{fnmatch pattern: (package, ...)}``) is skipped.

Each run keeps the ids of the tests it skipped in pytest's cache; ``pytest --only-skipped``
then runs just those (after installing the servers, tools or packages they wanted). CI's
second pass does that instead of running the whole suite again.

The tests run on pytest-xdist workers (``-n auto --dist loadgroup`` in pyproject's
``addopts``): one worker per core this process may use, and none on a single core, where
the tests run in pytest's own process (``-n 0`` does that anywhere, ``-n 3`` sets the count).
"""

from __future__ import annotations

import compileall
import fnmatch
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from _pytest.doctest import DoctestItem

ROOT = Path(__file__).resolve().parent

#: Modules under src/ that import an optional package at their top: {path: (package, extra)}.
IMPORT_NEEDS = {
    "src/nanostream/runners/ray/_actor.py": ("ray", "ray"),
    "src/nanostream/runners/ray/_transport.py": ("ray", "ray"),
    "src/nanostream/runners/ray/_wire.py": ("ray", "ray"),
}

#: The extra that installs each optional package named in ``__doctest_requires__``.
EXTRAS = {"ray": "ray"}


def _missing(packages: Iterable[str]) -> list[str]:
    return [name for name in packages if importlib.util.find_spec(name) is None]


def _reason(package: str, extra: str) -> str:
    return f"{package} is not installed: pip install 'nanostream[{extra}]'"


class _NeedsPackage(pytest.Item):
    """Stands for a module that cannot be imported here: one skipped test with the reason."""

    def __init__(self, *, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def runtest(self) -> None:
        pytest.skip(self.reason)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"[doctest] {self.name}"


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    collected = yield
    try:
        relative = file_path.relative_to(ROOT).as_posix()
    except ValueError:
        return collected
    need = IMPORT_NEEDS.get(relative)
    if need is None or not _missing([need[0]]):
        return collected
    return [_NeedsPackage.from_parent(parent, name=file_path.name, reason=_reason(*need))]


SKIPPED_KEY = "nanostream/skipped"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--only-skipped",
        action="store_true",
        help="run only the tests that the previous run skipped (kept in pytest's cache)",
    )


class _SkipRecord:
    """Notes the tests a run skips and keeps their ids in pytest's cache at its end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.skipped: set[str] = set()

    def _note(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped:
            # A stand-in for a module that could not be imported (``folder::module.py``,
            # collected under its folder) is kept by its file: the next run, with the
            # package installed, has the module's doctests in its place.
            folder, _, name = report.nodeid.partition("::")
            stand_in = (
                name.endswith(".py") and "::" not in name and (ROOT / folder / name).is_file()
            )
            self.skipped.add(f"{folder}/{name}" if stand_in else report.nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)

    def pytest_sessionfinish(self) -> None:
        if hasattr(self.config, "workerinput"):
            return  # a pytest-xdist worker: the controller gets every report and keeps them
        cache = getattr(self.config, "cache", None)  # None with -p no:cacheprovider
        if cache is not None and not self.config.option.collectonly:
            cache.set(SKIPPED_KEY, sorted(self.skipped))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """The workers of ``-n auto``: one per core this process may use, none on one core.

    A single worker on a single core would only add its start-up and the reports' trip
    between processes. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when it is set.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist reads it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores if cores and cores > 1 else 0


def _compile_the_package() -> None:
    """Write the bytecode of ``src/nanostream`` even when ``PYTHONDONTWRITEBYTECODE`` is set.

    The tests start many interpreters that import nanostream (the command line, kill
    tests' children, process workers, Ray workers); without bytecode on disk each of them
    compiles the whole package again (about 0.25 s of CPU each). Bytecode is checked against
    its source's modification time, so a stale file is never used.
    """
    package = ROOT / "src" / "nanostream"
    if package.is_dir():  # not in a copy of this file elsewhere (the tests of this file)
        compileall.compile_dir(package, quiet=1)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_SkipRecord(config), "nanostream-skip-record")
    if not hasattr(config, "workerinput"):  # once, in the controller of a pytest-xdist run
        _compile_the_package()


def _only_skipped(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache = getattr(config, "cache", None)
    recorded = None if cache is None else cache.get(SKIPPED_KEY, None)
    if recorded is None:
        raise pytest.UsageError(
            "--only-skipped: no previous run is recorded in pytest's cache; run pytest "
            "once without it first"
        )
    wanted = set(recorded)
    keep, drop = [], []
    for item in items:
        path = item.nodeid.partition("::")[0]
        (keep if item.nodeid in wanted or path in wanted else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("only_skipped"):
        _only_skipped(config, items)
    for item in items:
        if not isinstance(item, DoctestItem) or item.dtest is None:
            continue
        module = item.dtest.globs.get("__doctest_requires__")
        if not module:
            continue
        for pattern, packages in module.items():
            if fnmatch.fnmatchcase(item.dtest.name, pattern):
                for package in _missing(packages):
                    item.add_marker(pytest.mark.skip(reason=_reason(package, EXTRAS[package])))
