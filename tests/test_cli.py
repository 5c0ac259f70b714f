"""The ``nanostream`` command, through its real entry point: ``python -m nanostream``."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click
import pytest

from nanostream.cli import cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Nodes for the pipelines of these tests, written next to each pipeline file.
NODES = '''
import time
import nanostream


class Counter(nanostream.NanoNode):
    """Counts up forever (until the run stops), a little at a time."""

    def generator(self):
        i = 0
        while True:
            yield i
            i += 1
            if self.sleep(0.01):
                return


class Announce(nanostream.NanoNode):
    def setup(self):
        print("started", flush=True)

    def process_item(self, item):
        yield item

    def cleanup(self):
        print("drained", flush=True)


class Stubborn(nanostream.NanoNode):
    """A source that never emits and ignores requests to stop."""

    def generator(self):
        print("started", flush=True)
        while True:
            time.sleep(0.01)
        yield None


class Boom(nanostream.NanoNode):
    def process_item(self, item):
        raise ValueError(f"bad item {item!r}")
        yield item


class Upper(nanostream.NanoNode):
    def __init__(self, suffix=""):
        super().__init__()
        self.suffix = suffix

    def process_item(self, item):
        yield str(item).upper() + self.suffix


class Print(nanostream.NanoNode):
    def process_item(self, item):
        print(item, flush=True)
        yield item


class Upto(nanostream.NanoNode):
    """Counts from where it stopped up to ``stop`` (its position is its state)."""

    def __init__(self, stop):
        super().__init__()
        self.stop = stop
        self.position = 0

    def generator(self):
        while self.position < self.stop:
            self.position += 1
            yield self.position

    def snapshot_state(self):
        return self.position

    def restore_state(self, state):
        self.position = state
'''


def nanostream_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "nanostream", *map(str, args)]


def run_cli(
    *args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        nanostream_cmd(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "cli_test_nodes.py").write_text(NODES)
    return tmp_path


def pipeline_file(folder: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


GOOD = """
name: shout
imports: [cli_test_nodes]
nodes:
  words: {class: IterableSource, args: {iterable: [a, b]}}
  upper: {class: Upper, args: {suffix: "!"}}
  show: Print
"""


# --------------------------------------------------------------------------- help
def test_help_explains_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for text in ("run", "check", "graph", "A pipeline file looks like this", "Exit status"):
        assert text in result.stdout
    for command, expected in [
        (
            "run",
            [
                "--set NODE.ARG=VALUE",
                "--runner [threads|cooperative|ray]",
                "Ctrl-C",
                "--debug",
                "--progress",
            ],
        ),
        ("check", ["without running it", "FILE:LINE:COLUMN"]),
        ("graph", ["--format [mermaid|dot|png|svg]", "Graphviz", "--stats"]),
    ]:
        result = run_cli(command, "--help")
        assert result.returncode == 0, result.stderr
        for text in expected:
            assert text in result.stdout, (command, text)


def as_check(line: str) -> list[str]:
    """The command line ``line`` (``nanostream COMMAND FILE ...``) as a ``check`` of FILE.

    Options of COMMAND that ``check`` does not take (``-v``, ``--format svg``) are left
    out, with their values.
    """
    words = shlex.split(line)
    assert words[0] == "nanostream" and isinstance(cli, click.Group), line
    assert not {"|", ">", "<", "&&", ";"} & set(words), f"not one plain command: {line}"
    command = cli.commands[words[1]]

    def options(of: click.Command) -> dict[str, bool]:  # name -> whether it takes a value
        return {
            name: not (isinstance(p, click.Option) and (p.is_flag or p.count))
            for p in of.params
            if isinstance(p, click.Option)
            for name in (*p.opts, *p.secondary_opts)
        }

    given, checked = options(command), options(cli.commands["check"])
    args: list[str] = []
    rest = iter(words[2:])
    for word in rest:
        name = word.partition("=")[0]
        if name not in given:
            assert not word.startswith("-"), f"{line}: {word} is not an option of the command"
            args.append(word)
            continue
        value = [next(rest)] if given[name] and "=" not in word else []
        if name in checked:
            args += [word, *value]
    return ["check", *args]


def help_command_lines() -> list[str]:
    """Every ``nanostream ...`` command line that ``--help`` shows, for each command too."""
    lines = []
    for command in ([], ["run"], ["check"], ["graph"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0, result.stderr
        lines += [m.strip() for m in re.findall(r"(?m)^ +nanostream .*$", result.stdout)]
    return lines


def test_every_command_line_of_the_help_texts_checks() -> None:
    lines = help_command_lines()
    assert len(lines) >= 4, lines  # the main help's examples at least
    assert any("examples/foo_message.yaml" in line for line in lines), lines
    for line in lines:
        result = run_cli(*as_check(line))
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        assert ": ok: " in result.stdout, line


# command lines in cli.md that show what a file of the reader's own gives (these outputs
# are the ones the tests above check, on files they write); every other one names a file
# of the repository and is checked as it is written
ILLUSTRATIVE_FILES = {"shout.yaml", "pipeline.yaml"}


def test_every_command_line_of_cli_md_checks() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    lines = [
        m.strip().removeprefix("$ ")
        for m in re.findall(r"(?m)^ {4,}(?:\$ )?nanostream .*$", text)
        if "FILE" not in m  # the synopsis
    ]
    assert len(lines) >= 5, lines
    checked = 0
    for line in lines:
        if shlex.split(line)[2] in ILLUSTRATIVE_FILES or shlex.split(line)[1] == "state":
            continue  # an illustrative file; a state store is no pipeline file to check
        result = run_cli(*as_check(line))
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        assert ": ok: " in result.stdout, line
        checked += 1
    assert checked >= 5, lines


# cli.md's synopsis (the indented block that starts with "nanostream run") and sections.
CLI_DOC = ROOT / "docs" / "cli.md"


def documented_synopsis() -> dict[str, list[tuple[str, str | None]]]:
    """For each command in cli.md's synopsis: its [OPTION METAVAR] entries, in order."""
    text = CLI_DOC.read_text()
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("    nanostream "):
            lines.append(line.strip())
        elif lines and line.startswith("        ") and not line.strip().startswith("$"):
            lines[-1] += " " + line.strip()
        elif lines:
            break
    synopsis: dict[str, list[tuple[str, str | None]]] = {}
    for line in lines:
        command = line.split()[1]
        entries = []
        for group in re.findall(r"\[([^\]]+)\]", line):
            name, *rest = group.replace(" ...", "").split()
            entries.append((name, rest[0] if rest else None))
        synopsis[command] = entries
    return synopsis


def documented_section(command: str) -> str:
    """The text of cli.md's section on ``nanostream COMMAND``, up to the next section."""
    text = CLI_DOC.read_text()
    start = text.index(f"## `nanostream {command}`")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def help_options(command: str) -> dict[str, tuple[set[str], str | None]]:
    """``nanostream COMMAND --help``'s options: long name -> ({names}, metavar or choices)."""
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    options: dict[str, tuple[set[str], str | None]] = {}
    for line in result.stdout.split("\nOptions:\n", 1)[1].splitlines():
        found = re.match(r"  (?:(-\w), )?(--[\w-]+)(?: / (--[\w-]+))?(?: (\S+))?", line)
        if found:
            short, long, off, metavar = found.groups()  # off: --no-x of a --x/--no-x flag
            names = {long} | ({short} if short else set()) | ({off} if off else set())
            options[long] = (names, metavar.strip("[]") if metavar else None)
    del options["--help"]
    return options


def test_cli_md_lists_exactly_the_options_of_help() -> None:
    synopsis = documented_synopsis()
    result = run_cli("--help")
    listing = result.stdout.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    assert sorted(synopsis) == [line.split()[0] for line in listing.splitlines()]
    for command, entries in synopsis.items():
        options = help_options(command)
        documented = {name: metavar for name, metavar in entries}
        assert len(documented) == len(entries), f"{command}: an option is listed twice"
        for long, (names, metavar) in options.items():
            listed = [name for name in documented if name in names]
            assert listed, f"cli.md's synopsis of {command!r} lacks {long}"
            assert documented[listed[0]] == metavar, (command, long)
        every_name = set().union(*(names for names, _ in options.values())) | {"--help", "-h"}
        for name in documented:
            assert name in every_name, f"cli.md lists {name} for {command!r}; --help has not"
        # every option that the command's section mentions is one of the command's
        mentioned = set(
            re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[a-z])\b", documented_section(command))
        )
        assert mentioned - every_name == set(), command


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("nanostream, version ")


# --------------------------------------------------------------------------- success
def test_run_check_and_graph_a_good_file(project: Path) -> None:
    path = pipeline_file(project, GOOD)
    result = run_cli("run", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "A!\nB!\n"
    assert "pipeline 'shout' finished" in result.stderr

    result = run_cli("run", path, "--set", "upper.suffix=?", "--set", "words.iterable=[x, 1]")
    assert (result.returncode, result.stdout) == (0, "X?\n1?\n"), result.stderr

    result = run_cli("run", path, "--runner", "cooperative")
    assert (result.returncode, result.stdout) == (0, "A!\nB!\n"), result.stderr

    result = run_cli("check", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: ok: pipeline 'shout', 3 nodes, 2 links, runner threads\n"

    result = run_cli("graph", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("flowchart LR")
    assert "words" in result.stdout and "-->" in result.stdout

    result = run_cli("graph", path, "--format", "dot")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("digraph") and "->" in result.stdout


def test_run_with_state_resumes_and_state_show_lists_it(project: Path) -> None:
    """(The first run's checkpoints are unaligned; the flag reaches the run's options,
    which refuse it without --state.)"""
    text = """
    name: upto
    imports: [cli_test_nodes]
    nodes:
      count: {class: Upto, args: {stop: 3}}
      show: Print
    """
    path = pipeline_file(project, text)
    store = project / "run.state"
    result = run_cli(
        "run", path, "--state", store, "--checkpoint-interval", "0.5", "--checkpoint-unaligned"
    )
    assert (result.returncode, result.stdout) == (0, "1\n2\n3\n"), result.stderr
    result = run_cli("run", path, "--checkpoint-unaligned")
    assert result.returncode == 1 and "give the run a state store" in result.stderr
    result = run_cli("run", path, "--state", store, "--set", "count.stop=5")
    assert (result.returncode, result.stdout) == (0, "4\n5\n"), result.stderr

    result = run_cli("state", "show", store)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("checkpoint ") and "of pipeline 'upto'" in lines[0]
    assert lines[2].split() == ["count", "cli_test_nodes.Upto", lines[2].split()[2], "5"]

    changed = pipeline_file(project, text.replace("count:", "counter:"), "changed.yaml")
    result = run_cli("run", changed, "--state", store)
    assert result.returncode == 1
    assert "'count' (no node of that name now)" in result.stderr
    assert "--drop-state" in result.stderr
    result = run_cli("run", changed, "--state", store, "--drop-state")
    assert (result.returncode, result.stdout) == (0, "1\n2\n3\n"), result.stderr

    result = run_cli("state", "show", project / "nothing.state")
    assert result.returncode == 1
    assert "there is no state store at" in result.stderr


def test_run_and_check_say_which_checkpoints_a_run_takes(project: Path) -> None:
    """Unaligned by default on the local runners, aligned with --checkpoint-aligned;
    ``run -v`` logs it, ``check`` says it for a file with a ``state:`` (the fallback on a
    runner without unaligned checkpoints: tests/core/test_checkpoint_unaligned.py)."""
    path = pipeline_file(project, GOOD)
    store = project / "run.state"
    result = run_cli("run", path, "-v", "--state", store)
    assert result.returncode == 0, result.stderr
    assert "pipeline 'shout': unaligned checkpoints (the default on the 'threads'" in (
        result.stderr
    )
    result = run_cli("run", path, "-v", "--state", store, "--checkpoint-aligned")
    assert result.returncode == 0, result.stderr
    assert "pipeline 'shout': aligned checkpoints (checkpoint_unaligned=False)" in result.stderr

    stateful = pipeline_file(project, GOOD + "options: {state: run.state}\n", "stateful.yaml")
    result = run_cli("check", stateful)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{stateful}: ok: pipeline 'shout', 3 nodes, 2 links, ")
    assert "runner threads, unaligned checkpoints (the default on the 'threads'" in result.stdout
    aligned = pipeline_file(
        project,
        GOOD + "runner: cooperative\noptions: {state: s, checkpoint_unaligned: false}\n",
        "aligned.yaml",
    )
    result = run_cli("check", aligned)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(
        "runner cooperative, aligned checkpoints (checkpoint_unaligned=False)\n"
    )


def test_run_takes_share_cores_from_the_command_line_and_the_file(project: Path) -> None:
    path = pipeline_file(project, GOOD)
    result = run_cli("run", path, "--no-share-cores")
    assert (result.returncode, result.stdout) == (0, "A!\nB!\n"), result.stderr
    # The option reaches the run's options: the cooperative runner refuses it by name.
    result = run_cli("run", path, "--runner", "cooperative", "--share-cores")
    assert result.returncode == 1
    assert "the 'cooperative' runner does not place node threads on cores" in result.stderr
    in_file = pipeline_file(project, GOOD + "options: {share_cores: false}\n", "off.yaml")
    result = run_cli("run", in_file, "--runner", "cooperative")
    assert result.returncode == 1 and "share_cores=" in result.stderr
    result = run_cli("run", in_file)
    assert (result.returncode, result.stdout) == (0, "A!\nB!\n"), result.stderr
    wrong = pipeline_file(project, GOOD + "options: {share_cores: 2}\n", "wrong.yaml")
    result = run_cli("check", wrong)
    assert result.returncode == 1
    assert "share_cores must be True, False or None (the default), got 2" in result.stderr


# --------------------------------------------------------------------------- errors
ERRORS = [
    pytest.param(
        """
        nodes:
          words: {class: IterableSource, args: {iterable: [a]}
        """,
        "3:1",
        "this is not valid YAML",
        id="malformed-yaml",
    ),
    pytest.param(
        """
        imports: [cli_test_nodes]
        nodes:
          words: {class: IterableSource, args: {iterable: [a]}}
          upper: {class: Uper}
        """,
        "4:18",
        "node 'upper': unknown class 'Uper' (did you mean 'Upper'?)",
        id="unknown-class",
    ),
    pytest.param(
        """
        imports: [cli_test_nodes]
        nodes:
          words: {class: IterableSource, args: {iterable: [a]}}
          upper:
            class: Upper
            args: {sufix: "!"}
        """,
        "6:12",
        "node 'upper' (Upper) has no argument 'sufix' (did you mean 'suffix'?); it takes: suffix",
        id="bad-argument",
    ),
    pytest.param(
        """
        imports: [cli_test_nodes]
        nodes:
          a: Upper
          b: Upper
        edges:
          - {from: a, to: b}
          - {from: b, to: a}
        """,
        "7:5",
        "the edges form a cycle: a > b > a",
        id="cycle",
    ),
]


@pytest.mark.parametrize(("text", "line_col", "message"), ERRORS)
@pytest.mark.parametrize("command", ["check", "run"])
def test_errors_name_the_file_line_and_column(
    project: Path, command: str, text: str, line_col: str, message: str
) -> None:
    path = pipeline_file(project, text)
    result = run_cli(command, "pipeline.yaml", cwd=project)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"pipeline.yaml:{line_col}: error: "), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert path.exists()


def test_graph_reports_errors_too(project: Path) -> None:
    pipeline_file(project, "nodes:\n  a: {class: NoSuchNodeClass}\n")
    result = run_cli("graph", "pipeline.yaml", cwd=project)
    assert result.returncode == 1
    assert result.stderr.startswith("pipeline.yaml:2:14: error: node 'a': unknown class")


def test_every_error_of_a_file_is_listed(project: Path) -> None:
    pipeline_file(
        project,
        """
        imports: [cli_test_nodes]
        nodes:
          a: {class: Upperr}
          b: {class: Upper, args: {x: 1}}
        """,
    )
    result = run_cli("check", "pipeline.yaml", cwd=project)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert [line.split(": error: ")[0] for line in lines] == [
        "pipeline.yaml:3:14",
        "pipeline.yaml:4:28",
    ]


def test_a_missing_file_and_a_bad_set_option(project: Path) -> None:
    result = run_cli("check", "nope.yaml", cwd=project)
    assert result.returncode == 1
    assert result.stderr.startswith("nope.yaml: error: cannot read the pipeline file")

    pipeline_file(project, GOOD)
    result = run_cli("run", "pipeline.yaml", "--set", "upper", cwd=project)
    assert result.returncode == 2
    assert "write NODE.ARGUMENT=VALUE" in result.stderr


@pytest.mark.parametrize("command", ["run", "check", "graph"])
def test_a_set_option_naming_nothing_is_a_usage_error(project: Path, command: str) -> None:
    pipeline_file(project, GOOD)
    result = run_cli(command, "pipeline.yaml", "--set", "uper.suffix=x", cwd=project)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "--set uper.suffix: error: there is no node 'uper' (did you mean 'upper'?) to set "
        "'uper.suffix' on; write NODE.ARGUMENT=VALUE with a node of: words, upper, show\n"
    )

    result = run_cli(command, "pipeline.yaml", "--set", "upper.sufix=x", cwd=project)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "--set upper.sufix: error: node 'upper' (Upper) has no argument 'sufix' "
        "(did you mean 'suffix'?); it takes: suffix\n"
    )

    result = run_cli(command, "pipeline.yaml", "--set", "suffix=x", cwd=project)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "--set suffix: error: 'suffix' names no node: write NODE.ARGUMENT=VALUE with a node "
        "of: words, upper, show\n"
    )


def test_a_failing_node_is_one_paragraph_and_a_traceback_with_debug(project: Path) -> None:
    pipeline_file(
        project,
        """
        imports: [cli_test_nodes]
        nodes:
          words: {class: IterableSource, args: {iterable: [a]}}
          boom: Boom
        """,
    )
    result = run_cli("run", "pipeline.yaml", cwd=project)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "error: node 'boom' failed: ValueError: bad item 'a'"
    assert lines[1].startswith("  raised at ") and "cli_test_nodes.py:" in lines[1]
    assert "in process_item" in lines[1]
    assert "--debug" in lines[2]
    assert len(lines) == 3 and "Traceback" not in result.stderr

    result = run_cli("run", "pipeline.yaml", "--debug", cwd=project)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ValueError: bad item 'a'" in result.stderr


def test_a_node_failing_with_an_unprintable_exception(project: Path) -> None:
    (project / "unprintable_nodes.py").write_text(
        textwrap.dedent(
            """
            import nanostream

            class Unprintable:
                def __str__(self):
                    raise RuntimeError("no text")

            class Boom(nanostream.NanoNode):
                def process_item(self, item):
                    raise ValueError(Unprintable())
                    yield item
            """
        )
    )
    pipeline_file(
        project,
        """
        imports: [unprintable_nodes]
        nodes:
          words: {class: IterableSource, args: {iterable: [a]}}
          boom: Boom
        """,
    )
    result = run_cli("run", "pipeline.yaml", cwd=project)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "error: node 'boom' failed: ValueError: <unprintable ValueError: str() raised RuntimeError>"
    )


# --------------------------------------------------------------------------- Ctrl-C
def read_until(stream: IO[str], text: str, timeout: float = 30) -> str:
    """Read from ``stream`` until ``text`` appears (fails after ``timeout``).

    Reads the pipe's bytes one at a time, so nothing after ``text``'s line sits unseen in a
    buffer (``select`` would not see it) and ``communicate()`` later gets all the rest.
    """
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    seen = b""
    while text.encode() not in seen or not seen.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{text!r} did not appear; got {seen.decode()!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            byte = os.read(fd, 1)
            assert byte, f"the stream ended before {text!r}; got {seen.decode()!r}"
            seen += byte
    return seen.decode()


@pytest.fixture
def started(project: Path) -> Iterator[subprocess.Popen[str]]:
    processes: list[subprocess.Popen[str]] = []

    def start(text: str, *flags: str) -> subprocess.Popen[str]:
        pipeline_file(project, text)
        proc = subprocess.Popen(
            nanostream_cmd("run", "pipeline.yaml", *flags),
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        processes.append(proc)
        return proc

    yield start  # type: ignore[misc]
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


FOREVER = """
imports: [cli_test_nodes]
nodes:
  count: Counter
  announce: Announce
"""


def test_ctrl_c_stops_gracefully_and_drains(started: object) -> None:
    proc = started(FOREVER)  # type: ignore[operator]
    read_until(proc.stdout, "started")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err  # a graceful stop is a success
    assert "drained" in out  # the cleanup ran: the pipeline ended normally
    assert "stopping" in err and "nanostream: stopped" in err
    assert "Traceback" not in err


def test_sigterm_stops_gracefully_too(started: object) -> None:
    proc = started(FOREVER)  # type: ignore[operator]
    read_until(proc.stdout, "started")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "drained" in out and "nanostream: stopped" in err


def test_signal_exit_codes_on_request(started: object) -> None:
    proc = started(FOREVER, "--signal-exit-codes")  # type: ignore[operator]
    read_until(proc.stdout, "started")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "drained" in out and "nanostream: stopped" in err


def test_a_second_ctrl_c_aborts(started: object) -> None:
    proc = started(  # type: ignore[operator]
        """
        imports: [cli_test_nodes]
        nodes:
          stubborn: Stubborn
          announce: Announce
        """
    )
    read_until(proc.stdout, "started")
    proc.send_signal(signal.SIGINT)
    read_until(proc.stderr, "stopping")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "nanostream: aborting" in err and "nanostream: aborted" in err
    assert "drained" not in out  # aborted: no drain, no cleanup
    assert "Traceback" not in err


# --------------------------------------------------------------------------- examples
def test_the_csv_example_runs_on_a_fresh_clone(tmp_path: Path) -> None:
    out = tmp_path / "people.jsonl"
    result = run_cli("run", "examples/csv_to_jsonl.yaml", env={"OUT": str(out)})
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"name": "Ada Lovelace", "born": 1815, "field": "mathematics"}
    assert len(rows) == 6
    assert "Ada Lovelace" in result.stdout


COMPOSITE_DEFINITIONS = {"foo_message.yaml"}  # composite files (see the tests below)


@pytest.mark.parametrize(
    "example",
    sorted(p.name for p in EXAMPLES.glob("*.yaml") if p.name not in COMPOSITE_DEFINITIONS),
)
def test_every_example_pipeline_checks(example: str) -> None:
    result = run_cli("check", f"examples/{example}")
    assert result.returncode == 0, result.stderr
    assert ": ok: pipeline" in result.stdout


# --------------------------------------------------------------------------- composite files
def test_the_guides_composite_file_is_checked_drawn_and_run() -> None:
    # The guide's file as written: its classes come from a module, named with --import.
    result = run_cli("check", "examples/foo_message.yaml", "--import", "example_nodes")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "examples/foo_message.yaml: ok: composite 'FooMessageTester' (arguments: "
        "foo_interval=1), 2 nodes, 1 link, runner threads\n"
    )

    result = run_cli("check", "examples/foo_message.yaml")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "examples/foo_message.yaml:5:12: error: composite 'FooMessageTester', inner node "
        "'foo_generator': unknown class 'FooEmitter'"
    )

    result = run_cli("graph", "examples/foo_message.yaml", "--import", "example_nodes")
    assert result.returncode == 0, result.stderr
    assert 'subgraph c1["FooMessageTester (FooMessageTester)"]' in result.stdout
    assert "foo_generator" in result.stdout and "length_tester" in result.stdout

    # It emits forever: run it until it has started, then stop it with Ctrl-C.
    proc = subprocess.Popen(
        nanostream_cmd(
            "run",
            "examples/foo_message.yaml",
            "--import",
            "example_nodes",
            "--set",
            "foo_interval=0.01",
            "-v",
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        seen = read_until(proc.stderr, "started on the threads runner")
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, seen + err
    assert (
        "pipeline 'FooMessageTester' started on the threads runner: 2 nodes: "
        "FooMessageTester.foo_generator, FooMessageTester.length_tester" in seen
    )
    assert "nanostream: stopped" in err
    assert "node 'FooMessageTester.length_tester' finished:" in err


SHOUT_COMPOSITE = """
name: Shout
imports: [cli_test_nodes]
nodes:
  - name: words
    class: IterableSource
    arg_mapping: {iterable: words}
  - name: upper
    class: Upper
    frozen_arguments: {suffix: "!"}
  - name: show
    class: Print
    arg_mapping: null
"""


@pytest.mark.parametrize("runner", ["threads", "cooperative"])
def test_a_composite_file_runs_with_its_arguments_set(project: Path, runner: str) -> None:
    pipeline_file(project, SHOUT_COMPOSITE, name="shout.yaml")
    result = run_cli("run", "shout.yaml", "--set", "words=[a, b]", "--runner", runner, cwd=project)
    assert (result.returncode, result.stdout) == (0, "A!\nB!\n"), result.stderr
    assert "pipeline 'Shout' finished" in result.stderr

    result = run_cli("check", "shout.yaml", "--set", "words=[a]", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "shout.yaml: ok: composite 'Shout' (arguments: words), 3 nodes, 2 links, runner threads\n"
    )


@pytest.mark.parametrize("command", ["run", "check", "graph"])
def test_a_composite_files_arguments_missing_or_unknown(project: Path, command: str) -> None:
    pipeline_file(project, SHOUT_COMPOSITE, name="shout.yaml")
    result = run_cli(command, "shout.yaml", cwd=project)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "--set: error: composite 'Shout' needs its argument 'words': give it with "
        "--set words=VALUE (its arguments: words)\n"
    )

    result = run_cli(command, "shout.yaml", "--set", "wrds=[a]", cwd=project)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "--set wrds: error: composite 'Shout' has no argument 'wrds' (did you mean "
        "'words'?); its arguments: words\n"
    )


def test_a_composite_files_own_errors_have_their_line(project: Path) -> None:
    pipeline_file(project, SHOUT_COMPOSITE.replace("class: Upper", "class: Uper"), "shout.yaml")
    result = run_cli("check", "shout.yaml", "--set", "words=[a]", cwd=project)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "shout.yaml:8:12: error: composite 'Shout', inner node 'upper': unknown class 'Uper' "
        "(did you mean 'Upper'?)"
    )


# --------------------------------------------------------------------------- verbose
@pytest.mark.parametrize("runner", ["threads", "cooperative"])
def test_verbose_logs_the_start_and_each_nodes_counts_at_the_end(
    project: Path, runner: str
) -> None:
    path = pipeline_file(project, GOOD)
    result = run_cli("run", path, "-v", "--runner", runner)
    assert (result.returncode, result.stdout) == (0, "A!\nB!\n"), result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"nanostream: INFO: pipeline 'shout' started on the {runner} runner: 3 nodes: "
        "words, upper, show"
    )
    assert lines[-4:-1] == [
        "nanostream: INFO: node 'words' finished: 0 in, 2 out, 0 errors",
        "nanostream: INFO: node 'upper' finished: 2 in, 2 out, 0 errors",
        "nanostream: INFO: node 'show' finished: 2 in, 2 out, 0 errors",
    ]
    assert lines[-1].startswith("nanostream: pipeline 'shout' finished in ")

    result = run_cli("run", path)  # without -v, only the last line
    assert result.stderr.startswith("nanostream: pipeline 'shout' finished in "), result.stderr


# --------------------------------------------------------------------------- observe flags
def test_run_with_progress_and_json_logs(project: Path) -> None:
    path = pipeline_file(project, GOOD)
    result = run_cli("run", path, "--progress")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("A!\nB!\n")
    # not a terminal: the summary comes as plain lines, one per node
    summary = result.stdout.splitlines()[2:]
    assert any(line.split()[:2] == ["upper", "finished"] and "in=2" in line for line in summary)

    pipeline_file(
        project,
        """
        imports: [cli_test_nodes]
        nodes:
          words: {class: IterableSource, args: {iterable: [a]}}
          boom: Boom
        """,
        name="boom.yaml",
    )
    result = run_cli("run", "boom.yaml", "--log-json", cwd=project)
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any("boom" in record["message"] for record in records), result.stderr


def test_graph_with_stats_and_to_a_file(project: Path, tmp_path: Path) -> None:
    path = pipeline_file(project, GOOD)
    result = run_cli("graph", path, "--stats", "--format", "dot")
    assert result.returncode == 0, result.stderr
    assert '-> n1 [label="2"]' in result.stdout or 'label="2"' in result.stdout
    out = tmp_path / "graph.mmd"
    result = run_cli("graph", path, "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("flowchart LR")


def test_metrics_port_in_use_is_a_clear_error(project: Path) -> None:
    import socket

    path = pipeline_file(project, GOOD)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("run", path, "--metrics-port", str(port))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(port) in result.stderr


# --------------------------------------------------------------------------- web view, otel
def test_run_with_ui_serves_the_final_figures_until_ctrl_c(started: object) -> None:
    import urllib.request

    proc = started(GOOD, "--ui")  # type: ignore[operator]
    seen = read_until(proc.stderr, "web view of pipeline")
    match = re.search(r"web view of pipeline 'shout' at (http://127\.0\.0\.1:\d+/)", seen)
    assert match, seen
    # the event stream says when the run has ended
    with urllib.request.urlopen(match[1] + "api/events", timeout=30) as response:
        for line in response:
            if line.startswith(b"data: "):
                state = json.loads(line[len(b"data: ") :])
                if state["done"]:
                    break
    assert state["state"] == "finished"
    assert state["nodes"]["show"]["in"] == 2
    with urllib.request.urlopen(match[1] + "api/state", timeout=10) as response:
        assert json.load(response) == state  # still serving the final figures
    # the command says the view stays until Ctrl-C; a Ctrl-C before that line would have
    # come as the run ended, and closes the view at once
    seen = read_until(proc.stderr, "press Ctrl-C to exit")
    assert "its web view still shows the final figures" in seen
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == "A!\nB!\n"
    assert "Traceback" not in err


def test_a_ctrl_c_that_stopped_a_run_with_ui_also_closes_the_view(started: object) -> None:
    proc = started(FOREVER, "--ui")  # type: ignore[operator]
    read_until(proc.stdout, "started")
    proc.send_signal(signal.SIGINT)  # one Ctrl-C: drain, then exit without a second one
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "drained" in out and "nanostream: stopped" in err
    assert "still shows the final figures" not in err


def test_run_with_otel_exports_to_the_collector_the_environment_names(project: Path) -> None:
    from support import OTLPCollector

    pytest.importorskip("opentelemetry.sdk", reason="nanostream[otel] is in dev")
    collector = OTLPCollector()
    try:
        path = pipeline_file(project, GOOD)
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "cli-test"}
        result = run_cli("run", path, "--otel", env=env)
        assert result.returncode == 0, result.stderr
        assert "nanostream.run" in collector.span_names()
        assert collector.service_names() == {"cli-test"}

        # the same from the file's otel:
        text = GOOD + f"otel: {{endpoint: '{collector.url}', service_name: from-file}}\n"
        path = pipeline_file(project, text, name="traced.yaml")
        result = run_cli("run", path)
        assert result.returncode == 0, result.stderr
        assert "from-file" in collector.service_names()
    finally:
        collector.close()


def test_a_busy_ui_port_is_a_clear_error_and_the_run_does_not_go_on(project: Path) -> None:
    import socket

    path = pipeline_file(project, FOREVER)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("run", path, "--ui-port", str(port))  # returns: the run was aborted
    assert result.returncode == 1
    assert f"cannot serve the web view on 127.0.0.1:{port}" in result.stderr
    assert "choose another port" in result.stderr and "Traceback" not in result.stderr
