"""The wallboard in a real headless Chromium against a real worker fed through the broker: a tile per
queue appears, the sales tile turns from green to red on a staffing drop while the page stays open
(it polls /wallboard.json), checked in the DOM and in the pixels of a screenshot, and the page says
its figures are stale once the worker is gone.

Chromium is driven through chromedriver's W3C WebDriver HTTP API with urllib (a handful of calls:
no Selenium needed), and PNGs are decoded with zlib. Screenshots: test-output/wallboard/*.png."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from streams import wallboard
from tests.conftest import REPO, free_port, run, settings_for, total
from tests.test_alerts import T0, contact, event
from tests.test_ingest_integration import produce
from tests.test_alerts_integration import Message

pytestmark = pytest.mark.integration

OUT = REPO / "test-output" / "wallboard"
ACCEPTED = "floorwatch_ingest_accepted_events_total"
# The tile colours of streams/wallboard.html (--green, --red)
GREEN, RED = (0x1F, 0x8A, 0x3B), (0xC8, 0x16, 0x1D)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1600,900", "--hide-scrollbars"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"   # the W3C key of an element reference


# -- a minimal WebDriver client ---------------------------------------------------------------------

class Browser:
    """Headless Chromium behind chromedriver, spoken to over its W3C WebDriver HTTP API."""

    def __init__(self, log_path: Path) -> None:
        if not (shutil.which("chromium") and shutil.which("chromedriver")):
            pytest.skip("chromium and chromium-driver are not installed (deploy/run installs them)")
        self.profile = tempfile.mkdtemp(prefix="fw-chromium-")
        self.port = free_port()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.driver = subprocess.Popen(["chromedriver", f"--port={self.port}", f"--log-path={log_path}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromedriver did not come up")
            time.sleep(0.1)
        options = {"binary": shutil.which("chromium"), "args": [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}"]}
        session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options}}})
        self.session = f"/session/{session['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["value"]

    def call(self, method: str, path: str, body: dict | None = None):
        return self._call(method, self.session + path, body)

    def open(self, url: str) -> None:
        self.call("POST", "/url", {"url": url})

    def script(self, source: str, *args):
        return self.call("POST", "/execute/sync", {"script": source, "args": list(args)})

    def wait_for(self, expression: str, timeout: float, what: str):
        """Until the JS `expression` is truthy in the page."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.script(f"return ({expression});")
            if value:
                return value
            time.sleep(0.25)
        pytest.fail(f"timed out waiting for {what}; page text:\n{self.script('return document.body.innerText')}")

    def screenshot(self, path: Path, css: str | None = None) -> bytes:
        """PNG of the viewport, or of the element `css` selects; saved to `path`."""
        if css is None:
            png = base64.b64decode(self.call("GET", "/screenshot"))
        else:
            element = self.call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]
            png = base64.b64decode(self.call("GET", f"/element/{element}/screenshot"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return png

    def close(self) -> None:
        try:
            self.call("DELETE", "")
        except OSError:
            pass
        self.driver.terminate()
        try:
            self.driver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.driver.kill()
            self.driver.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def png_rgb(png: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """(width, height, RGB pixels row by row) of an 8-bit, non-interlaced RGB or RGBA PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, []
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(b"".join(idat)), width * bpp
    previous, pixels = bytearray(stride), []
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):   # undo the row's filter (PNG spec, 9.2)
            left = row[i - bpp] if i >= bpp else 0
            up, upleft = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - upleft
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                row[i] = (row[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else upleft)) & 0xFF
        pixels.extend(tuple(row[x:x + 3]) for x in range(0, stride, bpp))
        previous = row
    return width, height, pixels


def dominant_colour(png: bytes) -> tuple[tuple[int, int, int], float]:
    """The most frequent colour of an image and its share of the pixels (a tile header's background)."""
    width, height, pixels = png_rgb(png)
    colour, count = Counter(pixels).most_common(1)[0]
    return colour, count / (width * height)


def near(colour: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def status_of(queue: str, metric: str | None = None) -> str:
    """JS expression: the status of the queue's voice tile, or of one of its figures (null if absent)."""
    tile = f"document.querySelector('.tile[data-queue=\"{queue}\"][data-channel=\"voice\"]')"
    element = tile if metric is None else f"({tile} && {tile}.querySelector('[data-metric=\"{metric}\"]'))"
    return f"(({element}) ? ({element}).dataset.status : null)"


def board_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


# -- the test ----------------------------------------------------------------------------------------

def test_wallboard_tiles_turn_red_on_a_staffing_drop(kafka_bootstrap, make_worker):
    settings, env = settings_for(kafka_bootstrap, FLOORWATCH_WORKER__SNAPSHOT_INTERVAL_S="1")
    worker = make_worker(settings, env).start()
    browser = Browser(OUT / "chromedriver.log")   # starts while the worker joins its group
    try:
        w = settings.worker
        page, data = f"http://{w.web_host}:{w.web_port}/wallboard", f"http://{w.web_host}:{w.web_port}/wallboard.json"
        worker.wait_for(lambda s: total(s, "floorwatch_partitions_owned") == 4, what="partitions owned")
        n = 0

        def contacts(queue: str, start, count: int, wait_s: float | None) -> list:
            """`count` contacts 20 s apart, answered after `wait_s` (None: still waiting)."""
            nonlocal n
            out = []
            for i in range(count):
                n += 1
                events = contact(n, queue, start + timedelta(seconds=20 * i), wait_s or 0)
                out += events if wait_s is not None else events[:2]   # offered, enqueued
            return out

        def agents(state: str, at) -> list:
            return [event("agent.state_changed", at, number, agent_id=f"a-{number}", state=state,
                          queues=["sales", "billing"]) for number in (10, 11)]

        def feed(events) -> None:
            before = total(worker.metrics(), ACCEPTED)
            run(produce(settings, [Message("agent" if e.event_type.startswith("agent.") else "telephony",
                                           e.entity_key.encode(), e.model_dump_json().encode()) for e in events]))
            worker.wait_for(lambda s: total(s, ACCEPTED) >= before + len(events), what="events applied")

        # a good quarter hour: two agents available, every contact answered in 8 s (voice threshold 20 s)
        feed(agents("available", T0) + contacts("sales", T0, 12, 8) + contacts("billing", T0, 12, 8))
        deadline = time.monotonic() + 30
        while (board := board_json(data))["tiles"] == [] or any(t["status"] != "green" for t in board["tiles"]):
            if time.monotonic() > deadline:
                pytest.fail(f"/wallboard.json never showed two green tiles: {board}\n{worker.log_tail(20)}")
            time.sleep(0.5)

        browser.open(page)
        browser.wait_for(f"{status_of('sales')} === 'green'", timeout=15, what="a green sales tile")
        queues = browser.script("return [...document.querySelectorAll('.tile')].map(t => t.dataset.queue)")
        assert queues == ["billing", "sales"]
        assert browser.script(f"return {status_of('billing')};") == "green"
        assert "STALE" not in browser.script("return document.body.innerText")
        browser.screenshot(OUT / "1-good.png")
        colour, share = dominant_colour(browser.screenshot(OUT / "1-sales-head.png", ".tile[data-queue='sales'] .head"))
        assert near(colour, GREEN) and share > 0.5, (colour, share)

        # staffing drop: both agents not ready, the next sales contacts wait a minute, two still waiting
        drop = T0 + timedelta(minutes=5)
        feed(agents("not_ready", drop) + contacts("sales", drop, 12, 60)
             + contacts("sales", drop + timedelta(minutes=4), 2, None))
        # the open page picks the change up by itself (it polls /wallboard.json)
        browser.wait_for(" && ".join(f"{status_of('sales', metric)} === 'red'"
                                     for metric in (None, "service_level", "agents_available")),
                         timeout=20, what="service level and agents of the sales tile turning red")
        browser.screenshot(OUT / "2-staffing-drop.png")
        colour, share = dominant_colour(browser.screenshot(OUT / "2-sales-head.png", ".tile[data-queue='sales'] .head"))
        assert near(colour, RED) and share > 0.5, (colour, share)
        assert browser.script(f"return {status_of('billing')};") == "green"   # the other queue is unaffected

        # the worker goes away: the page keeps the last figures but says they are stale
        worker.stop(signal.SIGKILL)
        browser.wait_for("document.body.classList.contains('stale')", timeout=wallboard.STALE_AFTER_S + 8,
                         what="the stale banner")
        assert "STALE: no data from the worker since" in browser.script("return document.body.innerText")
        assert browser.script(f"return {status_of('sales')};") == "red"
        browser.screenshot(OUT / "3-stale.png")
    finally:
        browser.close()
