"""The tests' shared helpers (``tests/support.py``) that hold logic of their own."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import support

psutil = pytest.importorskip("psutil", reason="psutil is a dev dependency: pip install -e '.[dev]'")

TIMED_OUT = (
    "The current node timed out during startup. This could happen because some of the "
    "raylet failed to startup or the GCS has become overloaded."
)


class FakeRay:
    """``ray.init`` fails ``failures`` times with ``error``, each time leaving a child
    process behind (as a failed start leaves Ray's own)."""

    def __init__(self, failures: int, error: str = TIMED_OUT) -> None:
        self.failures = failures
        self.error = error
        self.inits = 0
        self.children: list[subprocess.Popen[bytes]] = []

    def init(self, **options: Any) -> None:
        self.inits += 1
        if self.inits <= self.failures:
            child = [sys.executable, "-c", "import sys; sys.stdin.read()"]
            self.children.append(subprocess.Popen(child, stdin=subprocess.PIPE))
            raise Exception(self.error)  # Ray raises a bare Exception here

    def shutdown(self) -> None:
        pass


def _ended(child: subprocess.Popen[bytes]) -> bool:
    """Has ``child`` ended (then it is waited for, whoever reaped it)?"""
    if child.poll() is None and psutil.pid_exists(child.pid):
        return False
    _reap(child)
    return True


def _reap(child: subprocess.Popen[bytes]) -> None:
    assert child.stdin is not None
    child.stdin.close()
    child.wait()


def test_a_ray_start_that_timed_out_is_tried_again_and_its_processes_end() -> None:
    ray = FakeRay(failures=support.RAY_START_ATTEMPTS - 1)
    support.start_local_ray(ray)
    assert ray.inits == support.RAY_START_ATTEMPTS
    assert len(ray.children) == support.RAY_START_ATTEMPTS - 1
    assert all(_ended(child) for child in ray.children)


def test_a_ray_start_that_keeps_timing_out_fails() -> None:
    ray = FakeRay(failures=support.RAY_START_ATTEMPTS)
    with pytest.raises(Exception, match="timed out during startup"):
        support.start_local_ray(ray)
    assert ray.inits == support.RAY_START_ATTEMPTS
    *earlier, last = ray.children
    assert all(_ended(child) for child in earlier)
    assert not _ended(last)  # the last attempt's are left as Ray's error leaves them
    last.kill()
    _reap(last)


def test_another_error_of_ray_init_is_raised_at_once() -> None:
    ray = FakeRay(failures=1, error="some other failure")
    with pytest.raises(Exception, match="some other failure"):
        support.start_local_ray(ray)
    assert ray.inits == 1
    assert not _ended(ray.children[0])
    ray.children[0].kill()
    _reap(ray.children[0])
