"""The web view in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The page loads, draws every node, its counts advance, the bottleneck is marked on a node
held back by an event this test controls, and the stop button (after its confirmation)
drains the run, which the page then shows finished. A screenshot is kept in the test's
``tmp_path`` and, when ``NANOSTREAM_ARTIFACTS`` names a folder, there too.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nanostream
import support
from nanostream.observe import WebView, open_web_views
from nanostream.testing import Collect

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        support.missing("Playwright is not installed: pip install playwright (in nanostream[dev])")
    if not os.path.exists(CHROMIUM) and shutil.which("chromium") is None:
        support.missing("Chromium is not installed: apt-get install chromium")
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(autouse=True)
def close_views() -> Iterator[None]:
    yield
    for view in open_web_views():
        view.close()


class Gate(nanostream.NanoNode):
    """Passes items on while ``gate`` is set; holds on to the next one while it is clear."""

    def __init__(self, gate: threading.Event, **options: Any) -> None:
        super().__init__(**options)
        self.gate = gate

    def process_item(self, item: int) -> Iterator[int]:
        self.gate.wait(60)  # the test opens it again before it stops the run
        yield item


def double(inp: Any, outp: Any) -> None:
    for x in inp:
        outp(x * 2)


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    folder = os.environ.get("NANOSTREAM_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / name)
    return path


def count(page: Any, node: str, which: str) -> int:
    return int(page.get_attribute(f'[data-node="{node}"] .counts', f"data-{which}"))


def test_the_page_follows_a_run_marks_its_bottleneck_and_stops_it(
    browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    gate = threading.Event()
    gate.set()
    source = nanostream.from_iterable(itertools.count(), name="numbers")
    slow = Gate(gate, name="slow")
    sink = Collect(name="sink")
    source > nanostream.as_node(double, name="double") > slow > sink
    run = source.global_start(block=False, ui=0, name="browser-demo", queue_size=1024)
    assert run is not None
    [view] = [v for v in open_web_views() if v.run is run]
    assert isinstance(view, WebView)
    page = browser.new_page(viewport={"width": 1400, "height": 700})
    try:
        page.goto(view.url)
        expect(page.locator("#pipeline")).to_have_text("nanostream · browser-demo")
        expect(page.locator("g.node")).to_have_count(4)
        for name in ("numbers", "double", "slow", "sink"):
            expect(page.locator(f'g.node[data-node="{name}"]')).to_be_visible()
        expect(page.locator("path.edge")).to_have_count(3)
        expect(page.locator("#run-state")).to_have_text("running")

        # counts advance while the run goes
        page.wait_for_function(
            "() => Number(document.querySelector('[data-node=\"sink\"] .counts').dataset.in) > 0"
        )
        first = count(page, "sink", "in")
        page.wait_for_function(
            f"() => Number(document.querySelector('[data-node=\"sink\"] .counts')"
            f".dataset.in) > {first}"
        )

        # hold the slow node: its queue fills up and it becomes the bottleneck
        gate.clear()
        expect(page.locator('g.node[data-node="slow"]')).to_have_class(
            re.compile(r"\bbottleneck\b"), timeout=15_000
        )
        expect(page.locator("#bottleneck-note")).to_have_text("bottleneck: slow")
        page.click('g.node[data-node="slow"]')
        expect(page.locator("#details h2").first).to_have_text("slow")
        expect(page.locator("#details")).to_contain_text("Gate")
        screenshot(page, tmp_path, "web-view-bottleneck.png")

        # the stop button asks first; dismissed, nothing happens
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.click("#stop")
        assert run.state == "running"
        gate.set()
        messages: list[str] = []

        def accept(dialog: Any) -> None:
            messages.append(dialog.message)
            dialog.accept()

        page.once("dialog", accept)
        page.click("#stop")
        assert run.wait(30)
        assert messages and "drains" in messages[0]
        expect(page.locator("#run-state")).to_have_text("finished", timeout=15_000)
        expect(page.locator("#stop")).to_be_disabled()
        expect(page.locator('g.node[data-node="sink"]')).to_have_attribute("data-state", "finished")
        assert count(page, "sink", "in") == count(page, "numbers", "out") == len(sink.items)
        shot = screenshot(page, tmp_path, "web-view-finished.png")
        assert shot.stat().st_size > 1000
    finally:
        page.close()
        if not run.done:
            gate.set()
            run.abort()
