"""The state store (``nanostream.state``): SQLite files, SQLAlchemy URLs, ``describe``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nanostream
from nanostream.state import describe, encode_state, open_store

states = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5) | st.floats(allow_nan=False),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=6,
    ),
    max_size=4,
)


@settings(max_examples=25, deadline=None)
@given(first=states, second=states)
def test_a_commit_replaces_the_whole_checkpoint(
    tmp_path_factory: pytest.TempPathFactory, first: dict[str, object], second: dict[str, object]
) -> None:
    path = tmp_path_factory.mktemp("store") / "run.state"
    store = open_store(path)
    try:
        store.commit(1, "p", {k: ("kind", encode_state(v)) for k, v in first.items()})
        store.commit(2, "p", {k: ("kind", encode_state(v)) for k, v in second.items()})
        loaded = store.load()
    finally:
        store.close()
    assert loaded is not None and loaded.epoch == 2
    assert {k: state for k, (_kind, state) in loaded.states.items()} == second


def test_a_sqlalchemy_url_works_too(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    url = f"sqlite:///{tmp_path / 'run.db'}"
    store = open_store(url)
    try:
        assert store.load() is None
        store.commit(4, "p", {"n": ("m.N", encode_state({"a": (1, 2)}))})
        store.drop(["missing"])
        loaded = store.load()
    finally:
        store.close()
    assert loaded is not None
    assert (loaded.epoch, loaded.states) == (4, {"n": ("m.N", {"a": (1, 2)})})


def test_drop_forgets_a_node(tmp_path: Path) -> None:
    store = open_store(tmp_path / "run.state")
    store.commit(1, "p", {"a": ("k", encode_state(1)), "b": ("k", encode_state(2))})
    store.drop(["a"])
    loaded = store.load()
    store.close()
    assert loaded is not None and set(loaded.states) == {"b"}


def test_unreadable_state_says_how_to_start_afresh(tmp_path: Path) -> None:
    path = tmp_path / "run.state"
    store = open_store(path)
    store.commit(1, "p", {"a": ("k", encode_state(1))})
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE nanostream_state SET state = x'00'")
    store = open_store(path)
    with pytest.raises(nanostream.StateError, match=r"node 'a'.*drop_state=True"):
        store.load()
    store.close()


def test_a_store_that_cannot_be_opened_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(nanostream.StateError, match="cannot open the state store"):
        open_store(tmp_path / "no-such-folder" / "run.state")


def test_describe_lists_each_node(tmp_path: Path) -> None:
    path = tmp_path / "run.state"
    store = open_store(path)
    store.commit(7, "demo", {"b": ("m.B", encode_state("x" * 100)), "a": ("m.A", encode_state(1))})
    store.close()
    lines = describe(path).splitlines()
    assert lines[0].startswith("checkpoint 7 of pipeline 'demo', taken ")
    assert lines[1].split() == ["node", "kind", "bytes", "state"]
    assert lines[2].split()[:2] == ["a", "m.A"] and lines[2].endswith("1")
    assert lines[3].split()[:2] == ["b", "m.B"] and lines[3].endswith("...")
