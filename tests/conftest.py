"""Shared fixtures: every engine behaviour runs under every runner through ``runner``."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from nanostream.runners import available_runners

RUNNERS = available_runners()


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> str:
    """The name of each runner in turn (``threads``, ``cooperative``, ...)."""
    return str(request.param)


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves a nanostream thread alive after it."""
    yield
    leaked = [
        t.name for t in threading.enumerate() if t.name.startswith("nanostream") and t.is_alive()
    ]
    assert not leaked, f"threads left alive: {leaked}"
