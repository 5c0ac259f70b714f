"""nanostream's benchmark suite: prints one table of items/s and ratios.

Usage:
    .venv/bin/python benchmarks/run.py            # the full suite (a few minutes)
    .venv/bin/python benchmarks/run.py --quick    # smaller N, fewer repeats
    .venv/bin/python benchmarks/run.py --only engine

Every variant is run ``--repeat`` times, interleaved with the others (so a slow moment of a
shared machine hits all of them alike), and the median is reported. Ratios are taken
between medians measured in the same run. Peak RSS is measured in a fresh subprocess per N.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import engine  # noqa: E402

Row = tuple[str, float, str]


def timed(func: Callable[[int], int], n: int) -> float:
    """Items per second of one call of ``func(n)`` (which must return n).

    A ``func.cleanup()``, if there is one, runs after the measure (to close what outlives
    the run, such as a web view).
    """
    start = time.perf_counter()
    got = func(n)
    elapsed = time.perf_counter() - start
    cleanup = getattr(func, "cleanup", None)
    if cleanup is not None:
        cleanup()
    if got != n:
        raise AssertionError(f"{func.__name__} returned {got}, expected {n}")
    return n / elapsed


def interleaved(variants: dict[str, Callable[[int], int]], n: int, repeat: int) -> dict[str, float]:
    """Median items/s of each variant, runs interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, func in variants.items():
            samples[name].append(timed(func, n))
    return {name: statistics.median(values) for name, values in samples.items()}


def engine_rows(n: int, repeat: int) -> list[Row]:
    from nanostream.runners import available_runners

    variants: dict[str, Callable[[int], int]] = {
        "R1 generator chain, one thread": engine.r1_generators,
        "node functions, threads": engine.node_functions,
        "node functions (from_iterable source), threads": lambda k: engine.node_functions(
            k, source="iterable"
        ),
        "NanoNode classes chained by hand, one thread": engine.classes_one_thread,
        "NanoNode classes, threads": engine.classes,
    }
    if "cooperative" in available_runners():
        variants["node functions, cooperative"] = lambda k: engine.node_functions(
            k, runner="cooperative"
        )
        variants["NanoNode classes, cooperative"] = lambda k: engine.classes(
            k, runner="cooperative"
        )
    result = interleaved(variants, n, repeat)
    r1 = result["R1 generator chain, one thread"]
    c1 = result["NanoNode classes chained by hand, one thread"]
    rows: list[Row] = []
    for name, rate in result.items():
        if "classes" in name and "by hand" not in name:
            note = f"{rate / c1:.2f}x classes by hand"
        else:
            note = f"{rate / r1:.2f}x R1"
        rows.append((name, rate, note))
    waits = interleaved(
        {"one": engine.one_wait, "pipeline": engine.waiting_steps}, 1000, max(3, repeat // 2)
    )
    rows.append(
        (
            "waiting source, cheap step, waiting step, sink (1,000 x ~1 ms), threads",
            waits["pipeline"],
            f"{waits['one'] / waits['pipeline']:.2f}x the wall of one waiting step alone "
            "(target <= 1.3x; 2x if the waits did not overlap)",
        )
    )
    rows.append(("one waiting step alone (1,000 x ~1 ms)", waits["one"], "reference"))
    rows.append((f"(load average {os.getloadavg()[0]:.1f} at the end of the group)", 0, ""))
    return rows


def observe_rows(n: int, repeat: int) -> list[Row]:
    """The engine workload with the live view and the metrics endpoint on, with the web
    view and a page reading its events, and without either."""
    import contextlib
    import io

    def observed(k: int) -> int:
        with contextlib.redirect_stdout(io.StringIO()):  # the view prints its summary
            return engine.node_functions(k, progress=True, metrics_port=0)

    def web(k: int) -> int:
        """With the web view on and a page subscribed to its event stream all along."""
        import urllib.request

        from nanostream.observe import open_web_views

        done = threading.Event()

        def page() -> None:  # connects as soon as the view is up, reads until it closes
            while not open_web_views():
                if done.wait(0.005):
                    return
            with urllib.request.urlopen(open_web_views()[0].url + "api/events") as stream:
                for line in stream:
                    events[0] += line.startswith(b"data: ")

        reader = threading.Thread(target=page)
        reader.start()
        readers.append((reader, done))
        with contextlib.redirect_stderr(io.StringIO()):  # the view prints its address
            return engine.node_functions(k, ui=0)

    readers: list[tuple[threading.Thread, threading.Event]] = []
    events = [0]  # state events the pages received, over every web run

    def close_views() -> None:
        """The view outlives the run (its final figures): closed after the measure."""
        from nanostream.observe import open_web_views

        for view in open_web_views():
            view.close()
        for reader, done in readers:
            done.set()
            reader.join()
        readers.clear()

    web.cleanup = close_views  # type: ignore[attr-defined]

    variants = {
        "plain": engine.node_functions,
        "observed": observed,
        "web": web,
        "plain again": engine.node_functions,  # the same as plain: how far noise moves it
    }
    result = interleaved(variants, n, repeat)
    base = (result["plain"] + result["plain again"]) / 2
    ratio = result["observed"] / base
    web_ratio = result["web"] / base
    noise = result["plain again"] / result["plain"]
    return [
        (
            "node functions, threads (the plain run, measured twice: noise)",
            base,
            f"second measure {noise:.2f}x the first",
        ),
        (
            "node functions, threads, progress=True + metrics",
            result["observed"],
            f"{ratio:.2f}x the same run without them (target >= 0.90x)",
        ),
        (
            "node functions, threads, web view (ui=0) with a page subscribed",
            result["web"],
            f"{web_ratio:.2f}x the same run without it (target >= 0.95x); {events[0]} events read",
        ),
    ]


def state_rows(n: int, repeat: int) -> list[Row]:
    """A resumable source into a keyed Reduce, with a state store (checkpoints) and without;
    and the size of its checkpoints, unaligned (items in flight included) and aligned."""
    import sqlite3
    import tempfile
    from contextlib import closing

    import nanostream
    from nanostream.nodes import Reduce

    class Counter(nanostream.NanoNode):
        def __init__(self, stop: int) -> None:
            super().__init__(name="counter")
            self.stop = stop

        def setup(self) -> None:
            self.position = 0

        def generator(self) -> Any:
            for i in range(self.position, self.stop):
                self.position = i + 1
                yield i

        def snapshot_state(self) -> int:
            return self.position

        def restore_state(self, state: int) -> None:
            self.position = state

    class Sizes(nanostream.NanoNode):
        """A counting sink that, at each of its snapshots, notes the bytes of the states
        of the checkpoint committed last (items in flight included)."""

        def __init__(self, path: str, sizes: list[int]) -> None:
            super().__init__(name="count")
            self.path, self.sizes = path, sizes

        def process_item(self, item: Any) -> None:
            pass

        def snapshot_state(self) -> None:
            with closing(sqlite3.connect(self.path)) as db:
                (size,) = db.execute("SELECT sum(length(state)) FROM nanostream_state").fetchone()
            if size:
                self.sizes.append(size)

        def restore_state(self, state: None) -> None:
            pass

    def pipeline(k: int, sizes: list[int] | None = None, **options: Any) -> int:
        seen = [0]

        def count(inp: Any, outp: Any) -> None:
            for _ in inp:
                seen[0] += 1

        if sizes is None:
            sink = nanostream.as_node(count, name="count")
            sink.configure(holds_items=False)
        else:
            sink = Sizes(options["state"], sizes)
        Counter(k) > Reduce(lambda a, b: a + b, key=lambda x: x % 100, name="sums") > sink
        sink.global_start(**options)
        return seen[0] if sizes is None else k

    folder = tempfile.mkdtemp()
    runs = [0]
    sizes: dict[str, list[int]] = {"unaligned": [], "aligned": []}

    def with_store(interval: float, **options: Any) -> Callable[[int], int]:
        def run(k: int) -> int:
            runs[0] += 1  # a fresh store each time: the run starts from the beginning
            path = os.path.join(folder, f"run-{runs[0]}.state")
            return pipeline(k, state=path, checkpoint_interval=interval, **options)

        return run

    def sized(kind: str) -> Callable[[int], int]:
        return with_store(0.1, sizes=sizes[kind], checkpoint_unaligned=kind == "unaligned")

    result = interleaved(
        {
            "plain": pipeline,
            "default": with_store(5.0),
            "frequent": with_store(0.1),
            "aligned": with_store(0.1, checkpoint_unaligned=False),
            "sized unaligned": sized("unaligned"),
            "sized aligned": sized("aligned"),
        },
        n,
        repeat,
    )
    plain = result["plain"]

    def size_row(kind: str) -> Row:
        found = sizes[kind] or [0]
        return (
            f"checkpoint size, interval 0.1, {kind}, a sink that reads the store",
            max(found) / 1024,
            f"KiB (not items/s): largest of {len(sizes[kind])} checkpoints, "
            f"median {statistics.median(found) / 1024:.1f} KiB",
        )

    return [
        ("resumable source -> keyed Reduce, no state store", plain, "baseline"),
        (
            "the same, state store, checkpoint_interval=5 (the default), unaligned (default)",
            result["default"],
            f"{result['default'] / plain:.2f}x no store (target >= 0.90x)",
        ),
        (
            "the same, state store, checkpoint_interval=0.1, unaligned (default)",
            result["frequent"],
            f"{result['frequent'] / plain:.2f}x no store",
        ),
        (
            "the same, state store, checkpoint_interval=0.1, checkpoint_unaligned=False",
            result["aligned"],
            f"{result['aligned'] / plain:.2f}x no store",
        ),
        size_row("unaligned"),
        size_row("aligned"),
    ]


_RSS_CHILD = """
import resource, sys
sys.path.insert(0, {here!r})
import engine
n = {n}
assert engine.node_functions(n) == n
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def rss_rows(sizes: list[int]) -> list[Row]:
    rows: list[Row] = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD.format(here=str(HERE), n=n)],
            capture_output=True,
            text=True,
            check=True,
        )
        kib = int(out.stdout.strip().splitlines()[-1])
        rows.append((f"peak RSS, node functions, N={n:,}", kib / 1024, "MiB (not items/s)"))
    return rows


_ONE_CORE_CHILD = """
import json, os, sys
os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})
sys.path.insert(0, {here!r})
import engine, run
variants = {{
    "r1": engine.r1_generators,
    "functions": engine.node_functions,
    "by hand": engine.classes_one_thread,
    "classes": engine.classes,
}}
print(json.dumps(run.interleaved(variants, {n}, {repeat})))
"""


def one_core_rows(n: int, repeat: int) -> list[Row]:
    """The engine rows again in a process pinned to one core (Linux), to show what the
    second core costs: under the GIL, items made on one core are read on the other."""
    if not hasattr(os, "sched_setaffinity"):
        return [("one core: skipped", 0.0, "needs os.sched_setaffinity (Linux)")]
    out = subprocess.run(
        [sys.executable, "-c", _ONE_CORE_CHILD.format(here=str(HERE), n=n, repeat=repeat)],
        capture_output=True,
        text=True,
        check=True,
    )
    rates = json.loads(out.stdout.strip().splitlines()[-1])
    return [
        ("R1 generator chain, one core", rates["r1"], "1.00x R1 (one core)"),
        (
            "node functions, threads, one core",
            rates["functions"],
            f"{rates['functions'] / rates['r1']:.2f}x R1 (one core)",
        ),
        ("NanoNode classes chained by hand, one core", rates["by hand"], "(one core)"),
        (
            "NanoNode classes, threads, one core",
            rates["classes"],
            f"{rates['classes'] / rates['by hand']:.2f}x classes by hand (one core)",
        ),
    ]


def optional_rows(module_name: str, n: int) -> list[Row]:
    """Rows from another benchmark module's ``rows(n)``, if it exists and can run here."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return [(f"{module_name}: skipped", 0.0, str(exc))]
    rows_func = getattr(module, "rows", None)
    if rows_func is None:
        return []
    try:
        return list(rows_func(n))
    except Exception as exc:  # a missing service or extra: say so, keep the table
        return [(f"{module_name}: failed", 0.0, f"{type(exc).__name__}: {exc}")]


def ray_rows(n: int, repeat: int) -> list[Row]:
    """The Ray runner's rows, on a local Ray started for them (if Ray is installed)."""
    try:
        import ray_bench
    except ImportError as exc:
        return [("ray: skipped", 0.0, str(exc))]
    ray_bench.start_ray()
    try:
        return list(ray_bench.ray_rows(n, repeat))
    finally:
        ray_bench.stop_ray()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N and fewer repeats")
    parser.add_argument(
        "--only",
        help="run only this group: engine, rss, observe, onecore, kafka, state, or a module "
        "name (files, storage, operators, connectors, concurrency, columnar, acks)",
    )
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    n = 200_000 if args.quick else 1_000_000
    repeat = 3 if args.quick else 7
    groups: dict[str, Callable[[], list[Row]]] = {
        "engine": lambda: engine_rows(n, repeat),
        "rss": lambda: rss_rows([n, 5 * n]),
        "observe": lambda: observe_rows(n, repeat),
        "onecore": lambda: one_core_rows(n, repeat),
        "state": lambda: state_rows(n, repeat),
    }
    for extra in ("files", "storage", "operators", "connectors", "concurrency", "columnar", "acks"):
        groups[extra] = lambda extra=extra: optional_rows(extra, n)  # type: ignore[misc]
    groups["kafka"] = lambda: optional_rows("kafka_bench", n)
    groups["ray"] = lambda: ray_rows(n, repeat)
    rows: list[Row] = []
    for name, group in groups.items():
        if args.only and args.only != name:
            continue
        rows.extend(group())
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'items/s':>12}  note")
    for name, rate, note in rows:
        print(f"{name:<{width}}  {rate:>12,.0f}  {note}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this process: peak RSS {rss:.0f} MiB; python {sys.version.split()[0]})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
