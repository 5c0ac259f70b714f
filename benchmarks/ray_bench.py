"""The Ray rows: the engine workload on Ray, and the workers workload with replicas.

Each function builds and runs one variant and returns the count its sink saw (so
``run.timed(func, n)`` can check it and turn it into items/s). They use one Ray session:
call :func:`start_ray` first (and :func:`stop_ray` at the end), or the first run pays for
starting Ray.

- *engine*: ``source -> 3 x (x + 1) -> counting sink`` over N integers, as NanoNode classes
  and as node functions (the same nodes as ``engine.py``); batches of 4096 items.
- *workers*: ``source -> work -> counting sink`` where ``work`` burns about 0.1 ms of CPU per
  item (pure Python, so threads cannot run it in parallel), with ``replicas=1`` and ``4``,
  and the same on the threads runner for comparison.

Quick check at small N (what the test suite's authors run)::

    .venv/bin/python benchmarks/ray_bench.py 20000
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nanostream

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine

Row = tuple[str, float, str]

WORK = 1500  # loop rounds per item in the workers workload (about 0.1 ms)


def start_ray(num_cpus: int | None = None) -> None:
    """Start (or join) one local Ray session for all the Ray rows."""
    import ray

    # The workers cannot import these benchmark modules by name; send them by value.
    ray.cloudpickle.register_pickle_by_value(engine)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def stop_ray() -> None:
    """Free the idle actors and shut Ray down."""
    import ray

    from nanostream.runners.ray import release_actors

    release_actors()
    ray.shutdown()


# --------------------------------------------------------------------- engine workload
def engine_classes(n: int, batch_size: int = 4096) -> int:
    """The engine workload as NanoNode classes on Ray; the sink's count comes back."""
    from nanostream.runners.ray import RayRunner

    sink = engine.Count()
    engine.Numbers(n) > engine.AddOne() > engine.AddOne() > engine.AddOne() > sink
    runner = RayRunner(min_batch_size=batch_size)
    sink.global_start(runner=runner, batch_size=batch_size, queue_size=4 * batch_size)
    return sink.count


def engine_functions(n: int, batch_size: int = 4096) -> int:
    """The engine workload with node functions (source and x + 1) on Ray."""

    def numbers(inp: Any, outp: Any) -> None:
        for i in range(n):
            outp(i)

    sink = engine.Count()
    add = [nanostream.as_node(engine._add_one()) for _ in range(3)]
    nanostream.as_node(numbers) > add[0] > add[1] > add[2] > sink
    sink.global_start(runner="ray", batch_size=batch_size, queue_size=4 * batch_size)
    return sink.count


# --------------------------------------------------------------------- workers workload
class Work(nanostream.NanoNode):
    """About 0.1 ms of pure-Python CPU work per item."""

    def process_item(self, item: int) -> Iterator[int]:
        total = item
        for i in range(WORK):
            total = (total * 31 + i) % 1_000_003
        yield total


def workers(n: int, replicas: int = 4, runner: str = "ray") -> int:
    """The workers workload: ``replicas`` copies of ``Work`` (on Ray), or one thread."""
    from nanostream.runners.ray import RayRunner

    sink = engine.Count()
    nanostream.from_iterable(range(n)) > Work(name="work") > sink
    if runner == "ray":
        sink.global_start(runner=RayRunner(nodes={"work": {"replicas": replicas}}), batch_size=256)
    else:
        sink.global_start(runner=runner)
    return sink.count


# --------------------------------------------------------------------- the rows
def variants() -> dict[str, Callable[[int], int]]:
    """Name -> function of every Ray row."""
    return {
        "NanoNode classes, ray (batch 4096)": engine_classes,
        "node functions, ray (batch 4096)": engine_functions,
        "NanoNode classes, ray (batch 512)": lambda k: engine_classes(k, batch_size=512),
        "workers, threads": lambda k: workers(k, runner="threads"),
        "workers, ray replicas=1": lambda k: workers(k, replicas=1),
        "workers, ray replicas=4": lambda k: workers(k, replicas=4),
    }


def ray_rows(n: int, repeat: int) -> list[Row]:
    """Median items/s of each Ray variant (runs interleaved), as ``run.py`` rows.

    Meant for ``benchmarks/run.py``: ``rows += ray_bench.ray_rows(n, repeat)`` inside a
    :func:`start_ray` / :func:`stop_ray` pair. The workers rows use ``n // 10`` items.
    """
    import statistics

    samples: dict[str, list[float]] = {name: [] for name in variants()}
    for _ in range(repeat):
        for name, func in variants().items():
            k = n // 10 if name.startswith("workers") else n
            start = time.perf_counter()
            got = func(k)
            elapsed = time.perf_counter() - start
            if got != k:
                raise AssertionError(f"{name} counted {got}, expected {k}")
            samples[name].append(k / elapsed)
    result = {name: statistics.median(values) for name, values in samples.items()}
    threads = result["workers, threads"]
    rows: list[Row] = []
    for name, rate in result.items():
        note = f"{rate / threads:.2f}x threads" if name.startswith("workers") else ""
        if name.startswith("NanoNode classes, ray (batch 4096)"):
            note = "target >= 300,000 items/s on 2 cores"
        rows.append((name, rate, note))
    return rows


def main(argv: list[str]) -> None:
    """Print the Ray rows for N items (default 20,000: a quick check)."""
    n = int(argv[1]) if len(argv) > 1 else 20_000
    start_ray()
    try:
        # one warm-up pass starts the actor processes that later runs reuse
        for func in variants().values():
            func(2_000)
        for name, rate, note in ray_rows(n, repeat=1):
            print(f"{name:40s} {rate:>14,.0f} items/s  {note}")
    finally:
        stop_ray()


if __name__ == "__main__":
    main(sys.argv)
