"""Per-node error policies: what happens when a node's work on one item raises.

A node's options choose the policy (``node.configure(on_error=..., ...)`` or the same keys
in a pipeline file):

- ``on_error="fail"`` (the default): the exception ends the node and fails the run.
- ``on_error="skip"``: the item is dropped (logged, counted in ``NodeStats.errors``) and the
  node goes on with the next one.
- ``on_error="retry"``: the item is tried again up to ``retries`` more times (default 3),
  waiting ``backoff * 2**(n-1)`` seconds before the n-th retry (default ``backoff=0.1``,
  at most 30 s, with random jitter of up to half the delay); if every attempt fails, the
  item is skipped as above.
- ``timeout``: seconds one attempt may take (any policy); a slower attempt fails with
  ``TimeoutError``. The attempt's own measured duration decides, whatever the load: a
  timer thread interrupts an attempt still running past its deadline, and an attempt
  that ends past it fails too, even when the timer had no chance to fire.
- ``max_errors``: the run fails (:class:`~nanostream.TooManyErrors`) once more than this
  many items of the node have failed for good.
- ``max_error_rate``: the run fails once more than this fraction of the node's last 100
  items failed for good (of all its items, when it has seen fewer than 100 by its end).

Every item that fails for good produces an :class:`ErrorRecord`, emitted on the node's
``errors`` port when that port is linked (``node.errors > dead_letters``).

A polling source (one that declares ``policy_per_poll = True``) applies the same policy to
each poll instead of each item, with :class:`PollGuard`: a poll that fails for good is
recorded and counted the same way, and the source goes on with its next poll.

An attempt's outputs are held back until it succeeds, so a failed item leaves no partial
output and a retried one no duplicate. An item with more than ``STREAM_AFTER`` outputs
streams the rest; if it fails after that, it is not retried (its outputs so far stay
emitted) and its record says so.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from itertools import islice
from typing import Any

from .context import NodeContext
from .errors import TooManyErrors
from .ports import TaggedOutput
from .redact import exception_text, redact
from .signals import SourceStopped, clear_async_exception, raise_async_exception

__all__ = [
    "POLICY_OPTIONS",
    "ErrorPolicy",
    "ErrorRecord",
    "ItemGuard",
    "PollGuard",
    "back_off",
    "backoff_delay",
    "check_policy_option",
]

log = logging.getLogger("nanostream")

ON_ERROR = ("fail", "skip", "retry")
POLICY_OPTIONS = ("on_error", "retries", "backoff", "timeout", "max_errors", "max_error_rate")
"""The node options that make up an error policy."""

MAX_BACKOFF_S = 30.0
RATE_WINDOW = 100
STREAM_AFTER = 1024
LOGGED_PER_NODE = 10

_clock = time.monotonic
"""The clock that times attempts (one name, so that a test can stand in for it)."""


def check_policy_option(key: str, value: Any) -> str | None:  # noqa: PLR0911
    """An error message if ``value`` is not valid for the policy option ``key``, else None.

    Example:
        >>> from nanostream._core.policy import check_policy_option
        >>> check_policy_option("on_error", "skip") is None
        True
        >>> check_policy_option("retries", -1)
        'retries must be an integer >= 0, got -1'
    """
    if value is None:
        return None if key != "on_error" else "on_error must be 'fail', 'skip' or 'retry'"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key == "on_error":
        if value not in ON_ERROR:
            return f"on_error must be 'fail', 'skip' or 'retry', got {value!r}"
    elif key in ("retries", "max_errors"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{key} must be an integer >= 0, got {value!r}"
    elif key == "backoff":
        if not number or not math.isfinite(value) or value < 0:
            return f"backoff must be a number of seconds >= 0, got {value!r}"
    elif key == "timeout":
        if not number or not math.isfinite(value) or value <= 0:
            return f"timeout must be a number of seconds > 0, got {value!r}"
    elif key == "max_error_rate":
        if not number or not 0 <= value <= 1:
            return f"max_error_rate must be a fraction between 0 and 1, got {value!r}"
    else:
        return f"{key!r} is not an error policy option"
    return None


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the one back-off formula.

    Node policies and connectors' reconnects use it. The delay is drawn uniformly from the
    upper half of ``min(cap, base * 2**attempt)``, so that clients that failed together do
    not retry together.

    Example:
        >>> from nanostream._core.policy import backoff_delay
        >>> 0.5 <= backoff_delay(0, 1.0, 30.0) <= 1.0
        True
        >>> 15.0 <= backoff_delay(10, 1.0, 30.0) <= 30.0
        True
    """
    ceiling = min(cap, base * (2.0 ** min(attempt, 62)))
    return random.uniform(ceiling / 2.0, ceiling)


@dataclass(frozen=True)
class ErrorPolicy:
    """A node's error policy, from its options (see the module docstring).

    Example:
        >>> import nanostream
        >>> node = nanostream.testing.Collect().configure(on_error="retry", retries=5)
        >>> node.error_policy.on_error, node.error_policy.retries
        ('retry', 5)
        >>> node.error_policy.delay(3) <= 0.4
        True
    """

    on_error: str = "fail"
    retries: int = 3
    backoff: float = 0.1
    timeout: float | None = None
    max_errors: int | None = None
    max_error_rate: float | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ErrorPolicy:
        """The policy the given node options describe (unset keys keep their default)."""
        return cls(**{k: options[k] for k in POLICY_OPTIONS if k in options})

    @property
    def guarded(self) -> bool:
        """False for the plain default (fail, no timeout): items need no wrapping."""
        return self.on_error != "fail" or self.timeout is not None

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1, 2, ...): exponential, jittered."""
        return backoff_delay(retry - 1, float(self.backoff), MAX_BACKOFF_S)


@dataclass(frozen=True)
class ErrorRecord:
    """What is known about one item that failed for good; sent on a node's ``errors`` port.

    ``node`` is the node's name in the pipeline, ``item`` the input it failed on (``None``
    for a source), ``exception_type`` the exception's class (``module.Class`` unless a
    builtin), ``traceback`` its formatted traceback, ``attempt`` how many attempts were made
    and ``time`` when it failed for good (seconds since the epoch).

    Example:
        >>> import nanostream
        >>> class Parse(nanostream.NanoNode):
        ...     def process_item(self, item):
        ...         yield int(item)
        >>> ok, dead = nanostream.testing.Collect(), nanostream.testing.Collect()
        >>> parse = Parse(on_error="skip")
        >>> nanostream.from_iterable(["1", "x", "3"]) > parse > ok
        Collect(name=None)
        >>> parse.errors > dead
        Collect(name=None)
        >>> ok.global_start()
        >>> ok.items
        [1, 3]
        >>> record = dead.items[0]
        >>> record.node, record.item, record.exception_type, record.attempt
        ('Parse', 'x', 'ValueError', 1)
        >>> sorted(record.to_dict())
        ['attempt', 'exception_type', 'item', 'message', 'node', 'time', 'traceback']
    """

    node: str
    item: Any
    exception_type: str
    message: str
    traceback: str
    attempt: int
    time: float

    @classmethod
    def capture(cls, node: str, item: Any, exc: BaseException, attempt: int) -> ErrorRecord:
        """The record of ``item`` failing in ``node`` with ``exc`` after ``attempt`` attempts.

        Secrets in the message and traceback are masked (see :mod:`nanostream._core.redact`).
        """
        kind = type(exc)
        module = kind.__module__
        name = kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
        return cls(
            node=node,
            item=item,
            exception_type=name,
            message=redact(exc),
            traceback=redact("".join(traceback.format_exception(exc))),
            attempt=attempt,
            time=time.time(),
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (the item as it is)."""
        return asdict(self)


class _AttemptTimedOut(BaseException):
    """Injected into a node's thread when an attempt passes its timeout."""


class _AttemptTimer:
    """One thread per node that interrupts an attempt running past its deadline.

    The interruption is an asynchronous exception: it takes effect at the node's next
    Python instruction, so a call blocked inside C code (a socket read without its own
    timeout) is interrupted only when that call returns.
    """

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        self._cond = threading.Condition(threading.Lock())
        self._deadline: float | None = None
        self._target = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def arm(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._main, name=f"nanostream-timeout:{self.name}"
            )
            self._thread.start()
        with self._cond:
            self._target = threading.get_ident()
            self._deadline = _clock() + self.timeout
            self._cond.notify()

    def disarm(self) -> None:
        """End the attempt. Once this returns, no interruption is pending or can come.

        The caller retries it when it raises ``_AttemptTimedOut`` (an interruption that
        landed just as the attempt ended).
        """
        with self._cond:
            self._deadline = None
            clear_async_exception(threading.get_ident())

    def _main(self) -> None:
        cond = self._cond
        with cond:
            while not self._closed:
                deadline = self._deadline
                if deadline is None:
                    cond.wait()
                    continue
                left = deadline - _clock()
                if left > 0:
                    cond.wait(left)
                    continue
                self._deadline = None
                raise_async_exception(self._target, _AttemptTimedOut)

    def close(self) -> None:
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._closed = True
            self._cond.notify()
        thread.join()


class _Streamed(Exception):
    """An attempt failed after some of its outputs had already been emitted."""

    def __init__(self, emitted: int, cause: BaseException) -> None:
        super().__init__(f"{exception_text(cause)} (after {emitted} outputs were sent)")
        self.emitted = emitted
        self.cause = cause


_NOTHING: Any = object()


def back_off(policy: ErrorPolicy, ctx: NodeContext, attempt: int, exc: Exception) -> None:
    """Wait before retrying after failed attempt number ``attempt``; RunAborted on abort."""
    delay = policy.delay(attempt)
    log.debug(
        "node %r: attempt %d failed (%s); retrying in %.2fs",
        ctx.name,
        attempt,
        exception_text(exc),
        delay,
    )
    ctx.pause(delay)


class _Tally:
    """Counts what failed for good (items or polls) and applies ``max_errors`` and
    ``max_error_rate``: the one tally of :class:`ItemGuard` and :class:`PollGuard`.

    ``unit`` names what is counted ("item", "poll") in logs and in the limits' messages.
    """

    def __init__(self, policy: ErrorPolicy, ctx: NodeContext, unit: str) -> None:
        self.policy = policy
        self.ctx = ctx
        self.unit = unit
        self.failed = 0
        self._window: deque[int] | None = (
            deque(maxlen=RATE_WINDOW) if policy.max_error_rate is not None else None
        )
        self._window_failed = 0

    def succeeded(self) -> None:
        """One more unit succeeded (it counts for ``max_error_rate``)."""
        if self._window is not None:
            self._count(0)

    def failed_for_good(
        self, item: Any, exc: BaseException, attempt: int, note: str = ""
    ) -> ErrorRecord:
        """One more unit failed for good: count and log it; its record (to send, if linked).

        Raises :class:`~nanostream.TooManyErrors` past ``max_errors`` or ``max_error_rate``.
        """
        self.failed += 1
        ctx = self.ctx
        ctx.count_error()
        record = ErrorRecord.capture(ctx.name, item, exc, attempt)
        if note:
            record = replace(record, message=record.message + note)
        level = logging.WARNING if self.failed <= LOGGED_PER_NODE else logging.DEBUG
        log.log(
            level,
            "node %r: %s %s failed for good after %d attempt(s) and was skipped: %s%s",
            ctx.name,
            "a" if self.unit[0] not in "aeiou" else "an",
            self.unit,
            attempt,
            exception_text(exc),
            " (further errors of this node are logged at DEBUG)"
            if self.failed == LOGGED_PER_NODE
            else "",
            # for handlers that want the record itself (the web view's latest errors)
            extra={"node": ctx.name, "error_record": record},
        )
        return record

    def check_limits(self, cause: BaseException) -> None:
        """After a failure was recorded (and its record sent): apply the limits."""
        ctx = self.ctx
        limit = self.policy.max_errors
        if limit is not None and self.failed > limit:
            raise TooManyErrors(
                ctx.name,
                f"node {ctx.name!r} failed for {self.failed} {self.unit}s, "
                f"more than max_errors={limit}",
            ) from cause
        if self._window is not None:
            self._count(1)
            window = self._window
            rate = self.policy.max_error_rate
            if (
                len(window) >= RATE_WINDOW
                and rate is not None
                and self._window_failed > rate * len(window)
            ):
                raise TooManyErrors(
                    ctx.name,
                    f"node {ctx.name!r}: {self._window_failed} of its last {len(window)} "
                    f"{self.unit}s failed, more than max_error_rate={rate}",
                ) from cause

    def _count(self, failed: int) -> None:
        window = self._window
        assert window is not None
        if len(window) == window.maxlen:
            self._window_failed -= window[0]
        window.append(failed)
        self._window_failed += failed

    def finish(self) -> None:
        """The node's work has ended: check ``max_error_rate`` over fewer than 100 units."""
        window = self._window
        rate = self.policy.max_error_rate
        if (
            window
            and rate is not None
            and len(window) < RATE_WINDOW
            and self._window_failed > rate * len(window)
        ):
            raise TooManyErrors(
                self.ctx.name,
                f"node {self.ctx.name!r}: {self._window_failed} of its {len(window)} "
                f"{self.unit}s failed, more than max_error_rate={rate}",
            )


class ItemGuard:
    """Runs one node's work on each item under the node's :class:`ErrorPolicy`.

    ``guard(item)`` computes ``compute(item)`` (an iterable of outputs), retrying as the
    policy says, and emits the outputs with ``outp``; an item that fails for good becomes
    an :class:`ErrorRecord`. Call :meth:`finish` at the end of the input (it checks
    ``max_error_rate``) and :meth:`close` always (it stops the timeout thread). Node
    authors reach it through :meth:`NanoNode.guard_items <nanostream.NanoNode.guard_items>`.

    Example:
        >>> from nanostream._core.context import NodeContext
        >>> from nanostream._core.policy import ErrorPolicy, ItemGuard
        >>> out = []
        >>> guard = ItemGuard(ErrorPolicy(on_error="skip"), NodeContext("n"), out.append,
        ...                   lambda x: [10 // x])
        >>> for item in [1, 0, 5]:
        ...     guard(item)
        >>> guard.close()
        >>> out, guard.failed
        ([10, 2], 1)
    """

    def __init__(
        self,
        policy: ErrorPolicy,
        ctx: NodeContext,
        outp: Callable[[Any], Any],
        compute: Callable[[Any], Iterable[Any]],
    ) -> None:
        self.policy = policy
        self.ctx = ctx
        self.outp = outp
        self.compute = compute
        self._tally = _Tally(policy, ctx, "item")
        self._send_records = "errors" in ctx.linked_ports
        self._timer = (
            _AttemptTimer(ctx.name, policy.timeout) if policy.timeout is not None else None
        )

    @property
    def failed(self) -> int:
        """How many items failed for good so far."""
        return self._tally.failed

    # ----------------------------------------------------------------- per item
    def __call__(self, item: Any) -> None:
        policy = self.policy
        attempt = 0
        while True:
            attempt += 1
            try:
                outs = self._attempt(item)
            except Exception as exc:  # noqa: BLE001 - the policy decides
                if policy.on_error == "fail":
                    raise exc.cause if isinstance(exc, _Streamed) else exc  # noqa: B904
                if (
                    policy.on_error == "retry"
                    and attempt <= policy.retries
                    and not isinstance(exc, _Streamed)
                ):
                    back_off(policy, self.ctx, attempt, exc)
                    continue
                self.record_failure(item, exc, attempt)
                return
            outp = self.outp
            for out in outs:
                outp(out)
            self._tally.succeeded()
            return

    def _attempt(self, item: Any) -> list[Any]:
        timer = self._timer
        if timer is None:
            return self._collect(item)
        timed_out = False
        outs: list[Any] = []
        started = _clock()
        try:
            timer.arm()
            outs = self._collect(item, timer, started)
        except _AttemptTimedOut:
            timed_out = True
        finally:
            while True:
                try:
                    timer.disarm()
                    break
                except _AttemptTimedOut:  # fired just as the attempt ended
                    continue
        if timed_out:
            raise TimeoutError(
                f"node {self.ctx.name!r}: an attempt took longer than timeout={timer.timeout}s"
            )
        return outs

    def _collect(
        self, item: Any, timer: _AttemptTimer | None = None, started: float = 0.0
    ) -> list[Any]:
        """The outputs of one attempt, held back; past ``STREAM_AFTER`` the rest streams.

        With a ``timer``, an attempt that took longer than its timeout since ``started``
        raises ``_AttemptTimedOut`` here, before any of its outputs is sent: its measured
        duration decides, not whether the timer thread got to run in time.
        """
        it: Iterator[Any] = iter(self.compute(item))
        outs = list(islice(it, STREAM_AFTER))
        more = _NOTHING if len(outs) < STREAM_AFTER else next(it, _NOTHING)
        if timer is not None and _clock() - started > timer.timeout:
            raise _AttemptTimedOut
        if more is _NOTHING:
            return outs
        if timer is not None:
            timer.disarm()  # the rest streams without a deadline
        outp = self.outp
        emitted = 0
        try:
            for out in outs:
                outp(out)
                emitted += 1
            outp(more)
            emitted += 1
            for out in it:
                outp(out)
                emitted += 1
        except Exception as exc:
            raise _Streamed(emitted, exc) from exc
        return []

    # ----------------------------------------------------------------- failures
    def record_failure(self, item: Any, exc: BaseException, attempt: int) -> None:
        """``item`` failed for good with ``exc`` after ``attempt`` attempts: count, log, record.

        For operators that run attempts elsewhere (a worker pool) and settle them here.
        """
        cause = exc.cause if isinstance(exc, _Streamed) else exc
        note = ""
        if isinstance(exc, _Streamed):
            note = f" (after {exc.emitted} outputs were sent, so it was not retried)"
        record = self._tally.failed_for_good(item, cause, attempt, note)
        if self._send_records:
            self.outp(TaggedOutput("errors", record))
        self._tally.check_limits(cause)

    def finish(self) -> None:
        """The input has ended: check ``max_error_rate`` over a short input."""
        self._tally.finish()

    def close(self) -> None:
        """Stop the timeout thread, if one was started."""
        if self._timer is not None:
            self._timer.close()

    def run(self, inp: Iterable[Any]) -> None:
        """Guard each item of ``inp``, then :meth:`finish`; :meth:`close` in any case."""
        try:
            for item in inp:
                self(item)
            self.finish()
        finally:
            self.close()


class PollGuard:
    """Runs each poll of a polling source under the node's :class:`ErrorPolicy`.

    ``guard(poll)`` is a generator: it yields the items of ``poll()`` (an iterable, often a
    generator) as they come, and returns True if the poll succeeded, False if it was
    skipped (``ok = yield from guard(poll)``). When the poll raises, the policy decides:
    ``fail`` raises the exception (the run fails); ``retry`` waits the policy's back-off
    and polls again, up to ``retries`` more times, unless the failed poll had already
    emitted items (they are not taken back, so it is not retried: its record says how
    many were sent); a poll that failed for good is skipped: counted and logged, its
    :class:`ErrorRecord` (``item`` is ``None``) yielded for the ``errors`` port when that
    port is linked, ``max_errors`` and ``max_error_rate`` (over the source's last 100
    polls) applied. The source then goes on with its next poll. A stop or an abort
    during a back-off ends the wait at once (``SourceStopped`` or ``RunAborted``). Call
    :meth:`finish` when the source ends.

    Source authors reach it through :meth:`NanoNode.guard_polls
    <nanostream.NanoNode.guard_polls>`.

    Example:
        >>> from nanostream._core.context import NodeContext
        >>> from nanostream._core.policy import ErrorPolicy, PollGuard
        >>> guard = PollGuard(ErrorPolicy(on_error="skip"), NodeContext("feed"))
        >>> def poll(n):
        ...     if n == 2:
        ...         raise ConnectionError("server down")
        ...     return [n * 10]
        >>> [item for n in range(4) for item in guard(lambda: poll(n))]
        [0, 10, 30]
        >>> guard.failed
        1
    """

    def __init__(self, policy: ErrorPolicy, ctx: NodeContext) -> None:
        self.policy = policy
        self.ctx = ctx
        self._tally = _Tally(policy, ctx, "poll")
        self._send_records = "errors" in ctx.linked_ports

    @property
    def failed(self) -> int:
        """How many polls failed for good so far."""
        return self._tally.failed

    def __call__(self, poll: Callable[[], Iterable[Any]]) -> Generator[Any, None, bool]:
        policy = self.policy
        attempt = 0
        while True:
            attempt += 1
            emitted = 0
            try:
                for item in poll():
                    yield item
                    emitted += 1
            except Exception as exc:
                if policy.on_error == "fail":
                    raise
                if policy.on_error == "retry" and attempt <= policy.retries and not emitted:
                    self._back_off(attempt, exc)
                    continue
                note = ""
                if emitted:
                    note = f" (after {emitted} items of the poll were sent, so it was not retried)"
                record = self._tally.failed_for_good(None, exc, attempt, note)
                if self._send_records:
                    yield TaggedOutput("errors", record)
                self._tally.check_limits(exc)
                return False
            self._tally.succeeded()
            return True

    def _back_off(self, attempt: int, exc: Exception) -> None:
        """Wait before polling again; a stop ends the source, an abort the run, at once."""
        ctx = self.ctx
        delay = self.policy.delay(attempt)
        log.debug(
            "node %r: poll attempt %d failed (%s); retrying in %.2fs",
            ctx.name,
            attempt,
            exception_text(exc),
            delay,
        )
        if ctx.pause(delay, until_stop=True):
            raise SourceStopped

    def finish(self) -> None:
        """The source has ended: check ``max_error_rate`` over fewer than 100 polls."""
        self._tally.finish()
