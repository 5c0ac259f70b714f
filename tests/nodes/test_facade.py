"""nanostream.nodes is the public facade of the operators and connectors packages.

The code of the built-in nodes lives in ``nanostream.operators`` and
``nanostream.connectors``; every public module path users and pipeline files name
(``nanostream.nodes.sql:SQLSink``) re-exports it, by explicit name.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import nanostream.connectors
import nanostream.nodes
import nanostream.operators

FACADES = [
    "columnar",
    "deadletter",
    "duckdb",
    "files",
    "formats",
    "http",
    "join",
    "kafka",
    "redis",
    "sql",
    "transforms",
    "watch",
    "window",
]


def _public_modules(package: ModuleType) -> list[ModuleType]:
    modules = []
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            modules.append(importlib.import_module(f"{package.__name__}.{info.name}"))
    return modules


@pytest.mark.parametrize("family", FACADES)
def test_each_public_module_path_re_exports_the_code_by_name(family: str) -> None:
    facade = importlib.import_module(f"nanostream.nodes.{family}")
    assert facade.__all__, f"nanostream.nodes.{family} exports nothing"
    for name in facade.__all__:
        obj = getattr(facade, name)
        home = obj.__module__
        assert home.startswith(("nanostream.operators.", "nanostream.connectors.")), (
            f"nanostream.nodes.{family}.{name} is defined in {home}, not re-exported"
        )
        assert getattr(importlib.import_module(home), name) is obj


def test_every_public_name_of_operators_and_connectors_has_a_public_path() -> None:
    exported = {
        id(getattr(module, name))
        for module in _public_modules(nanostream.nodes)
        for name in module.__all__
    }
    missing = [
        f"{module.__name__}.{name}"
        for package in (nanostream.operators, nanostream.connectors)
        for module in _public_modules(package)
        for name in module.__all__
        if id(getattr(module, name)) not in exported
    ]
    assert missing == []


def test_the_package_facade_holds_what_needs_no_optional_dependency() -> None:
    for name in nanostream.nodes.__all__:
        assert getattr(nanostream.nodes, name) is not None
    assert nanostream.nodes.Map is nanostream.operators.transforms.Map
    assert nanostream.nodes.CSVReader is nanostream.connectors.formats.CSVReader
