"""What a configuration may call: node classes, registered names and declared modules only.

Each malicious reference is checked on a file whose nodes would leave a marker file (or
remove a directory) if anything were called; the marker must not exist afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from shutil import rmtree
from typing import Any

import pytest

import nanostream
from nanostream import ConfigError, NanoNode
from nanostream.config import class_factory, read_config, read_pipeline, register, unregister
from nanostream.testing import Collect

HERE = __name__


def triple(inp: Any, outp: Any) -> None:  # a node function of this module
    for x in inp:
        outp(3 * x)


def write(folder: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path holding ``evil.py``, which leaves EVIL if it is imported."""
    (tmp_path / "evil.py").write_text(
        "import pathlib, nanostream\n"
        "pathlib.Path(__file__).with_name('EVIL').touch()\n"
        "class EvilNode(nanostream.NanoNode):\n"
        "    def process_item(self, item):\n"
        "        yield item\n"
    )
    (tmp_path / "script.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('SCRIPT').touch()\n"
    )
    (tmp_path / "keep").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("evil", None)


def nothing_ran(folder: Path) -> None:
    assert not (folder / "MARKER").exists()
    assert not (folder / "EVIL").exists()
    assert not (folder / "SCRIPT").exists()
    assert (folder / "keep").is_dir()


MALICIOUS = [
    pytest.param("{class: 'os:system', args: {command: 'touch MARKER'}}", "'os:system'", id="os"),
    pytest.param(
        "{class: 'subprocess:Popen', args: {args: [touch, MARKER]}}",
        "'subprocess:Popen'",  # not imported yet, or not a node
        id="subprocess",
    ),
    pytest.param(
        "{class: 'builtins:open', args: {file: MARKER, mode: w}}", "io:open", id="builtins-open"
    ),
    pytest.param("{class: 'shutil:rmtree', args: {path: keep}}", "'shutil:rmtree'", id="rmtree"),
    pytest.param(
        "{class: 'runpy:run_path', args: {path_name: script.py}}",
        "'runpy:run_path'",
        id="runpy",
    ),
    pytest.param(
        "{class: 'os.system', args: {command: 'touch MARKER'}}", "posix:system", id="dotted"
    ),
    pytest.param("{function: 'os:system'}", "'os:system'", id="function"),
    pytest.param("{class: 'evil:EvilNode'}", "module 'evil' is not imported", id="undeclared"),
    pytest.param("{class: '${X}', args: {command: 'touch MARKER'}}", "'os:system'", id="env"),
]


@pytest.mark.parametrize(("node", "message"), MALICIOUS)
def test_nothing_but_trusted_code_is_called(
    folder: Path, monkeypatch: pytest.MonkeyPatch, node: str, message: str
) -> None:
    monkeypatch.chdir(folder)
    path = write(folder, f"nodes:\n  bad: {node}\n  sink: nanostream.testing:Collect\n")
    with pytest.raises(ConfigError) as info:
        read_pipeline(path, env={"X": "os:system"}).build()
    nothing_ran(folder)
    assert info.value.location == f"{path}:2:{node.index(':') + 10}"
    assert message in info.value.message
    assert "nothing was called" in info.value.message or "'imports:'" in info.value.message


@pytest.mark.parametrize("command", ["check", "graph", "run"])
def test_the_command_runs_nothing_and_points_at_each_reference(folder: Path, command: str) -> None:
    nodes = "".join(f"  bad{i}: {p.values[0]}\n" for i, p in enumerate(MALICIOUS))
    write(folder, f"nodes:\n{nodes}")
    result = subprocess.run(
        [sys.executable, "-m", "nanostream", command, "pipeline.yaml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "X": "os:system", "PYTHONPATH": str(folder)},
    )
    nothing_ran(folder)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert [line.split(": error: ")[0] for line in lines] == [
        f"pipeline.yaml:{i + 2}:{str(p.values[0]).index(':') + 11}" for i, p in enumerate(MALICIOUS)
    ], result.stderr
    for line, case in zip(lines, MALICIOUS, strict=True):
        assert str(case.values[1]) in line


def test_the_standard_library_cannot_be_declared(folder: Path) -> None:
    path = write(
        folder,
        """
        imports: [subprocess, os.path]
        nodes:
          bad: {class: 'subprocess:Popen', args: {args: [touch, MARKER]}}
        """,
    )
    with pytest.raises(ConfigError) as info:
        read_pipeline(path, env={})
    nothing_ran(folder)
    assert isinstance(info.value, nanostream.config.ConfigErrors)
    assert [e.location for e in info.value.errors] == [f"{path}:1:11", f"{path}:1:23"]
    assert "'subprocess' is a module of Python's standard library" in str(info.value)


def test_a_function_of_a_module_the_file_does_not_declare_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f"nodes:\n  x: {{function: '{HERE}:triple'}}\n")
    with pytest.raises(ConfigError) as info:
        read_pipeline(path, env={}).build()
    assert info.value.location == f"{path}:2:17"
    assert f"defined in module {HERE!r}, which the configuration does not list under" in (
        info.value.message
    )


def test_a_declared_module_is_imported_and_its_functions_and_nodes_are_usable(
    folder: Path, runner: str
) -> None:
    (folder / "my_nodes.py").write_text(
        "def times(factor):\n"
        "    def node(inp, outp):\n"
        "        for x in inp:\n"
        "            outp(factor * x)\n"
        "    return node\n"
    )
    path = write(
        folder,
        f"""
        imports: [my_nodes, evil, {HERE}]
        nodes:
          numbers: {{class: IterableSource, args: {{iterable: [1, 2]}}}}
          times: {{class: 'my_nodes:times', args: {{factor: 10}}}}
          triple: {{function: triple}}
          passed: EvilNode
          sink: nanostream.testing:Collect
        """,
    )
    pipeline = read_pipeline(path, env={}).build()
    assert (folder / "EVIL").exists()  # declared: its code ran, as the file says
    assert pipeline.start(runner=runner).wait(10)
    sink = next(n for n in pipeline.nodes if isinstance(n, Collect))
    assert sink.items == [30, 60]


def test_registered_constructors_and_nanostream_constructors_are_trusted(
    tmp_path: Path,
) -> None:
    def shout(inp: Any, outp: Any) -> None:
        for x in inp:
            outp(str(x).upper())

    register(lambda: shout, "shouting")
    try:
        path = write(
            tmp_path,
            """
            nodes:
              words: {class: IterableSource, args: {iterable: [a, b, a]}}
              unique: {class: 'nanostream.nodes:uniq'}
              loud: shouting
              sink: nanostream.testing:Collect
            """,
        )
        pipeline = read_pipeline(path, env={}).build()
    finally:
        unregister("shouting")
    assert pipeline.start().wait(10)
    sink = next(n for n in pipeline.nodes if isinstance(n, Collect))
    assert sink.items == ["A", "B", "A"]


def test_nanostream_functions_that_are_not_node_constructors_are_refused(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
        imports: [nanostream.cli]
        nodes:
          again: {class: 'nanostream.cli:main', args: {argv: [run, other.yaml]}}
        """,
    )
    with pytest.raises(ConfigError) as info:
        read_pipeline(path, env={}).build()
    assert info.value.location == f"{path}:3:18"
    assert "'nanostream.cli:main' names nanostream.cli:main, which is not a node" in str(info.value)


def test_an_entry_point_declares_a_package_of_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, installed = tmp_path / "code", tmp_path / "installed"
    code.mkdir()
    (code / "ep_nodes.py").write_text(
        "def plus(amount):\n"
        "    def node(inp, outp):\n"
        "        for x in inp:\n"
        "            outp(x + amount)\n"
        "    return node\n"
    )
    info = installed / "ep_nodes-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-nodes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nanostream.nodes]\nep = ep_nodes\n")
    path = write(
        tmp_path,
        """
        nodes:
          numbers: {class: IterableSource, args: {iterable: [1]}}
          plus: {class: 'ep_nodes:plus', args: {amount: 1}}
          sink: nanostream.testing:Collect
        """,
    )
    monkeypatch.syspath_prepend(str(code))
    with pytest.raises(ConfigError, match="module 'ep_nodes' is not imported"):
        read_pipeline(path, env={}).build()
    assert "ep_nodes" not in sys.modules
    monkeypatch.syspath_prepend(str(installed))  # now a package declares it
    try:
        pipeline = read_pipeline(path, env={}).build()
    finally:
        sys.modules.pop("ep_nodes", None)
    assert pipeline.start().wait(10)
    assert next(n for n in pipeline.nodes if isinstance(n, Collect)).items == [2]


# --------------------------------------------------------------------------- class_factory
class Double(NanoNode):
    def process_item(self, item: int) -> Iterator[int]:
        yield 2 * item


def test_class_factory_refuses_what_is_not_a_node_before_calling_it(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    assert rmtree  # the caller's names include a dangerous function
    for ref, message in [
        ("rmtree", "'rmtree' names shutil:rmtree, which is not a node"),
        ("os:system", "'os:system' names posix:system, which is not a node"),
    ]:
        config = {
            "name": "Wipe",
            "nodes": [{"name": "wipe", "class": ref, "frozen_arguments": {"path": str(keep)}}],
        }
        with pytest.raises(ConfigError) as info:
            class_factory(config, inject=False, register=False)
        assert message in str(info.value)
    assert keep.is_dir()


def test_class_factory_trusts_the_calling_module_and_its_imports(tmp_path: Path) -> None:
    (tmp_path / "factory_nodes.py").write_text(
        "def add(amount):\n"
        "    def node(inp, outp):\n"
        "        for x in inp:\n"
        "            outp(x + amount)\n"
        "    return node\n"
    )
    config: dict[str, Any] = {
        "name": "TripleThenAdd",
        "nodes": [
            {"name": "triple", "function": "triple"},  # defined in this (calling) module
            {"name": "add", "class": "add", "arg_mapping": {"amount": "plus"}},
        ],
    }
    with pytest.raises(ConfigError, match="'add'"):
        class_factory(config, inject=False, register=False)
    sys.path.insert(0, str(tmp_path))
    try:
        config["imports"] = ["factory_nodes"]
        made = class_factory(config, inject=False, register=False)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("factory_nodes", None)
    sink = Collect()
    nanostream.from_iterable([1, 2]) > made(plus=1) > sink
    sink.global_start()
    assert sink.items == [4, 7]


def test_a_composite_file_trusts_its_own_imports_only(folder: Path) -> None:
    (folder / "composite_nodes.py").write_text(
        "def negate():\n"
        "    def node(inp, outp):\n"
        "        for x in inp:\n"
        "            outp(-x)\n"
        "    return node\n"
    )
    good = write(
        folder,
        """
        name: Negate
        imports: [composite_nodes]
        nodes:
          - {name: negate, class: negate, arg_mapping: null}
        """,
        "negate.yaml",
    )
    made = read_config(good, env={})
    assert isinstance(made, type) and issubclass(made, NanoNode)
    sink = Collect()
    nanostream.from_iterable([1, 2]) > made() > sink
    sink.global_start()
    assert sink.items == [-1, -2]
    bad = write(
        folder,
        """
        name: Shell
        imports: [subprocess]
        nodes:
          - {name: run, class: 'subprocess:Popen', frozen_arguments: {args: [touch, MARKER]}}
        """,
        "shell.yaml",
    )
    with pytest.raises(ConfigError) as info:
        read_config(bad, env={})
    nothing_ran(folder)
    assert info.value.location == f"{bad}:2:11"
    assert "'subprocess' is a module of Python's standard library" in info.value.message


def test_modules_given_on_the_command_line_are_declared_too(folder: Path) -> None:
    (folder / "cli_nodes.py").write_text(
        "def halve():\n"
        "    def node(inp, outp):\n"
        "        for x in inp:\n"
        "            outp(x / 2)\n"
        "    return node\n"
    )
    path = write(
        folder,
        """
        nodes:
          numbers: {class: IterableSource, args: {iterable: [4]}}
          halve: {class: 'cli_nodes:halve'}
          sink: nanostream.testing:Collect
        """,
    )
    with pytest.raises(ConfigError, match="module 'cli_nodes' is not imported"):
        read_pipeline(path, env={}).build()
    spec = read_config(path, env={}, imports=["cli_nodes"])  # what --import cli_nodes does
    assert not isinstance(spec, type)
    pipeline = spec.build()
    assert pipeline.start().wait(10)
    assert next(n for n in pipeline.nodes if isinstance(n, Collect)).items == [2.0]


def test_a_declared_package_declares_the_modules_inside_it(folder: Path) -> None:
    package = folder / "trusted_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "inner.py").write_text(
        "def minus(amount):\n"
        "    def node(inp, outp):\n"
        "        for x in inp:\n"
        "            outp(x - amount)\n"
        "    return node\n"
    )
    text = (
        "nodes:\n"
        "  numbers: {class: IterableSource, args: {iterable: [5]}}\n"
        "  minus: {class: 'trusted_pkg.inner:minus', args: {amount: 2}}\n"
        "  sink: nanostream.testing:Collect\n"
    )
    try:
        with pytest.raises(ConfigError, match=r"module 'trusted_pkg\.inner' is not imported"):
            read_pipeline(write(folder, text), env={}).build()
        assert "trusted_pkg.inner" not in sys.modules
        pipeline = read_pipeline(write(folder, "imports: [trusted_pkg]\n" + text), env={}).build()
    finally:
        for name in ("trusted_pkg", "trusted_pkg.inner"):
            sys.modules.pop(name, None)
    assert pipeline.start().wait(10)
    assert next(n for n in pipeline.nodes if isinstance(n, Collect)).items == [3]


def test_a_function_a_declared_module_imported_from_elsewhere_is_refused(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder)
    (folder / "leaky_nodes.py").write_text("from os import system\nfrom shutil import rmtree\n")
    path = write(
        folder,
        """
        imports: [leaky_nodes]
        nodes:
          shell: {class: system, args: {command: touch MARKER}}
          wipe: {class: 'leaky_nodes:rmtree', args: {path: keep}}
        """,
    )
    try:
        with pytest.raises(ConfigError) as info:
            read_pipeline(path, env={}).build()
    finally:
        sys.modules.pop("leaky_nodes", None)
    nothing_ran(folder)
    assert isinstance(info.value, nanostream.config.ConfigErrors)
    assert [(e.location, e.message.split(";")[0]) for e in info.value.errors] == [
        (f"{path}:3:18", "node 'shell': 'system' names posix:system, which is not a node"),
        (
            f"{path}:4:17",
            "node 'wipe': 'leaky_nodes:rmtree' names shutil:rmtree, which is not a node",
        ),
    ]


def test_the_standard_library_is_never_trusted_even_from_the_command_line(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder)
    path = write(folder, "nodes:\n  shell: {class: 'shutil:rmtree', args: {path: keep}}\n")
    spec = read_config(path, env={}, imports=["shutil"])  # what --import shutil does
    assert not isinstance(spec, type)
    with pytest.raises(ConfigError) as info:
        spec.build()
    nothing_ran(folder)
    assert info.value.location == f"{path}:2:18"
    assert "'shutil:rmtree' names shutil:rmtree, which is not a node" in info.value.message


# ------------------------------------------------------------- installed third-party code
UNSAFE = "!!python/object/apply:os.system ['touch MARKER']"


def test_a_declared_third_party_package_cannot_run_its_functions(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder)
    path = write(
        folder,
        f"""
        imports: [yaml]
        nodes:
          load: {{class: 'yaml:unsafe_load', args: {{stream: "{UNSAFE}"}}}}
        """,
    )
    with pytest.raises(ConfigError) as info:
        read_pipeline(path, env={}).build()
    nothing_ran(folder)
    assert info.value.location == f"{path}:3:17"
    assert info.value.message.startswith(
        "node 'load': 'yaml:unsafe_load' names yaml:unsafe_load, which is not a node: it is "
        "part of the installed distribution 'PyYAML', not your own code; "
    )
    assert "register it, declare the entry point, or wrap it in a NanoNode class" in (
        info.value.message
    )


def test_check_runs_no_function_of_a_declared_third_party_package(folder: Path) -> None:
    write(
        folder,
        f"""
        imports: [yaml]
        nodes:
          load: {{class: 'yaml:unsafe_load', args: {{stream: "{UNSAFE}"}}}}
        """,
    )
    result = subprocess.run(
        [sys.executable, "-m", "nanostream", "check", "pipeline.yaml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    nothing_ran(folder)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "pipeline.yaml:3:17: error: node 'load': 'yaml:unsafe_load' names yaml:unsafe_load, "
        "which is not a node: it is part of the installed distribution 'PyYAML'"
    ), result.stderr


@pytest.mark.parametrize(
    ("module", "node", "distribution"),
    [
        ("click", "{class: 'click:echo', args: {message: hello}}", "click"),
        ("httpx", "{class: 'httpx:get', args: {url: 'http://127.0.0.1:9/'}}", "httpx"),
        ("sqlalchemy", "{function: 'sqlalchemy:create_engine'}", "SQLAlchemy"),
    ],
)
def test_a_plain_function_of_an_installed_package_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], module: str, node: str, distribution: str
) -> None:
    pytest.importorskip(module)
    path = write(tmp_path, f"imports: [{module}]\nnodes:\n  call: {node}\n")
    with pytest.raises(ConfigError) as info:
        read_pipeline(path, env={}).build()
    assert info.value.location == f"{path}:3:{node.index(':') + 11}"
    assert f"part of the installed distribution {distribution!r}, not your own code" in (
        info.value.message
    )
    assert capsys.readouterr().out == ""  # click.echo did not print


def test_a_function_re_exported_by_a_declared_module_is_judged_where_it_is_defined(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder)
    (folder / "reexport_nodes.py").write_text("from yaml import unsafe_load\n")
    path = write(
        folder,
        f"""
        imports: [reexport_nodes, yaml]
        nodes:
          load: {{class: 'reexport_nodes:unsafe_load', args: {{stream: "{UNSAFE}"}}}}
          bare: {{class: unsafe_load, args: {{stream: "{UNSAFE}"}}}}
        """,
    )
    try:
        with pytest.raises(ConfigError) as info:
            read_pipeline(path, env={}).build()
    finally:
        sys.modules.pop("reexport_nodes", None)
    nothing_ran(folder)
    assert isinstance(info.value, nanostream.config.ConfigErrors)
    assert [(e.location, e.message.split(";")[0]) for e in info.value.errors] == [
        (
            f"{path}:3:17",
            "node 'load': 'reexport_nodes:unsafe_load' names yaml:unsafe_load, which is not a "
            "node: it is part of the installed distribution 'PyYAML', not your own code",
        ),
        (
            f"{path}:4:17",
            "node 'bare': 'unsafe_load' names yaml:unsafe_load, which is not a node: it is "
            "part of the installed distribution 'PyYAML', not your own code",
        ),
    ]


def test_a_function_whose_module_name_lies_is_judged_by_its_file(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder)
    (folder / "other_code.py").write_text(
        "import pathlib\n"
        "def touch(name):\n"
        "    pathlib.Path(name).touch()\n"
        "touch.__module__ = 'honest_nodes'\n"
    )
    (folder / "honest_nodes.py").write_text("from other_code import touch\n")
    path = write(
        folder,
        "imports: [honest_nodes]\nnodes:\n  touch: {class: touch, args: {name: MARKER}}\n",
    )
    try:
        with pytest.raises(ConfigError) as info:
            read_pipeline(path, env={}).build()
    finally:
        sys.modules.pop("honest_nodes", None)
        sys.modules.pop("other_code", None)
    nothing_ran(folder)
    assert info.value.location == f"{path}:3:18"
    assert info.value.message.startswith(
        f"node 'touch': 'touch' names honest_nodes:touch, which is not a node: it is defined "
        f"in {os.path.realpath(folder / 'other_code.py')}, not in a file of the modules under "
        "'imports:'"
    )


def _install(
    site_dir: Path, code_dir: Path, module: str, *, editable: bool, record: bool = True
) -> None:
    """Write a distribution's metadata in ``site_dir`` for ``code_dir/module.py``."""
    (code_dir / f"{module}.py").write_text(
        "def plus(amount):\n"
        "    def node(inp, outp):\n"
        "        for x in inp:\n"
        "            outp(x + amount)\n"
        "    return node\n"
    )
    info = site_dir / f"{module}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "top_level.txt").write_text(f"{module}\n")
    if record:
        (info / "RECORD").write_text(f"{os.path.relpath(code_dir / f'{module}.py', site_dir)},,\n")
    if editable:
        (info / "direct_url.json").write_text(
            f'{{"url": "{code_dir.as_uri()}", "dir_info": {{"editable": true}}}}'
        )


@pytest.mark.parametrize(
    ("editable", "record", "refused"),
    [
        pytest.param(False, True, "part of the installed distribution 'dist_nodes'", id="wheel"),
        pytest.param(False, False, "part of the installed distribution 'dist_nodes'", id="no-rec"),
        pytest.param(True, True, None, id="editable"),
    ],
)
def test_an_installed_distribution_is_not_the_users_code_unless_editable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    editable: bool,
    record: bool,
    refused: str | None,
) -> None:
    site_dir, code_dir = tmp_path / "lib", tmp_path / "project"
    code_dir.mkdir()
    _install(site_dir, code_dir, "dist_nodes", editable=editable, record=record)
    monkeypatch.syspath_prepend(str(code_dir))
    monkeypatch.syspath_prepend(str(site_dir))
    path = write(
        tmp_path,
        """
        imports: [dist_nodes]
        nodes:
          numbers: {class: IterableSource, args: {iterable: [1]}}
          plus: {class: 'dist_nodes:plus', args: {amount: 1}}
          sink: nanostream.testing:Collect
        """,
    )
    try:
        if refused is not None:
            with pytest.raises(ConfigError) as info:
                read_pipeline(path, env={}).build()
            assert info.value.location == f"{path}:4:17"
            assert f"{refused}, not your own code" in info.value.message
            return
        pipeline = read_pipeline(path, env={}).build()
    finally:
        sys.modules.pop("dist_nodes", None)
    assert pipeline.start().wait(10)
    assert next(n for n in pipeline.nodes if isinstance(n, Collect)).items == [2]


def test_a_module_in_a_site_packages_directory_is_not_the_users_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_dir = tmp_path / "site-packages"
    site_dir.mkdir()
    (site_dir / "vendored_nodes.py").write_text("def shout(inp, outp):\n    pass\n")
    monkeypatch.syspath_prepend(str(site_dir))
    path = write(tmp_path, "imports: [vendored_nodes]\nnodes:\n  x: {function: shout}\n")
    try:
        with pytest.raises(ConfigError) as info:
            read_pipeline(path, env={}).build()
    finally:
        sys.modules.pop("vendored_nodes", None)
    assert info.value.location == f"{path}:3:17"
    assert "it is installed in a site-packages directory, not your own code" in (info.value.message)


def test_an_unknown_class_says_how_to_declare_its_module_in_the_file_and_the_command(
    tmp_path: Path,
) -> None:
    write(tmp_path, "nodes:\n  x: {class: MyOwnNode}\n")
    result = subprocess.run(
        [sys.executable, "-m", "nanostream", "check", "pipeline.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("pipeline.yaml:2:14: error: node 'x': unknown class")
    assert (
        "(list its module under 'imports:', or on the command line name it with --import MODULE)"
    ) in result.stderr


def test_class_factory_trusts_its_calling_module_even_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_dir = tmp_path / "site-packages"
    site_dir.mkdir()
    (site_dir / "lib_composites.py").write_text(
        "import nanostream\n"
        "def negate(inp, outp):\n"
        "    for x in inp:\n"
        "        outp(-x)\n"
        "Negate = nanostream.class_factory(\n"
        "    {'name': 'LibNegate', 'nodes': [{'name': 'negate', 'function': 'negate'}]},\n"
        "    inject=False, register=False,\n"
        ")\n"
    )
    monkeypatch.syspath_prepend(str(site_dir))
    path = write(tmp_path, "imports: [lib_composites]\nnodes:\n  x: {function: negate}\n")
    try:
        import lib_composites  # type: ignore[import-not-found]  # Python code: trusted

        with pytest.raises(ConfigError) as info:  # a file: the installed function is refused
            read_pipeline(path, env={}).build()
    finally:
        sys.modules.pop("lib_composites", None)
    assert "it is installed in a site-packages directory, not your own code" in (info.value.message)
    sink = Collect()
    nanostream.from_iterable([1, 2]) > lib_composites.Negate() > sink
    sink.global_start()
    assert sink.items == [-1, -2]
