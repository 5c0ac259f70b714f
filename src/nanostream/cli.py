"""The ``nanostream`` command: run, check and draw pipelines described in YAML files.

A thin layer over the public API (:func:`nanostream.config.read_config`,
``PipelineSpec.build``, ``Pipeline.start``). FILE is a pipeline file or a composite
configuration (a ``class_factory`` file), which runs as a pipeline of that one composite.
Exit status: 0 on success, 1 when the file is wrong or a node failed, 2 for a wrong
command line (also a ``--set`` naming no node or argument), 130 when aborted with a
second Ctrl-C; 0 after a graceful stop by Ctrl-C or SIGTERM (130 or 143 with
--signal-exit-codes).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import click
import yaml

from ._core.errors import ConfigError, NanoStreamError, NodeFailed
from ._core.graph import Pipeline, Plan, pipeline_of
from ._core.redact import exception_text
from ._core.run import Run, RunOptions
from .config import ConfigErrors, ConfiguredComposite, PipelineSpec, read_config
from .config._common import close_matches, typed_scalar
from .config._convert import convert_set_arguments

if TYPE_CHECKING:
    from .observe.otel import Telemetry
    from .observe.web import WebView

__all__ = ["main"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_POLL_S = 0.05  # how often a running pipeline's CLI looks for Ctrl-C / SIGTERM
EXIT_STOPPED = -1  # internal: stopped gracefully by a signal (exit 0, or 128 + signal)

_EPILOG = """\b
A pipeline file looks like this (see docs/config.md):
\b
    nodes:
      files: {class: IterableSource, args: {iterable: [people.csv]}}
      rows:  {class: CSVReader, args: {paths: true}}
      write: {class: JSONLinesWriter, args: {path: "${OUT:-people.jsonl}"}}
    chain: [files, rows, write]
\b
FILE may also be a composite configuration (a class_factory file, see
docs/composite.md): it runs as a pipeline of that one composite, whose own
arguments are set with --set NAME=VALUE.
\b
Examples (from the repository root):
    nanostream check examples/csv_to_jsonl.yaml
    nanostream run examples/csv_to_jsonl.yaml --set rows.infer_types=false
    nanostream run examples/foo_message.yaml --import example_nodes --set foo_interval=1 -v
    nanostream graph examples/foo_messages.yaml --format svg -o pipeline.svg
\b
Exit status: 0 success (also after a graceful stop by Ctrl-C or SIGTERM; 130/143
with --signal-exit-codes), 1 invalid file or failed node, 2 bad command line,
130 aborted by a second Ctrl-C.
"""


def _parse_set(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> list[tuple[str, Any]]:
    parsed = []
    for item in values:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"{item!r}: write NODE.ARGUMENT=VALUE, e.g. --set read.path=data.csv (or "
                "NAME=VALUE for a composite file's own argument)",
                ctx,
                param,
            )
        value: Any = typed_scalar(text)
        if text.lstrip().startswith(("[", "{")):
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                raise click.BadParameter(
                    f"{item!r}: the value is not a valid YAML list or mapping", ctx, param
                ) from None
        parsed.append((key.strip(), value))
    return parsed


_set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="NODE.ARG=VALUE",
    callback=_parse_set,
    help="Set argument ARG of node NODE, replacing the file's value; repeat as needed. "
    "For a composite file, --set NAME=VALUE sets the composite's argument NAME. "
    "VALUE is typed as in YAML: 10 is a number, true a boolean, null nothing, [1, 2] a "
    "list, {a: 1} a mapping; anything else is a string.",
)
_import_option = click.option(
    "--import",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="Import MODULE (found next to FILE too) before building, as if listed under the "
    "file's 'imports:'; repeat as needed. E.g. the module defining a composite file's "
    "node classes.",
)
_debug_option = click.option(
    "--debug", is_flag=True, help="Show full tracebacks and debug logging."
)
_file_argument = click.argument("file", type=click.Path(dir_okay=False, path_type=str))


@click.group(epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nanostream", prog_name="nanostream")
def cli() -> None:
    """Run stream-processing pipelines described in YAML files.

    Each node of the pipeline runs in its own thread, with bounded queues between nodes.
    Start with 'nanostream check FILE' to validate a file, then 'nanostream run FILE'.
    """


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``nanostream`` command (and ``python -m nanostream``).

    Example:
        >>> from nanostream.cli import main
        >>> try:
        ...     main(["--version"])
        ... except SystemExit as exc:
        ...     print("exit status", exc.code)
        nanostream, version ...
        exit status 0
    """
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="nanostream")
    except KeyboardInterrupt:
        click.echo("nanostream: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


# --------------------------------------------------------------------------- commands
@cli.command()
@_file_argument
@_set_option
@_import_option
@click.option(
    "--runner",
    type=click.Choice(["threads", "cooperative", "ray"]),
    default=None,
    help="How to run the nodes: 'threads' (one thread per node, the default), "
    "'cooperative' (all nodes on one thread) or 'ray' (each node a Ray actor; needs "
    "nanostream[ray]). Overrides the file's 'runner:'.",
)
@click.option(
    "--address",
    default=None,
    metavar="ADDRESS",
    help="With --runner ray: the cluster to use, e.g. ray://head:10001 (default: "
    "$RAY_ADDRESS, else a local Ray started for this run).",
)
@click.option(
    "--progress",
    is_flag=True,
    help="Show a live table of every node (items, rates, queues, the bottleneck) and a "
    "summary at the end; plain lines when the output is not a terminal.",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    metavar="PORT",
    help="Serve Prometheus metrics on this port while the pipeline runs (e.g. 9108).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    metavar="HOST",
    show_default=True,
    help="The address the metrics endpoint listens on.",
)
@click.option(
    "--ui",
    is_flag=True,
    help="Serve a live web page of the run (graph, rates, queues, the bottleneck, errors, a "
    "stop button) and print its address; it shows the final figures after the run, until "
    "Ctrl-C.",
)
@click.option(
    "--ui-port",
    type=click.IntRange(0, 65535),
    default=None,
    metavar="PORT",
    help="The web view's port (implies --ui; default: any free port).",
)
@click.option(
    "--ui-host",
    default="127.0.0.1",
    metavar="HOST",
    show_default=True,
    help="The address the web view listens on (implies --ui).",
)
@click.option(
    "--otel",
    is_flag=True,
    help="Export metrics and spans over OpenTelemetry (OTLP/HTTP, configured by the OTEL_* "
    "environment variables; needs nanostream[otel]). A file's 'otel:' does the same.",
)
@click.option(
    "--state",
    default=None,
    metavar="PATH",
    help="Keep the run's state in PATH (a SQLite file, or a SQLAlchemy URL such as "
    "postgresql+psycopg://host/db) and take checkpoints there; a restart with the same "
    "PATH resumes from the last one (see docs/state.md). Overrides the file's 'state'.",
)
@click.option(
    "--checkpoint-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="With --state: seconds between checkpoints (default 5).",
)
@click.option(
    "--checkpoint-unaligned/--checkpoint-aligned",
    default=None,
    help="With --state: let checkpoints overtake the items queued between nodes, keeping "
    "them in the checkpoint, so that one completes in about an interval even behind a "
    "backlog (--checkpoint-unaligned), or let them follow the items "
    "(--checkpoint-aligned). Default: unaligned on the threads and cooperative runners, "
    "aligned on ray and with options: checkpoint_items; the run logs which (see "
    "docs/state.md).",
)
@click.option(
    "--drop-state",
    is_flag=True,
    help="With --state: start afresh the nodes whose stored state no longer fits the "
    "pipeline (renamed or changed nodes), instead of refusing to start.",
)
@click.option(
    "--share-cores/--no-share-cores",
    default=None,
    help="On the threads runner: let the node threads that only compute share one core "
    "whatever the machine's load (--share-cores), or never (--no-share-cores). Default: "
    "while the machine has room. Overrides the file's options: share_cores.",
)
@click.option("--log-json", is_flag=True, help="Write log lines as JSON objects.")
@click.option(
    "--signal-exit-codes",
    is_flag=True,
    help="After a graceful stop by Ctrl-C or SIGTERM, exit 130 or 143 instead of 0.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log the nodes started, per-node counts every log_interval seconds (30 by "
    "default) and each node's counts at the end.",
)
@_debug_option
@click.pass_context
def run(
    ctx: click.Context,
    *,
    file: str,
    overrides: list[tuple[str, Any]],
    imports: tuple[str, ...],
    runner: str | None,
    address: str | None,
    progress: bool,
    metrics_port: int | None,
    metrics_host: str,
    ui: bool,
    ui_port: int | None,
    ui_host: str,
    otel: bool,
    state: str | None,
    checkpoint_interval: float | None,
    checkpoint_unaligned: bool | None,
    drop_state: bool,
    share_cores: bool | None,
    log_json: bool,
    signal_exit_codes: bool,
    verbose: bool,
    debug: bool,
) -> None:
    """Run the pipeline described in FILE until its sources end.

    Press Ctrl-C once to stop gracefully: the sources stop and what is already in the
    pipeline drains to the sinks. Press Ctrl-C again to abort at once. SIGTERM stops
    gracefully too. If a node fails, the run stops and the error names the node.
    """
    _setup_logging(verbose, debug)
    if log_json:
        from .observe import configure_logging

        configure_logging(logging.DEBUG if debug else logging.INFO, json_lines=True)
    with _signals() as signals:
        signals.release()  # from here on, SIGTERM is a Ctrl-C too
        try:
            loaded = _load(file, overrides, imports)
        except KeyboardInterrupt:
            click.echo("nanostream: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - reported as one paragraph, not a traceback
            ctx.exit(_report(exc, debug))
        started = time.monotonic()
        # A Ctrl-C while the run starts is held back, and acted on once it has started.
        signals.hold()
        pipeline = loaded.pipeline
        web: WebView | None = None
        try:
            chosen = runner or loaded.runner or "threads"
            runner_obj: Any = chosen
            if chosen == "ray" and address is not None:
                from .runners.ray import RayRunner

                runner_obj = RayRunner(address=address)
            wants_ui = ui or ui_port is not None or ui_host != "127.0.0.1"
            telemetry = _telemetry(otel, loaded.otel)
            observed = progress or metrics_port is not None or wants_ui or telemetry is not None
            if observed:
                from .observe import attach  # before the nodes start: it sees them from the start
            options = dict(loaded.options)
            if state is not None:
                options["state"] = state
            if checkpoint_interval is not None:
                options["checkpoint_interval"] = checkpoint_interval
            if checkpoint_unaligned is not None:
                options["checkpoint_unaligned"] = checkpoint_unaligned
            if drop_state:
                options["drop_state"] = True
            if share_cores is not None:
                options["share_cores"] = share_cores
            handle = pipeline.start(runner=runner_obj, **options)
            names = list(handle.stats())
            _log.info(
                "pipeline %r started on the %s runner: %s: %s",
                pipeline.name,
                chosen,
                _count(len(names), "node"),
                ", ".join(names),
            )
            if observed:
                try:
                    observer = attach(
                        handle,
                        progress=progress,
                        metrics_port=metrics_port,
                        metrics_host=metrics_host,
                        ui=(ui_port if ui_port is not None else True) if wants_ui else None,
                        ui_host=ui_host,
                        otel=telemetry,
                    )
                except BaseException:
                    handle.abort()  # a run nobody can watch as asked: reported, not left going
                    raise
                web = observer.web
                display_handler = getattr(getattr(observer, "display", None), "log_handler", None)
                if progress and callable(display_handler):
                    _use_log_handler(display_handler())
        except Exception as exc:  # noqa: BLE001 - reported as one paragraph
            ctx.exit(_report(exc, debug))
        # Signals stay held while the run lives: _wait polls for them, so no
        # KeyboardInterrupt can land between two statements of this code.
        code = _wait(handle, debug, signals)
        _log_final_counts(handle)
        if code == EXIT_STOPPED:
            code = 128 + signals.last if signal_exit_codes else 0
        elapsed = time.monotonic() - started
        if code == 0:
            click.echo(
                f"nanostream: pipeline {pipeline.name!r} finished in {elapsed:.2f} s", err=True
            )
        if web is not None:
            _serve_final_figures(web, signals)
    ctx.exit(code)


@cli.command()
@_file_argument
@_set_option
@_import_option
@_debug_option
@click.pass_context
def check(
    ctx: click.Context,
    *,
    file: str,
    overrides: list[tuple[str, Any]],
    imports: tuple[str, ...],
    debug: bool,
) -> None:
    """Check FILE without running it.

    Checks the YAML syntax, the file's structure, that every class can be found and
    accepts its arguments, that the nodes can be built and linked, and that the graph has
    no cycle. Each problem is reported as FILE:LINE:COLUMN: error: what is wrong and what
    to do. For a composite file, also lists the composite's arguments.
    """
    try:
        loaded = _load(file, overrides, imports)
        plan = loaded.pipeline.plan()
    except Exception as exc:  # noqa: BLE001 - reported as one paragraph, not a traceback
        ctx.exit(_report(exc, debug))
    what = f"pipeline {loaded.pipeline.name!r}"
    if loaded.composite is not None:
        what = f"composite {loaded.composite.__name__!r} ({_arguments(loaded.composite)})"
    line = (
        f"{file}: ok: {what}, {_count(len(plan.nodes), 'node')}, "
        f"{_count(len(plan.edges), 'link')}, runner {loaded.runner or 'threads'}"
    )
    if loaded.options.get("state") is not None:
        try:
            line += f", {_checkpoints(loaded, plan)}"
        except Exception as exc:  # noqa: BLE001 - reported as one paragraph, not a traceback
            ctx.exit(_report(exc, debug))
    click.echo(line)


def _checkpoints(loaded: _Loaded, plan: Plan) -> str:
    """Which checkpoints a run of the file with its ``state:`` takes, and why."""
    from ._core.checkpointing import choose_checkpoints, describe_checkpoints
    from ._core.errors import MissingDependencyError
    from ._core.registry import get_runner

    name = loaded.runner or "threads"
    try:
        runner: Any = get_runner(name)
    except MissingDependencyError:  # the ray runner without ray: it takes aligned ones
        runner = SimpleNamespace(name=name)
    plan = dataclasses.replace(plan, options=RunOptions.from_kwargs(**loaded.options))
    chosen = plan.options.checkpoint_unaligned
    return describe_checkpoints(choose_checkpoints(plan, runner), runner, chosen)


@cli.command()
@_file_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "png", "svg"]),
    default="mermaid",
    show_default=True,
    help="'mermaid' (paste into Markdown, e.g. on GitHub), 'dot' (Graphviz text), or a "
    "picture, 'png' or 'svg' (needs Graphviz: apt-get install graphviz).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write to this file instead of standard output (a PNG goes to standard output as "
    "bytes otherwise).",
)
@click.option(
    "--stats",
    is_flag=True,
    help="Run the pipeline to its end first, and show each link's item count.",
)
@_set_option
@_import_option
@_debug_option
@click.pass_context
def graph(
    ctx: click.Context,
    *,
    file: str,
    fmt: str,
    output: str | None,
    stats: bool,
    overrides: list[tuple[str, Any]],
    imports: tuple[str, ...],
    debug: bool,
) -> None:
    """Print the pipeline's graph: Mermaid or Graphviz text, or a PNG/SVG picture.

    Nodes are labelled with their name and class; composite nodes are drawn as clusters
    of their inner nodes, named composite.inner, as they run. With --stats the pipeline
    runs first and every link shows how many items passed.
    """
    from .observe.draw import draw

    try:
        loaded = _load(file, overrides, imports)
        finished = None
        if stats:
            finished = loaded.pipeline.start(runner=loaded.runner or "threads", **loaded.options)
            finished.wait()
        picture = draw(loaded.pipeline, format=fmt, stats=finished)
    except Exception as exc:  # noqa: BLE001 - reported as one paragraph, not a traceback
        ctx.exit(_report(exc, debug))
    data = picture if isinstance(picture, bytes) else str(picture).encode()
    if output is not None:
        with open(output, "wb") as out:
            out.write(data if isinstance(picture, bytes) else data + b"\n")
    elif isinstance(picture, bytes):
        sys.stdout.buffer.write(picture)
    else:
        click.echo(picture)


# --------------------------------------------------------------------------- helpers
_log = logging.getLogger("nanostream.cli")
_SET = "--set"  # the location of an error in the command line's --set options
_IMPORT = "--import"


@dataclass
class _Loaded:
    """What FILE describes, built: the pipeline, and how the file asks to run it."""

    pipeline: Pipeline
    runner: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    composite: type[ConfiguredComposite] | None = None  # FILE is this composite's file
    otel: dict[str, str] | None = None  # the file's otel: settings


@cli.group(name="state")
def state_group() -> None:
    """Look into a state store (see docs/state.md)."""


@state_group.command(name="show")
@click.argument("store", metavar="FILE")
@click.pass_context
def state_show(ctx: click.Context, *, store: str) -> None:
    """List what the state store FILE (a path, or a SQLAlchemy URL) holds: its last
    checkpoint, and each node's class, size and state."""
    from .state import describe

    if "://" not in store and not os.path.exists(store):
        click.echo(f"nanostream: error: there is no state store at {store}", err=True)
        ctx.exit(EXIT_FAILED)
    try:
        click.echo(describe(store))
    except Exception as exc:  # noqa: BLE001 - reported as one paragraph, not a traceback
        ctx.exit(_report(exc, False))


def _load(file: str, overrides: list[tuple[str, Any]], imports: Sequence[str]) -> _Loaded:
    config = read_config(file, imports=imports)
    if isinstance(config, PipelineSpec):
        for key, value in overrides:
            if "." not in key.strip("."):
                raise ConfigError(
                    f"{key!r} names no node: write NODE.ARGUMENT=VALUE with a node of: "
                    f"{', '.join(config.nodes)}",
                    location=f"{_SET} {key}",
                )
            config.override(key, value)
        return _Loaded(config.build(), config.runner, config.options, otel=config.otel)
    return _Loaded(_composite_pipeline(config, dict(overrides)), composite=config)


def _composite_pipeline(cls: type[ConfiguredComposite], given: dict[str, Any]) -> Pipeline:
    """A pipeline of one ``cls`` node, made with the ``--set`` arguments ``given``."""
    name = cls.__name__
    known = ", ".join(cls.arguments) or "none"
    for key in given:
        if key not in cls.arguments:
            raise ConfigError(
                f"composite {name!r} has no argument {key!r}"
                f"{close_matches(key, cls.arguments)}; its arguments: {known}",
                location=f"{_SET} {key}",
            )
    missing = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.default is p.empty and p.name not in given
    ]
    if missing:
        raise ConfigError(
            f"composite {name!r} needs its argument {missing[0]!r}: give it with "
            f"--set {missing[0]}=VALUE (its arguments: {known})",
            location=_SET,
        )
    given = convert_set_arguments(cls, given, f"composite {name!r}")  # by annotation
    pipeline = pipeline_of(cls(name=name, **given))
    pipeline.name = name
    return pipeline


def _arguments(cls: type[ConfiguredComposite]) -> str:
    """The composite's arguments as the command line sets them, with their defaults."""
    params = [p for p in inspect.signature(cls).parameters.values() if p.name != "name"]
    if not params:
        return "no arguments"
    return "arguments: " + ", ".join(
        p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params
    )


def _log_final_counts(run: Run) -> None:
    """With -v: one INFO line per node, with its state and counts, when the run ends."""
    if not _log.isEnabledFor(logging.INFO):
        return
    for stats in run.stats().values():
        _log.info(
            "node %r %s: %d in, %d out, %s",
            stats.name,
            stats.state,
            stats.items_in,
            stats.items_out,
            _count(stats.errors, "error"),
        )


def _use_log_handler(handler: logging.Handler | None) -> None:
    """Send nanostream's log lines through ``handler`` (the live view's), not stderr."""
    if handler is None:
        return
    logger = logging.getLogger("nanostream")
    for old in list(logger.handlers):
        if isinstance(old, logging.StreamHandler):
            handler.setLevel(old.level)
            handler.setFormatter(old.formatter)
            logger.removeHandler(old)
    logger.addHandler(handler)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _wait(run: Run, debug: bool, signals: _Signals) -> int:
    """Wait for the run: a first signal stops it gracefully, a second one aborts it."""
    handled = 0
    while True:
        try:
            if run.wait(timeout=_POLL_S):
                break
        except NodeFailed as exc:
            return _report(exc, debug)
        if signals.count > handled:
            handled = signals.count
            if handled == 1:
                _stopping(run)
            else:
                click.echo("nanostream: aborting", err=True)
                run.abort()
                break
    if run.state == "aborted":
        click.echo("nanostream: aborted", err=True)
        return EXIT_INTERRUPTED
    if signals.count:
        click.echo("nanostream: stopped", err=True)
        return EXIT_STOPPED
    return 0


def _telemetry(flag: bool, settings: dict[str, str] | None) -> Telemetry | None:
    """The OTLP telemetry ``--otel`` or the file's ``otel:`` asks for, or None."""
    if not flag and settings is None:
        return None
    from .observe.otel import Telemetry

    return Telemetry.otlp(**(settings or {}))


def _serve_final_figures(web: WebView, signals: _Signals) -> None:
    """Keep the web view's final figures on show until Ctrl-C (or SIGTERM), then close it.

    A Ctrl-C that came while the run was ending (it stopped the run, or came just as the
    run finished) already asked to exit: the view closes at once.
    """
    if signals.count:
        web.close()
        return
    click.echo(
        f"nanostream: the run has ended; its web view still shows the final figures at "
        f"{web.url} (press Ctrl-C to exit)",
        err=True,
    )
    while not signals.count and not web.wait_closed(_POLL_S):
        pass
    web.close()


def _stopping(run: Run) -> None:
    click.echo(
        "nanostream: stopping: the sources stop and what is in flight drains to the sinks "
        "(press Ctrl-C again to abort)",
        err=True,
    )
    run.request_stop()


def _report(exc: BaseException, debug: bool) -> int:
    """Print ``exc`` as a short error message (a traceback too with --debug).

    Returns the exit status: 2 (a usage error) when an error is in the command line's
    ``--set`` or ``--import`` options, else 1.
    """
    code = EXIT_FAILED
    if isinstance(exc, ConfigError):
        errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        for error in errors:
            click.echo(_config_line(error), err=True)
        if any(_in_command_line(error) for error in errors):
            code = EXIT_USAGE
    elif isinstance(exc, NodeFailed):
        click.echo(_failure_paragraph(exc, debug), err=True)
    elif isinstance(exc, NanoStreamError):
        click.echo(f"error: {exc}", err=True)
    else:
        click.echo(
            f"error: unexpected {exception_text(exc)}"
            + ("" if debug else " (run with --debug to see the traceback)"),
            err=True,
        )
    if debug:
        traceback.print_exception(exc)
    return code


def _in_command_line(error: ConfigError) -> bool:
    """Whether ``error`` is in a --set or --import option rather than in the file."""
    location = error.location or ""
    return any(location == opt or location.startswith(opt + " ") for opt in (_SET, _IMPORT))


def _config_line(error: ConfigError) -> str:
    if error.location:
        return f"{error.location}: error: {error.message}"
    return f"error: {error.message}"


def _failure_paragraph(exc: NodeFailed, debug: bool) -> str:
    cause = exc.__cause__
    lines = [f"error: {exc}"]
    frames = traceback.extract_tb(cause.__traceback__) if cause is not None else []
    if frames:
        last = frames[-1]
        lines.append(f"  raised at {last.filename}:{last.lineno}, in {last.name}")
    lines.append(
        "  The pipeline was stopped."
        + ("" if debug else " Run again with --debug to see the full traceback.")
    )
    return "\n".join(lines)


class _NoFailureRecords(logging.Filter):
    """Drops the run's own 'node failed' log line: the CLI reports the failure itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("node %r failed"))


def _setup_logging(verbose: bool, debug: bool) -> None:
    logger = logging.getLogger("nanostream")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("nanostream: %(levelname)s: %(message)s"))
    if not debug:
        handler.addFilter(_NoFailureRecords())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


class _Signals:
    """SIGINT and SIGTERM for ``run``: both raise KeyboardInterrupt, or are held back."""

    def __init__(self) -> None:
        self.held = False
        self.count = 0  # signals received while held
        self.last: int = signal.SIGINT  # the last signal received
        self.previous: dict[int, Any] = {}

    def _raise(self, signum: int, frame: Any) -> None:
        self.last = signum
        raise KeyboardInterrupt

    def _hold(self, signum: int, frame: Any) -> None:
        self.last = signum
        self.held = True
        self.count += 1

    def _set(self, handler: Any) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                previous = signal.signal(signum, handler)
            except ValueError:  # pragma: no cover - not the main thread
                return
            self.previous.setdefault(signum, previous)

    def hold(self) -> None:
        self._set(self._hold)

    def release(self) -> None:
        self._set(self._raise)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


@contextmanager
def _signals() -> Iterator[_Signals]:
    signals = _Signals()
    try:
        yield signals
    finally:
        signals.restore()
