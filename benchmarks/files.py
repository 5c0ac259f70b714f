"""The files workload: a CSV file -> dict rows -> a JSON lines file.

nanostream (``CSVReader`` streaming the file, ``JSONLinesWriter`` publishing the output)
against a plain single-thread loop of ``csv.DictReader`` and ``json.dumps``, on the same
generated file, measured side by side (interleaved, median of ``repeat`` runs).
``rows(n)`` gives the rows ``benchmarks/run.py`` prints; ``python benchmarks/files.py N``
runs it alone.
"""

from __future__ import annotations

import csv
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nanostream
from nanostream.nodes import CSVReader, JSONLinesWriter

Row = tuple[str, float, str]
TARGET = 0.8  # nanostream should reach at least this fraction of the plain loop's rate


def make_csv(path: Path, n: int, seed: int = 1) -> None:
    """Write ``n`` rows of mixed columns (ids, names, emails, numbers, cities) to ``path``."""
    rng = random.Random(seed)
    cities = ["London", "Paris", "Zürich", "New York", "São Paulo", "Tokyo", "Lagos"]
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("id,name,email,score,city,note\n")
        chunk: list[str] = []
        for i in range(n):
            name = f"user{rng.randrange(10**6)}"
            note = '"likes ""quotes"", commas"' if i % 50 == 0 else "plain"
            chunk.append(
                f"{i},{name},{name}@example.com,{rng.random() * 100:.3f},"
                f"{rng.choice(cities)},{note}\n"
            )
            if len(chunk) >= 10_000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))


def plain(src: Path, dst: Path) -> int:
    """The baseline: ``csv.DictReader`` + ``json.dumps`` in one loop; returns rows written."""
    count = 0
    with (
        src.open(encoding="utf-8", newline="") as f,
        dst.open("w", encoding="utf-8") as out,
    ):
        for row in csv.DictReader(f):
            out.write(json.dumps(row) + "\n")
            count += 1
    return count


def through_nanostream(src: Path, dst: Path, runner: str = "threads") -> int:
    """The same work as a pipeline; returns the rows the writer received."""
    writer = JSONLinesWriter(dst, name="writer")
    nanostream.from_iterable([src]) > CSVReader() > writer
    run = writer.global_start(block=False, runner=runner)
    assert run is not None
    run.wait()
    return run.stats()["writer"].items_in


def measure(n: int, repeat: int = 3, workdir: str | None = None) -> dict[str, float]:
    """Rows per second of each variant on an ``n``-row file (median of ``repeat`` runs)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        src = Path(tmp) / "input.csv"
        make_csv(src, n)
        variants: dict[str, Callable[[Path, Path], int]] = {
            "plain": plain,
            "nanostream": through_nanostream,
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeat):
            for name, func in variants.items():
                dst = Path(tmp) / f"{name}.jsonl"
                start = time.perf_counter()
                got = func(src, dst)
                elapsed = time.perf_counter() - start
                if got != n:
                    raise AssertionError(f"{name} wrote {got} rows, expected {n}")
                samples[name].append(n / elapsed)
                dst.unlink()
    return {name: statistics.median(values) for name, values in samples.items()}


def rows(n: int, repeat: int = 3) -> list[Row]:
    """Rows for ``benchmarks/run.py``: both rates, and nanostream's ratio to the loop."""
    rates = measure(n, repeat)
    ratio = rates["nanostream"] / rates["plain"]
    verdict = "ok" if ratio >= TARGET else f"below the {TARGET}x target"
    return [
        (
            f"CSV -> dicts -> JSON lines, csv.DictReader+json.dumps loop, N={n:,}",
            rates["plain"],
            "",
        ),
        (
            f"CSV -> dicts -> JSON lines, nanostream, N={n:,}",
            rates["nanostream"],
            f"{ratio:.2f}x the plain loop ({verdict})",
        ),
    ]


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    for name, rate, note in rows(size):
        print(f"{name:<75} {rate:>12,.0f}  {note}")
