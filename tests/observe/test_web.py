"""The web view over plain HTTP: the page, the graph, the figures, the event stream, stop."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nanostream
from nanostream._core.redact import remember_secret
from nanostream.observe import WebView, open_web_views
from nanostream.observe.web import _layout
from nanostream.testing import Collect


def view_of(run: nanostream.Run) -> WebView:
    views = [v for v in open_web_views() if v.run is run]
    assert len(views) == 1, views
    return views[0]


@pytest.fixture(autouse=True)
def close_views() -> Iterator[None]:
    """Views outlive their runs: each test's are closed after it (their threads joined)."""
    yield
    for view in open_web_views():
        view.close()


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def get_json(url: str) -> Any:
    status, kind, body = get(url)
    assert status == 200 and kind == "application/json", (status, body)
    return json.loads(body)


def post_stop(view: WebView, header: bool = True) -> int:
    headers = {"X-Nanostream": "stop"} if header else {}
    request = urllib.request.Request(view.url + "api/stop", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class Parse(nanostream.NanoNode):
    def process_item(self, item: str) -> Iterator[int]:
        yield int(item)


def events(view: WebView) -> Iterator[dict[str, Any]]:
    """The ``state`` events of the view's stream, decoded, as they come."""
    with urllib.request.urlopen(view.url + "api/events", timeout=10) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        kind = None
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: ") and kind == "state":
                yield json.loads(line[len("data: ") :])


# --------------------------------------------------------------------------- every runner
def test_graph_and_final_figures_under_every_runner(runner: str) -> None:
    words = [str(i) if i % 10 else f"x{i}" for i in range(200)]
    source = nanostream.from_iterable(words, name="words")
    parse = Parse(name="parse").configure(on_error="skip", batch_size=64)
    sink = Collect(name="sink")
    dead = Collect(name="dead")
    source > parse > sink
    parse.errors > dead
    run = source.global_start(block=False, runner=runner, ui=0, name="numbers")
    assert run is not None
    view = view_of(run)
    assert view.url.startswith("http://127.0.0.1:")
    assert run.wait(60)

    status, kind, page = get(view.url)
    assert status == 200 and kind.startswith("text/html") and b"<svg" in page
    graph = get_json(view.url + "api/graph")
    assert graph["pipeline"] == "numbers"
    assert [(n["name"], n["layer"]) for n in graph["nodes"]] == [
        ("words", 0),
        ("parse", 1),
        ("sink", 2),
        ("dead", 2),
    ]
    assert {(e["source"], e["port"], e["target"]) for e in graph["edges"]} == {
        ("words", "out", "parse"),
        ("parse", "out", "sink"),
        ("parse", "errors", "dead"),
    }
    details = {n["name"]: n["details"] for n in graph["nodes"]}
    assert details["parse"]["class"] == "Parse"
    assert details["parse"]["policy"] == {"on_error": "skip"}
    assert details["parse"]["batch_size"] == 64
    assert details["sink"]["policy"] == {"on_error": "fail"}

    state = get_json(view.url + "api/state")
    assert state["state"] == "finished" and state["done"] is True
    expected = run.stats()
    for name, figures in state["nodes"].items():
        assert (figures["in"], figures["out"], figures["errors"]) == (
            expected[name].items_in,
            expected[name].items_out,
            expected[name].errors,
        )
        assert figures["bottleneck"] is False  # a finished run has none
    assert state["nodes"]["parse"]["errors"] == 20
    assert state["nodes"]["sink"]["in"] == 180


def test_a_busy_port_is_refused_saying_what_to_do(runner: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        source = nanostream.from_iterable(itertools.count(), name="count")
        with pytest.raises(nanostream.ConfigError, match="choose another port"):
            source.global_start(block=False, runner=runner, ui=port)
    run = nanostream.pipeline_of(source).run
    assert run is not None and run.done  # the run that had started was aborted


# --------------------------------------------------------------------------- threads
def test_events_advance_and_the_stop_button_drains_the_run() -> None:
    source = nanostream.from_iterable(itertools.count(), name="count")
    sink = Collect(name="sink")
    source > sink
    run = source.global_start(block=False, ui=0)
    assert run is not None
    view = view_of(run)
    stream = events(view)
    counts = []
    for state in stream:
        counts.append(state["nodes"]["count"]["out"])
        if len(counts) == 3:
            break
    stream.close()
    assert counts[0] < counts[1] < counts[2]  # one event per second or so, advancing
    assert post_stop(view, header=False) == 403  # another site's form cannot stop it
    assert run.state == "running"
    assert post_stop(view) == 202
    assert run.wait(30)
    state = view.state()
    assert state["state"] == "finished"
    assert state["nodes"]["sink"]["in"] == state["nodes"]["count"]["out"] == len(sink.items)


def test_dead_letters_and_recent_errors_are_shown_masked() -> None:
    remember_secret("tok-4F9a2-secret")

    class Fussy(nanostream.NanoNode):
        def process_item(self, item: int) -> Iterator[int]:
            if item % 2:
                raise ValueError(f"odd {item}: password=hunter2 tok-4F9a2-secret")
            yield item

    sink = Collect(name="sink")
    nanostream.from_iterable(range(6), name="src") > Fussy(name="fussy", on_error="skip") > sink
    run = sink.global_start(block=False, ui=0)
    assert run is not None and run.wait(30)
    state = view_of(run).state()
    letters = state["dead_letters"]
    assert [(d["node"], d["item"]) for d in letters] == [
        ("fussy", "5"),
        ("fussy", "3"),
        ("fussy", "1"),
    ]
    assert letters[0]["message"] == "odd 5: password=*** ***"
    recent = state["nodes"]["fussy"]["recent_errors"]
    assert len(recent) == 3 and all("hunter2" not in e["traceback"] for e in recent)
    assert "tok-4F9a2-secret" not in json.dumps(state)


def test_a_failed_node_shows_its_failure_and_traceback() -> None:
    def explode(inp: Any, outp: Any) -> None:
        for item in inp:
            raise RuntimeError(f"cannot take {item}")

    source = nanostream.from_iterable([7], name="src")
    source > explode
    run = source.global_start(block=False, ui=0)
    assert run is not None
    with pytest.raises(nanostream.NodeFailed):
        run.wait(30)
    state = view_of(run).state()
    assert state["state"] == "failed"
    assert state["failure"] == "node 'explode' failed: RuntimeError: cannot take 7"
    [error] = state["nodes"]["explode"]["recent_errors"]
    assert error["type"] == "RuntimeError" and "in explode" in error["traceback"]


def test_the_view_outlives_a_blocking_run_until_closed() -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(10), name="src") > sink
    sink.global_start(ui=True)  # returns when the run has ended
    [view] = open_web_views()
    assert view.state()["nodes"]["sink"]["in"] == 10
    assert get(view.url + "api/state")[0] == 200  # still serving the final figures
    assert get(view.url + "nothing-here")[0] == 404
    url = view.url
    view.close()
    assert view.closed and open_web_views() == []
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "api/state", timeout=5)
    assert not [t for t in threading.enumerate() if t.name.startswith("nanostream-web")]


def test_closing_ends_open_event_streams() -> None:
    sink = Collect(name="sink")
    nanostream.from_iterable(range(3), name="src") > sink
    run = sink.global_start(block=False, ui=0)
    assert run is not None and run.wait(30)
    view = view_of(run)
    stream = events(view)
    first = next(stream)
    assert first["done"] is True
    view.close()  # joins the thread serving the stream: it must end by itself
    assert list(stream) == []


# --------------------------------------------------------------------------- layout
@st.composite
def dags(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Edges of a connected DAG on nodes 0..n-1 (each node after 0 fed by an earlier one)."""
    n = draw(st.integers(2, 9))
    edges = {(draw(st.integers(0, i - 1)), i) for i in range(1, n)}
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=8))
    edges |= {(a, b) for a, b in extra if a < b}
    return sorted(edges)


@settings(max_examples=40, deadline=None)
@given(dags())
def test_layers_are_longest_paths_and_rows_are_distinct(edges: list[tuple[int, int]]) -> None:
    n = max(b for _, b in edges) + 1
    nodes = [Collect(name=f"n{i}") for i in range(n)]
    for a, b in edges:
        nodes[a] > nodes[b]
    plan = nanostream.pipeline_of(nodes[0]).plan()
    layers, rows = _layout(plan)
    index = {pn.name: pn.index for pn in plan.nodes}
    # longest path from a source, computed independently over the edge list
    longest = [0] * n
    for _ in range(n):
        for a, b in edges:
            longest[b] = max(longest[b], longest[a] + 1)
    assert [layers[index[f"n{i}"]] for i in range(n)] == longest
    places = [(layers[i], rows[i]) for i in range(n)]
    assert len(set(places)) == n  # no two nodes drawn on one spot
    for layer in set(layers):
        assert sorted(r for lay, r in places if lay == layer) == list(range(layers.count(layer)))


@pytest.mark.parametrize("ui", ["yes", 70000, -1, 1.5])
def test_a_wrong_ui_is_refused_before_the_run_starts(ui: Any) -> None:
    source = nanostream.from_iterable([1], name="src")
    with pytest.raises(nanostream.GraphError, match=r"pass ui=True .* or a port number"):
        source.global_start(block=False, ui=ui)
    assert nanostream.pipeline_of(source).run is None


def test_a_request_for_another_host_name_is_refused() -> None:
    """A rebinding DNS name pointing at 127.0.0.1 gets nothing: no figures, no stop."""
    import http.client

    source = nanostream.from_iterable(itertools.count(), name="count")
    source > Collect(name="sink")
    run = source.global_start(block=False, ui=0)
    assert run is not None
    view = view_of(run)
    for method, path, headers in [
        ("GET", "/api/state", {"Host": f"evil.example:{view.port}"}),
        ("POST", "/api/stop", {"Host": f"evil.example:{view.port}", "X-Nanostream": "stop"}),
        ("GET", "/api/state", {"Host": f"localhost:{view.port}"}),
    ]:
        connection = http.client.HTTPConnection("127.0.0.1", view.port, timeout=10)
        connection.request(method, path, headers=headers)
        status = connection.getresponse().status
        connection.close()
        assert status == (200 if headers["Host"].startswith("localhost") else 403)
    assert run.state == "running"
    run.stop(30)


def test_a_view_made_after_the_run_ended_has_its_final_figures_and_errors() -> None:
    """A short run can end before its view is made: the view then starts final."""
    sink = Collect(name="sink")
    fussy = Parse(name="parse").configure(on_error="skip")
    nanostream.from_iterable(["1", "x", "3"], name="src") > fussy > sink
    run = sink.global_start(block=False)
    assert run is not None and run.wait(30)
    observer = nanostream.observe.attach(run, ui=0)
    view = observer.web
    assert view is not None
    stream = events(view)
    first = next(stream)
    stream.close()
    assert first["done"] is True and first["state"] == "finished"
    assert first["nodes"]["sink"]["in"] == 2
    assert [(d["node"], d["item"]) for d in first["dead_letters"]] == [("parse", "'x'")]
    assert view.state() == first  # the observer's own end changes nothing after
