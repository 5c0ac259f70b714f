"""Limits of what a configuration's YAML may hold: alias bombs and deep nesting are refused."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from nanostream import ConfigError
from nanostream.config import read_pipeline
from nanostream.config._common import MAX_ALIAS_VALUES, MAX_DEPTH, parse_yaml

# 9 levels of 9 aliases each: 9**9 (387 million) strings once expanded, in 342 bytes.
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi", strict=True)
)


def read_error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_pipeline(path, env={})
    return info.value


def test_an_alias_bomb_is_refused_at_once_with_its_line(tmp_path: Path) -> None:
    assert len(ALIAS_BOMB) < 400
    tracemalloc.start()
    started = time.perf_counter()
    try:
        error = read_error(tmp_path, ALIAS_BOMB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5
    assert peak < 50_000_000
    assert f"YAML aliases and merge keys expand to more than {MAX_ALIAS_VALUES} values" in (
        error.message
    )
    # where the expansion that went over the limit is used: line 5, "e: &e [*d, ..."
    assert error.location == f"{tmp_path / 'pipeline.yaml'}:5:4"


def test_a_merge_key_bomb_is_refused(tmp_path: Path) -> None:
    text = "e0: &e0 {x: 1}\n" + "".join(
        f"e{k}: &e{k} {{<<: [{', '.join([f'*e{k - 1}'] * 9)}]}}\n" for k in range(1, 10)
    )
    error = read_error(tmp_path, text)
    assert "expand to more than" in error.message
    assert error.location is not None and error.location.startswith(str(tmp_path))


def test_aliases_and_merge_keys_within_the_limit_work() -> None:
    doc = parse_yaml(
        "base: &b {x: 1, y: [2, 3]}\nn: {<<: *b, y: 4}\nm: [*b, *b]\n", "p.yaml", env={}
    )
    assert doc.data == {
        "base": {"x": 1, "y": [2, 3]},
        "n": {"x": 1, "y": 4},  # a key written in the mapping wins over a merged one
        "m": [{"x": 1, "y": [2, 3]}, {"x": 1, "y": [2, 3]}],
    }
    assert doc.where(("n", "y")) == "p.yaml:2:16"


@pytest.mark.parametrize(
    ("text", "line_col"),
    [
        pytest.param("nodes: " + "[" * 5000 + "]" * 5000, f"1:{7 + MAX_DEPTH}", id="flow"),
        pytest.param(
            "nodes:\n"
            + "".join(f"{'  ' * (k + 1)}k{k}:\n" for k in range(2000))
            + "  " * 2001
            + "x\n",
            f"{MAX_DEPTH + 1}:{2 * MAX_DEPTH + 1}",
            id="block",
        ),
    ],
)
def test_deep_nesting_is_refused_with_its_location(
    tmp_path: Path, text: str, line_col: str
) -> None:
    error = read_error(tmp_path, text)
    assert f"nested more than {MAX_DEPTH} deep" in error.message
    assert error.location == f"{tmp_path / 'pipeline.yaml'}:{line_col}"


def test_deep_nesting_through_aliases_is_refused(tmp_path: Path) -> None:
    text = "a0: &a0 [1]\n" + "".join(f"a{k}: &a{k} [*a{k - 1}]\n" for k in range(1, 2000))
    error = read_error(tmp_path, text)
    assert f"nested more than {MAX_DEPTH} deep" in error.message
    assert error.location is not None and error.location.startswith(str(tmp_path))


def test_nesting_up_to_the_limit_is_read() -> None:
    doc = parse_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    depth, data = 0, doc.data
    while isinstance(data, list):
        depth, data = depth + 1, data[0] if data else None
    assert depth == MAX_DEPTH
