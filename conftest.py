"""Collection rules for the whole repository: src/ doctests, docs/ pages and tests/.

What needs an optional package that is not installed is reported as *skipped*, with the
package and the command that installs it, never as a collection error:

* a module of the package that imports the package at its top (see ``IMPORT_NEEDS``) is
  not imported for its doctests;
* a doctest whose name matches a pattern of its module's ``__doctest_requires__``
  (``{fnmatch pattern: (package, ...)}``) is skipped.
"""

from __future__ import annotations

import fnmatch
import importlib.util
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
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
