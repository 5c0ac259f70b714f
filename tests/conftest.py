"""Shared fixtures: every engine behaviour runs under every runner through ``runner``.

``runner`` is ``threads``, ``cooperative`` and, when Ray is installed, ``ray``: the Ray
runs share one local Ray instance for the whole test session (2 CPUs, no dashboard),
started by the first test that needs it. Nodes then run in actor processes, so the test
module is registered with cloudpickle "by value": the classes and functions it defines
reach the workers, which cannot import a test module by name.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import support
from nanostream.runners import available_runners
from support import send_by_value

# "ray" is always a runner here: without Ray its tests are skipped, saying so. Set
# NANOSTREAM_TEST_RAY=0 to leave it out (a faster loop while you work on something else).
RUNNERS = [name for name in available_runners() if name != "ray"]
if os.environ.get("NANOSTREAM_TEST_RAY") != "0":
    RUNNERS.append("ray")


# Tests that still share objects of the test process with their nodes (a list a node
# appends to, an event the test sets for a node, a sink read while it runs, a generator
# to iterate): on ray every node works on a copy. Each entry goes once its test signals
# through files, node attributes or run.stats() (see docs/ray.md, "Testing your pipelines
# on Ray"), or skips ray itself with its own reason.
_SHARES = "the test shares objects of its own process with its nodes"
NOT_YET_ON_RAY: dict[str, str] = {}


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """The test session's local Ray instance (the ``ray`` module), started on first use."""
    try:
        import ray
    except ImportError:
        support.missing("Ray is not installed: pip install 'nanostream[ray]'")
    started = not ray.is_initialized()
    if started:
        support.start_local_ray(ray)
    yield ray
    from nanostream.runners.ray import release_actors

    release_actors()
    if started:
        ray.shutdown()


def _on_ray(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return (
        item.path.stem in ("ray", "test_ray")
        or item.path.stem.startswith("test_ray_")
        or "ray" in item.path.parts  # the doctests of nanostream/runners/ray/
        or "ray_session" in getattr(item, "fixturenames", ())
        or (
            callspec is not None
            and any(v == "ray" for v in callspec.params.values() if isinstance(v, str))
        )
    )


#: The most local Ray instances a run starts: one per pytest-xdist worker, up to this many.
RAY_INSTANCES = 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the tests that use Ray are dealt in turn into one group per
    worker, up to :data:`RAY_INSTANCES` (``--dist loadgroup`` keeps a group on one worker).

    Each worker that runs a group starts one local Ray instance, at its group's first test,
    and keeps it for the rest of the group; a test process's Ray instance is started once.
    """
    if not config.pluginmanager.hasplugin("xdist"):
        return
    # Set in each worker, which is where the tests are collected and grouped; every worker
    # collects the same items in the same order, so they all deal the same groups.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    groups = max(1, min(workers, RAY_INSTANCES))
    dealt = 0
    for item in items:
        if _on_ray(item):
            item.add_marker(pytest.mark.xdist_group(f"ray-{dealt % groups}"))
            dealt += 1


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> str:
    """The name of each runner in turn (``threads``, ``cooperative``, ``ray``)."""
    name = str(request.param)
    if name == "ray":
        test = request.node.nodeid.partition("[")[0]
        if test in NOT_YET_ON_RAY:
            pytest.skip(f"not yet on ray: {NOT_YET_ON_RAY[test]}")
        send_by_value(request.getfixturevalue("ray_session"), request.module)
    return name


@pytest.fixture
def kill_child() -> Iterator[Callable[..., support.KillChild]]:
    """Makes a kill test's child (``support.KillChild``); ends its interpreter afterwards."""
    made: list[support.KillChild] = []

    def make(script: Path, *args: str, preload: tuple[str, ...] = ()) -> support.KillChild:
        made.append(support.KillChild(script, *args, preload=preload))
        return made[-1]

    yield make
    for child in made:
        child.close()


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves a nanostream thread alive after it.

    Only the threads the test started count: a thread an earlier, failed test left behind
    fails that test alone, not every test after it.
    """

    def alive() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("nanostream")}

    before = alive()
    yield
    leaked = sorted(t.name for t in alive() - before if t.is_alive())
    assert not leaked, f"threads left alive: {leaked}"
