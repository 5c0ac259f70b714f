"""The progress view: a live table on a terminal, plain lines elsewhere, a summary at the end.

On a terminal the view is a ``rich`` table redrawn on every sample (twice a second by
default): per node its state, items in and out, rate, errors, how full its input queue is,
and the share of time it waited for input and for room downstream; the bottleneck is
marked. When the output is not a terminal (CI logs, files) the same figures are written as
plain lines every ``plain_interval`` seconds. Either way, a summary of the whole run is
printed when it ends.

The live table needs ``rich`` (``pip install 'nanostream[observe]'``); plain output does not.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from .._core.errors import require
from .._core.run import NodeStats, Run
from .sampling import NodeView, Sample

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

__all__ = [
    "Display",
    "LiveProgress",
    "PlainProgress",
    "RunSummary",
    "make_display",
]


_rich: Callable[[], Any] = partial(require, "rich", extra="observe")


@dataclass(frozen=True)
class RunSummary:
    """The end-of-run figures the summary shows: per-node totals, wall time, errors.

    Example:
        >>> import nanostream
        >>> from nanostream.observe import RunSummary
        >>> sink = nanostream.testing.Collect(name="sink")
        >>> nanostream.from_iterable(range(3), name="src") > sink
        Collect(name='sink')
        >>> run = sink.global_start(block=False, name="demo")
        >>> run.wait(10)
        True
        >>> summary = RunSummary.of(run)
        >>> summary.state, summary.errors, [n.items_in for n in summary.nodes]
        ('finished', 0, [0, 3])
    """

    pipeline: str
    state: str
    wall_s: float
    nodes: tuple[NodeStats, ...]
    failure: str | None = None

    @classmethod
    def of(cls, run: Run, now: float | None = None) -> RunSummary:
        """The summary of ``run`` as it stands (normally once it has ended)."""
        if run.finished_at is not None:
            end = run.finished_at
        else:
            end = now if now is not None else time.monotonic()
        failure = run.failure
        return cls(
            pipeline=run.name,
            state=run.state,
            wall_s=max(0.0, end - run.started_at),
            nodes=tuple(run.stats().values()),
            failure=str(failure) if failure is not None else None,
        )

    @property
    def errors(self) -> int:
        """Errors over all nodes."""
        return sum(n.errors for n in self.nodes)

    def text(self) -> str:
        """The summary as plain text lines.

        Example:
            >>> from nanostream.observe import RunSummary
            >>> print(RunSummary("demo", "finished", 2.0, ()).text())
            nanostream: pipeline 'demo' finished in 2.0s, 0 errors
        """
        head = (
            f"nanostream: pipeline {self.pipeline!r} {self.state} in {self.wall_s:.1f}s, "
            f"{self.errors} error{'' if self.errors == 1 else 's'}"
        )
        rows = [
            [
                n.name,
                n.state,
                f"in={n.items_in:,}",
                f"out={n.items_out:,}",
                f"errors={n.errors}",
                f"{_number(_avg_rate(n, self.wall_s))}/s",
                f"waited in {_pct(_share(n.blocked_input_s, self.wall_s))}"
                f" out {_pct(_share(n.blocked_output_s, self.wall_s))}",
            ]
            for n in self.nodes
        ]
        lines = [head, *_align(rows, indent="  ")]
        if self.failure:
            lines.append(f"  failure: {self.failure}")
        return "\n".join(lines)


class Display(Protocol):
    """What the observer drives: a view updated per sample and closed with a summary."""

    def update(self, sample: Sample) -> None:
        """Show the figures of one sample."""
        ...

    def finish(self, summary: RunSummary) -> None:
        """Stop updating and show the summary."""
        ...


class PlainProgress:
    """Progress as plain text lines, for output that is not a terminal.

    Writes one line per node every ``interval`` seconds (of run time) and the summary at
    the end.

    Example:
        >>> import io
        >>> from nanostream.observe import NodeView, PlainProgress, Sample
        >>> out = io.StringIO()
        >>> view = PlainProgress("demo", stream=out, interval=10)
        >>> node = NodeView("src", "running", True, 0, 1200, 0, 0, 0, 120.0, 0.0, 0.95, False)
        >>> view.update(Sample(elapsed=10.0, nodes=(node,)))
        >>> head, tail = out.getvalue().split(" errors")
        >>> head
        'nanostream [demo 10.0s] src running in=0 out=1,200 120/s'
        >>> tail
        '=0 queue=- waiting in 0% out 95%\\n'
    """

    def __init__(self, pipeline: str, *, stream: TextIO | None = None, interval: float = 10.0):
        self.pipeline = pipeline
        self.stream = stream
        self.interval = interval
        self._next = interval

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    def update(self, sample: Sample) -> None:
        """Write the figures if ``interval`` has passed since the last lines."""
        if sample.elapsed + 1e-9 < self._next:
            return
        while self._next <= sample.elapsed + 1e-9:
            self._next += self.interval
        prefix = f"nanostream [{self.pipeline} {sample.elapsed:.1f}s]"
        lines = [f"{prefix} {_plain_node(v)}" for v in sample.nodes]
        out = self._out()
        out.write("\n".join(lines) + "\n")
        out.flush()

    def finish(self, summary: RunSummary) -> None:
        """Write the summary."""
        out = self._out()
        out.write(summary.text() + "\n")
        out.flush()


def _plain_node(v: NodeView) -> str:
    queue = "-" if v.is_source else f"{v.queue_depth:,}/{v.queue_capacity:,}"
    text = (
        f"{v.name} {v.state} in={v.items_in:,} out={v.items_out:,} {_number(v.rate)}/s "
        f"errors={v.errors} queue={queue} "
        f"waiting in {_pct(v.wait_input)} out {_pct(v.wait_output)}"
    )
    return text + " <- bottleneck" if v.bottleneck else text


class LiveProgress:
    """The live ``rich`` table, redrawn on every sample; needs ``nanostream[observe]``.

    ``console`` is a ``rich.console.Console`` (by default one on standard output). With
    ``redirect`` (the default when no console is given), what is printed to standard
    output and standard error while the table is shown appears above it.

    Example:
        >>> import io
        >>> from rich.console import Console
        >>> from nanostream.observe import LiveProgress, NodeView, RunSummary, Sample
        >>> console = Console(file=io.StringIO(), force_terminal=True, width=120)
        >>> view = LiveProgress("demo", console=console)
        >>> node = NodeView("parse", "running", False, 10, 10, 0, 512, 1024, 5.0, 0.0, 0.0, True)
        >>> view.update(Sample(elapsed=1.0, nodes=(node,)))
        >>> view.finish(RunSummary("demo", "finished", 2.0, ()))
        >>> text = console.file.getvalue()
        >>> "bottleneck" in text and "50%" in text and "finished in 2.0s" in text
        True
    """

    def __init__(
        self, pipeline: str, *, console: Console | None = None, redirect: bool | None = None
    ) -> None:
        _rich()
        from rich.console import Console
        from rich.live import Live

        self.pipeline = pipeline
        own = console is None if redirect is None else redirect
        self.console: Console = Console() if console is None else console
        self._state = "running"
        self._live = Live(
            self._table(None),
            console=self.console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=own,
            redirect_stderr=own,
        )
        self._live.start(refresh=True)

    def update(self, sample: Sample) -> None:
        """Redraw the table with ``sample``."""
        self._live.update(self._table(sample), refresh=True)

    def log_handler(self, level: int = logging.INFO) -> logging.Handler:
        """A logging handler that prints records above the live table instead of through it.

        A handler writing to the terminal by itself would scramble the table; add this one
        to the ``nanostream`` logger (in place of yours) while the view is shown.

        Example:
            >>> import io, logging
            >>> from rich.console import Console
            >>> from nanostream.observe import LiveProgress, RunSummary
            >>> console = Console(file=io.StringIO(), force_terminal=True, width=80)
            >>> view = LiveProgress("demo", console=console)
            >>> handler = view.log_handler()
            >>> record = logging.LogRecord("nanostream", logging.WARNING, "", 0, "hi", None, None)
            >>> handler.handle(record)
            True
            >>> view.finish(RunSummary("demo", "finished", 1.0, ()))
            >>> "WARNING nanostream: hi" in console.file.getvalue()
            True
        """
        return _ConsoleHandler(self.console, level)

    def finish(self, summary: RunSummary) -> None:
        """Remove the live table and print the summary table."""
        self._live.stop()
        self.console.print(_summary_table(summary))

    def _table(self, sample: Sample | None) -> Table:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        elapsed = f" · {sample.elapsed:.1f}s" if sample is not None else ""
        table = Table(
            title=f"nanostream · {self.pipeline}{elapsed}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1, 0, 0),
            pad_edge=False,
        )
        table.add_column("node", overflow="ellipsis", no_wrap=True, min_width=6)
        table.add_column("state", no_wrap=True)
        for name in ("in", "out", "rate/s", "err"):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("input queue", no_wrap=True)
        table.add_column("wait in/out", justify="right", no_wrap=True)
        if sample is None:
            return table
        for v in sample.nodes:
            if v.is_source:
                queue = Text("(source)", style="dim")
            else:
                queue = _bar(v.queue_fill, 6)
                queue.append(f" {_pct(v.queue_fill):>4}")
            label = Text(v.name)
            if v.bottleneck:
                label = Text.assemble((v.name, "bold red"), (" ◀", "bold red"))
            table.add_row(
                label,
                Text(v.state, style=_STATE_STYLE.get(v.state, "")),
                _number(v.items_in),
                _number(v.items_out),
                _number(v.rate),
                Text(str(v.errors), style="red" if v.errors else ""),
                queue,
                f"{_pct(v.wait_input)}/{_pct(v.wait_output)}",
            )
        b = sample.bottleneck
        if b is not None:
            table.caption = (
                f"◀ bottleneck: {b.name} (busy {_pct(b.busy)} of the time"
                + ("" if b.is_source else f", input queue {_pct(b.queue_fill)} full")
                + ")"
            )
            table.caption_justify = "left"
            table.caption_style = "bold red"
        return table


def _bar(fill: float, width: int) -> Text:
    from rich.text import Text

    filled = round(fill * width)
    style = "red" if fill >= 0.9 else "yellow" if fill >= 0.5 else "green"
    bar = Text("━" * filled, style=style)
    bar.append("━" * (width - filled), style="bright_black")
    return bar


class _ConsoleHandler(logging.Handler):
    def __init__(self, console: Console, level: int) -> None:
        super().__init__(level)
        self.console = console
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001  # pragma: no cover - as logging.StreamHandler does
            self.handleError(record)


_STATE_STYLE = {"running": "green", "finished": "blue", "failed": "bold red", "aborted": "yellow"}


def _summary_table(summary: RunSummary) -> Table:
    from rich.table import Table
    from rich.text import Text

    errors = summary.errors
    table = Table(
        title=(
            f"nanostream · pipeline {summary.pipeline!r} {summary.state} in "
            f"{summary.wall_s:.1f}s, {errors} error{'' if errors == 1 else 's'}"
        ),
        title_justify="left",
        caption=f"failure: {summary.failure}" if summary.failure else None,
        caption_justify="left",
        caption_style="bold red",
    )
    for name, justify in [
        ("node", "left"),
        ("state", "left"),
        ("in", "right"),
        ("out", "right"),
        ("errors", "right"),
        ("items/s", "right"),
        ("waited in", "right"),
        ("waited out", "right"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for n in summary.nodes:
        table.add_row(
            n.name,
            Text(n.state, style=_STATE_STYLE.get(n.state, "")),
            f"{n.items_in:,}",
            f"{n.items_out:,}",
            Text(str(n.errors), style="red" if n.errors else ""),
            _number(_avg_rate(n, summary.wall_s)),
            _pct(_share(n.blocked_input_s, summary.wall_s)),
            _pct(_share(n.blocked_output_s, summary.wall_s)),
        )
    return table


def make_display(
    pipeline: str,
    *,
    stream: TextIO | None = None,
    force_terminal: bool | None = None,
    plain_interval: float = 10.0,
    width: int | None = None,
) -> Display:
    """The right view for ``stream`` (standard output by default).

    A terminal gets the live table (:class:`LiveProgress`); anything else, or a ``dumb``
    terminal, gets :class:`PlainProgress`. ``force_terminal`` overrides the detection.

    Example:
        >>> import io
        >>> from nanostream.observe import make_display
        >>> type(make_display("demo", stream=io.StringIO())).__name__
        'PlainProgress'
    """
    target = stream if stream is not None else sys.stdout
    if force_terminal is None:
        isatty = getattr(target, "isatty", None)
        terminal = bool(isatty and isatty()) and os.environ.get("TERM") not in ("dumb",)
    else:
        terminal = force_terminal
    if not terminal:
        return PlainProgress(pipeline, stream=stream, interval=plain_interval)
    _rich()
    from rich.console import Console

    console = None
    if stream is not None or width is not None or force_terminal is not None:
        console = Console(file=stream, force_terminal=True, width=width)
    return LiveProgress(pipeline, console=console, redirect=stream is None)


# ----------------------------------------------------------------- formatting
def _number(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.1f}M"
    if x >= 1e4:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    if x >= 10 or x == 0:
        return f"{x:.0f}"
    return f"{x:.1f}"


def _pct(share: float) -> str:
    return f"{round(100 * share)}%"


def _share(seconds: float, wall: float) -> float:
    return min(1.0, seconds / wall) if wall > 0 else 0.0


def _avg_rate(n: NodeStats, wall: float) -> float:
    items = n.items_out if n.queue_capacity == 0 else n.items_in
    return items / wall if wall > 0 else 0.0


def _align(rows: list[list[str]], indent: str) -> list[str]:
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
