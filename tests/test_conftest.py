"""The repository's collection rules (``conftest.py`` at the root): a run keeps the ids of
the tests it skipped, and ``pytest --only-skipped`` runs just those."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

TESTS = """
import os
import pytest

def test_runs():
    pass

def test_needs_a_server():
    if not os.environ.get("SERVER"):
        pytest.skip("no server")

@pytest.mark.parametrize("runner", ["threads", "ray"])
def test_on_every_runner(runner):
    if runner == "ray" and not os.environ.get("SERVER"):
        pytest.skip("no ray")
"""


def test_only_skipped_runs_the_tests_the_last_run_skipped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_some=TESTS)
    monkeypatch.delenv("SERVER", raising=False)
    pytester.runpytest("-p", "cacheprovider").assert_outcomes(passed=2, skipped=2)

    monkeypatch.setenv("SERVER", "1")
    again = pytester.runpytest("-p", "cacheprovider", "--only-skipped", "-v")
    again.assert_outcomes(passed=2, deselected=2)
    again.stdout.fnmatch_lines(
        ["*test_needs_a_server PASSED*", "*test_on_every_runner?ray? PASSED*"]
    )


def test_a_module_skipped_whole_is_run_whole(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_module="""
        import os
        import pytest
        if not os.environ.get("SERVER"):
            pytest.skip("no server", allow_module_level=True)
        def test_one():
            pass
        def test_two():
            pass
        """,
        test_other="def test_runs():\n    pass\n",
    )
    monkeypatch.delenv("SERVER", raising=False)
    pytester.runpytest("-p", "cacheprovider").assert_outcomes(passed=1, skipped=1)
    monkeypatch.setenv("SERVER", "1")
    pytester.runpytest("-p", "cacheprovider", "--only-skipped").assert_outcomes(
        passed=2, deselected=1
    )


def test_only_skipped_without_a_previous_run_says_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_some="def test_runs():\n    pass\n")
    result = pytester.runpytest("-p", "cacheprovider", "--only-skipped")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no previous run is recorded*run pytest once without it*"])


def test_a_run_without_the_cache_keeps_no_record_and_still_runs(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_some="def test_runs():\n    pass\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_with_xdist_workers_the_record_holds_the_skips_of_every_worker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_one=TESTS, test_two=TESTS, test_three=TESTS)
    monkeypatch.delenv("SERVER", raising=False)
    first = pytester.runpytest("-p", "cacheprovider", "-p", "xdist", "-n", "2")
    first.assert_outcomes(passed=6, skipped=6)

    monkeypatch.setenv("SERVER", "1")
    again = pytester.runpytest("-p", "cacheprovider", "-p", "xdist", "-n", "2", "--only-skipped")
    again.assert_outcomes(passed=6)  # the workers deselect: the controller reports no count
    again.stdout.fnmatch_lines(["*2 workers [[]6 items[]]*"])


def test_the_package_has_its_bytecode_on_disk_for_the_interpreters_the_tests_start() -> None:
    sources = sorted((ROOT / "src" / "nanostream").rglob("*.py"))
    assert sources
    stale = [
        str(source.relative_to(ROOT))
        for source in sources
        if not Path(importlib.util.cache_from_source(str(source))).exists()
    ]
    assert not stale, stale


def test_auto_starts_a_worker_per_core_and_none_on_a_single_core(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    pytester.makeini("[pytest]\naddopts = -n auto --dist loadgroup\n")
    pytester.makepyfile(test_some="def test_runs():\n    pass\n")
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    alone = pytester.runpytest("-p", "xdist")
    alone.assert_outcomes(passed=1)  # in pytest's own process: no worker to start
    alone.stdout.no_fnmatch_line("*worker*[[]*item*")

    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    root = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root)
    assert root.pytest_xdist_auto_num_workers(None) == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert root.pytest_xdist_auto_num_workers(None) == 3
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "1")
    assert root.pytest_xdist_auto_num_workers(None) is None  # pytest-xdist's own setting


def test_a_module_that_could_not_be_imported_is_recorded_by_its_file() -> None:
    """The stand-in of a Ray module is collected under its folder; the record names the
    file, which is what the next run's doctests of that module are collected under."""
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    root_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root_conftest)
    record = root_conftest._SkipRecord(config=None)
    for nodeid in (
        "src/nanostream/runners/ray::_transport.py",
        "tests/nodes/test_redis.py::test_x[threads]",
    ):
        record._note(SimpleNamespace(skipped=True, nodeid=nodeid))
    assert record.skipped == {
        "src/nanostream/runners/ray/_transport.py",
        "tests/nodes/test_redis.py::test_x[threads]",
    }
