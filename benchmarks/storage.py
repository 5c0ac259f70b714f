"""The compressed-files workload: dict rows -> a gzip JSON lines file -> dict rows again.

Writing: ``JSONLinesWriter("....jsonl.gz")`` fed by ``from_iterable`` against a plain loop
of ``json.dumps`` into ``gzip.open`` at the same level (6). Reading:
``JSONLinesReader(paths=True)`` on that file against a plain loop of ``json.loads`` over
``gzip.open``. Measured side by side (interleaved, median of ``repeat`` runs).
``rows(n)`` gives the rows ``benchmarks/run.py`` prints (on ``n // 5`` rows: compression
dominates, and the suite stays short); ``python benchmarks/storage.py N`` runs it alone.
"""

from __future__ import annotations

import gzip
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import nanostream
from nanostream.nodes import JSONLinesReader, JSONLinesWriter

Row = tuple[str, float, str]
TARGET = 0.8  # nanostream should reach at least this fraction of the plain loop's rate


def make_rows(n: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"user{i * 7919 % 1_000_003}", "score": i % 1000 / 10, "ok": i % 3 == 0}
        for i in range(n)
    ]


def plain_write(rows: list[dict[str, Any]], dst: Path) -> int:
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with gzip.open(dst, "wt", encoding="utf-8", compresslevel=6) as out:
        for row in rows:
            out.write(encode(row) + "\n")
    return len(rows)


def nanostream_write(rows: list[dict[str, Any]], dst: Path) -> int:
    writer = JSONLinesWriter(dst, backend="json", name="writer")
    nanostream.from_iterable(rows) > writer
    run = writer.global_start(block=False)
    assert run is not None
    run.wait()
    return run.stats()["writer"].items_in


def plain_read(src: Path) -> int:
    count = 0
    with gzip.open(src, "rt", encoding="utf-8") as f:
        for line in f:
            json.loads(line)
            count += 1
    return count


def nanostream_read(src: Path) -> int:
    counted: list[int] = []

    def count(inp: Iterable[Any], outp: Callable[[Any], Any]) -> None:
        counted.append(sum(1 for _ in inp))  # the values are dropped, as the loop drops them

    sink = nanostream.as_node(count)
    nanostream.from_iterable([str(src)]) > JSONLinesReader(paths=True, backend="json") > sink
    sink.global_start()
    return counted[0]


def measure(n: int, repeat: int = 3) -> dict[str, float]:
    """Rows per second of each variant on ``n`` rows (median of ``repeat`` runs)."""
    rows = make_rows(n)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.jsonl.gz"
        plain_write(rows, source)
        variants: dict[str, Callable[[Path], int]] = {
            "plain write": lambda dst: plain_write(rows, dst),
            "nanostream write": lambda dst: nanostream_write(rows, dst),
            "plain read": lambda _: plain_read(source),
            "nanostream read": lambda _: nanostream_read(source),
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeat):
            for name, func in variants.items():
                dst = Path(tmp) / "out.jsonl.gz"
                start = time.perf_counter()
                got = func(dst)
                elapsed = time.perf_counter() - start
                if got != n:
                    raise AssertionError(f"{name} handled {got} rows, expected {n}")
                samples[name].append(n / elapsed)
                dst.unlink(missing_ok=True)
    return {name: statistics.median(values) for name, values in samples.items()}


def rows(n: int, repeat: int = 5) -> list[Row]:
    """Rows for ``benchmarks/run.py``: each rate, and nanostream's ratio to its loop."""
    size = max(n // 5, 1000)
    rates = measure(size, repeat)
    out: list[Row] = []
    for what in ("write", "read"):
        ratio = rates[f"nanostream {what}"] / rates[f"plain {what}"]
        verdict = "ok" if ratio >= TARGET else f"below the {TARGET}x target"
        label = "dicts -> .jsonl.gz" if what == "write" else ".jsonl.gz -> dicts"
        out.append((f"{label}, gzip.open + json loop, N={size:,}", rates[f"plain {what}"], ""))
        out.append(
            (
                f"{label}, nanostream, N={size:,}",
                rates[f"nanostream {what}"],
                f"{ratio:.2f}x the plain loop ({verdict})",
            )
        )
    return out


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    for name, rate, note in rows(count):
        print(f"{name:<60} {rate:>12,.0f}  {note}")
