"""The class registry: bare names, module paths, registered names, helpful errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import nanostream
from nanostream.config import known_names, register, resolve, unregister
from nanostream.testing import Collect


class RegistryProbeNode(nanostream.NanoNode):
    class Inner(nanostream.NanoNode):
        def process_item(self, item: Any) -> Iterator[Any]:
            yield item

    def process_item(self, item: Any) -> Iterator[Any]:
        yield item


def test_a_bare_name_finds_any_nanonode_subclass() -> None:
    assert resolve("RegistryProbeNode") is RegistryProbeNode
    assert resolve(" RegistryProbeNode ") is RegistryProbeNode
    assert "RegistryProbeNode" in known_names()


def test_built_in_nodes_are_known_without_imports() -> None:
    from nanostream.nodes import CSVReader

    assert resolve("CSVReader") is CSVReader


@pytest.mark.parametrize(
    "path",
    ["nanostream.testing:Collect", "nanostream.testing.Collect", "nanostream:testing.Collect"],
)
def test_module_paths(path: str) -> None:
    assert resolve(path) is Collect


def test_nested_names_in_a_module_path() -> None:
    assert resolve(f"{__name__}:RegistryProbeNode.Inner") is RegistryProbeNode.Inner
    assert resolve(f"{__name__}.RegistryProbeNode.Inner") is RegistryProbeNode.Inner


def test_registered_names_win_and_can_be_removed() -> None:
    @register
    def registry_probe_constructor(amount: int) -> nanostream.NodeFunction:
        def add(inp: Any, outp: Any) -> None:
            for x in inp:
                outp(x + amount)

        return add

    try:
        assert resolve("registry_probe_constructor") is registry_probe_constructor
        register(Collect, "RegistryProbeNode")
        assert resolve("RegistryProbeNode") is Collect
    finally:
        unregister("registry_probe_constructor")
        unregister("RegistryProbeNode")
    assert resolve("RegistryProbeNode") is RegistryProbeNode
    with pytest.raises(nanostream.ConfigError, match="unknown class 'registry_probe_constructor'"):
        resolve("registry_probe_constructor")


def test_register_refuses_what_is_not_callable() -> None:
    with pytest.raises(nanostream.ConfigError, match="not a class or a node constructor"):
        register(42, "answer")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "RegistryProbeNod",
            "unknown class 'RegistryProbeNod' (did you mean 'RegistryProbeNode'?)",
        ),
        ("nanostream.testing:Colect", "'nanostream.testing' has no attribute 'Colect' (did you"),
        ("no_such_module_xyz:Thing", "cannot import module 'no_such_module_xyz'"),
        ("no_such_module_xyz.Thing", "no prefix of it is an importable module"),
        ("nanostream.testing:", "is not a valid path"),
        ("", "a class name must be a non-empty string"),
    ],
)
def test_errors_say_what_to_do(ref: str, message: str) -> None:
    with pytest.raises(nanostream.ConfigError) as info:
        resolve(ref, location="p.yaml:1:2")
    assert info.value.location == "p.yaml:1:2"
    assert message in info.value.message


def test_an_ambiguous_name_lists_the_full_paths() -> None:
    twin = type("RegistryProbeNode", (nanostream.NanoNode,), {"__module__": "elsewhere"})
    with pytest.raises(nanostream.ConfigError) as info:
        resolve("RegistryProbeNode")
    assert "ambiguous class name 'RegistryProbeNode'" in str(info.value)
    assert f"{__name__}:RegistryProbeNode" in str(info.value)
    assert "elsewhere:RegistryProbeNode" in str(info.value)
    del twin
