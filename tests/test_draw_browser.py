"""The drawing page in a real browser: Playwright for Python driving Debian's Chromium.

The tests draw with the mouse (and with pen and touch pointer events), ask for endings, wait
until the panels have finished drawing, and check what the page sent (the strokes simplified
with RDP exactly as ``minisketch.strokes.rdp`` does), what came back (each answer begins with
the drawn strokes) and what the canvases show (the model's orange beside your ink). Each mode
runs once; no test may leave a console error or an uncaught page error. Screenshots go to
pytest's tmp path. Skipped, with the reason, where Playwright or Chromium is missing
(``.ci/run`` installs both).
"""
from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import numpy as np
import pytest

from drawserver import Server, make_models, stop_and_check
from minisketch.strokes import rdp, rdp_keep

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed: pip install -e '.[dev]' installs it"
    if not CHROMIUM.is_file():
        return (f"Chromium is not installed at {CHROMIUM}: apt-get install -y chromium "
                f"(.ci/run does this as root)")
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))

# pixels of each colour on a canvas: [your ink (#1f2328), the model's orange (#e8590c)]
COUNT_PIXELS = """(selector) => Array.from(document.querySelectorAll(selector)).map((c) => {
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let ink = 0, model = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] < 128) continue;
    const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
    if (r > 190 && g > 50 && g < 130 && b < 70) model++;
    else if (r < 90 && g < 90 && b < 90) ink++;
  }
  return [ink, model];
})"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = make_models(tmp_path_factory.mktemp("draw_models"))
    s = Server(["--model", folder, "--quiet"], tmp_path_factory.mktemp("log") / "err.txt")
    yield s
    stop_and_check(s)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A fresh page on the server, with the console errors and page errors it collects."""

    def __init__(self, browser, server):
        self.context = browser.new_context(viewport={"width": 1280, "height": 860},
                                           accept_downloads=True)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.goto(f"http://127.0.0.1:{server.port}/")
        self.page.wait_for_selector("body[data-state=ready]")

    def draw(self, selector, points):
        """Drag the mouse through ``points`` (fractions of the canvas) on a canvas."""
        box = self.page.locator(selector).bounding_box()
        xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
        self.page.mouse.move(*xy[0])
        self.page.mouse.down()
        for x, y in xy[1:]:
            self.page.mouse.move(x, y)
        self.page.mouse.up()

    def go(self, endpoint):
        """Press the go button; wait for the answer and for the panels to finish drawing."""
        with self.page.expect_response(f"**/api/{endpoint}") as info:
            self.page.click("#go")
        response = info.value
        assert response.status == 200, response.text()
        self.page.wait_for_selector("#results[data-state=done]", timeout=60_000)
        return response.request.post_data_json, response.json()

    def wait_until(self, js, timeout=30.0):
        """Poll a JS expression until it is true (wait_for_function would need eval, which the
        page's Content-Security-Policy forbids)."""
        deadline = time.monotonic() + timeout
        while not self.page.evaluate(js):
            assert time.monotonic() < deadline, f"timed out waiting for {js}"
            time.sleep(0.05)

    def strokes(self, pad="main"):
        return self.page.evaluate(f"window.minisketch.pads.{pad}.strokes.map(s => s.points)")

    def close(self):
        self.context.close()


@pytest.fixture
def page(browser, server):
    p = Page(browser, server)
    yield p
    p.close()


def zigzag(n_per_leg=12):
    """A zigzag of three straight legs, many mouse points on each (RDP keeps the corners)."""
    corners = [(0.2, 0.3), (0.45, 0.7), (0.6, 0.3), (0.8, 0.65)]
    pts = []
    for (x0, y0), (x1, y1) in zip(corners, corners[1:]):
        pts += [(x0 + (x1 - x0) * k / n_per_leg, y0 + (y1 - y0) * k / n_per_leg)
                for k in range(n_per_leg)]
    return pts + [corners[-1]]


def arc(cx, cy, r, a0, a1, n=30):
    return [(cx + r * math.cos(a0 + (a1 - a0) * k / n), cy + r * math.sin(a0 + (a1 - a0) * k / n))
            for k in range(n + 1)]


def page_stroke3(strokes, epsilon=2.0):
    """What the page sends for raw strokes: RDP per stroke, origin at the first point, offsets
    of the points rounded to 1/100."""
    rows, prev = [], None
    for points in strokes:
        kept = rdp(np.asarray(points), epsilon)
        for i, p in enumerate(np.round(kept, 2)):
            prev = p if prev is None else prev
            rows.append([*(p - prev), 1 if i == len(kept) - 1 else 0])
            prev = p
    return np.asarray(rows)


def test_finish_a_mouse_drawing(page, tmp_path):
    pg = page.page
    pg.fill("#seed", "123")
    pg.eval_on_selector("#temperature", "(e) => { e.value = '0.9'; "
                                        "e.dispatchEvent(new Event('input')); }")
    assert pg.text_content("#temperature-value") == "0.90"
    page.draw("#pad-main", zigzag())
    page.draw("#pad-main", arc(0.5, 0.5, 0.15, 0, 2.5))
    raw = page.strokes()
    assert len(raw) == 2 and len(raw[0]) > 30
    request, answer = page.go("complete")
    assert request["seed"] == 123 and request["temperature"] == 0.9 and request["n"] == 4
    sent = request["strokes"]
    # simplified with RDP (epsilon 2 model units) as minisketch.strokes.rdp does
    assert len(sent) < sum(len(s) for s in raw)
    np.testing.assert_allclose(np.asarray(sent), page_stroke3(raw), rtol=0, atol=0.011)
    assert [r[2] for r in sent].count(1) == 2 and sent[-1][2] == 1
    # the answer begins with the drawn strokes, row for row, and adds the model's rows
    assert len(answer["sketches"]) == 4
    for sketch in answer["sketches"]:
        assert sketch[:len(sent)] == sent and len(sketch) > len(sent)
    # every panel shows your ink and, beyond it, the model's strokes
    counts = pg.evaluate(COUNT_PIXELS, "#results canvas")
    assert len(counts) == 4
    assert all(ink > 50 and model > 50 for ink, model in counts), counts
    pg.screenshot(path=tmp_path / "finish.png")
    assert (tmp_path / "finish.png").stat().st_size > 10_000
    assert page.errors == []


def test_every_mode_once(page, tmp_path):
    pg = page.page
    pg.select_option("#model", "vae_hyper")
    pg.click("button[data-mode=variations]")
    page.draw("#pad-main", arc(0.5, 0.5, 0.25, 0, 6.2))
    request, answer = page.go("variations")
    assert request["model"] == "vae_hyper" and len(answer["sketches"]) == 4
    assert all(model > 50 for _, model in pg.evaluate(COUNT_PIXELS, "#results canvas"))

    pg.select_option("#model", "vae_lstm")              # the model with dataset examples
    pg.click("button[data-mode=morph]")
    assert pg.is_visible("#pad-a") and pg.is_visible("#pad-b")
    assert not pg.is_visible("#pad-main")
    page.draw("#pad-a", zigzag())
    with pg.expect_response("**/api/examples?*") as info:
        pg.click(".example[data-pad=b]")
    example = info.value.json()["sketches"][0]
    page.wait_until("window.minisketch.pads.b.strokes.length > 0")
    request, answer = page.go("morph")
    assert request["sketches"][1] == example             # dataset sketches are sent as they are
    assert len(answer["sketches"]) == 4
    captions = pg.locator("#results figcaption span").all_text_contents()
    assert captions[0] == "A" and captions[-1] == "B" and captions[1].startswith("t = ")
    pg.screenshot(path=tmp_path / "morph.png")

    pg.click("button[data-mode=dream]")
    assert not pg.is_visible("#pad-main") and not pg.is_visible("#pad-a")
    pg.fill("#count", "6")
    request, answer = page.go("dream")
    assert request == {"model": "vae_lstm", "n": 6, "temperature": 0.5, "seed": 0}
    assert len(answer["sketches"]) == 6 and pg.locator("#results canvas").count() == 6

    pg.click("button[data-mode=finish]")
    pg.click(".example[data-pad=main]")                 # the first half of a test sketch
    page.wait_until("window.minisketch.pads.main.strokes.length > 0")
    request, answer = page.go("complete")
    assert all(s[:len(request["strokes"])] == request["strokes"] for s in answer["sketches"])
    assert page.errors == []


def test_a_decoder_only_model_offers_finish_and_dream(page):
    pg = page.page
    pg.select_option("#model", "dec_lstm")
    assert pg.is_disabled("button[data-mode=variations]")
    assert pg.is_disabled("button[data-mode=morph]")
    assert pg.is_enabled("button[data-mode=dream]")
    assert not pg.is_visible(".example[data-pad=main]")  # its data is not known
    pg.click("button[data-mode=dream]")
    request, answer = page.go("dream")
    assert request["model"] == "dec_lstm" and len(answer["sketches"]) == 4
    assert page.errors == []


def test_download_svg_and_png(page):
    pg = page.page
    page.draw("#pad-main", zigzag())
    page.go("complete")
    with pg.expect_download() as info:
        pg.locator("#results figure").first.get_by_role("button", name="SVG").click()
    svg = Path(info.value.path()).read_text()
    assert info.value.suggested_filename == "minisketch-finish-1.svg"
    assert svg.startswith("<svg") and 'stroke="#1f2328"' in svg and 'stroke="#e8590c"' in svg
    with pg.expect_download() as info:
        pg.locator("#results figure").nth(1).get_by_role("button", name="PNG").click()
    assert info.value.suggested_filename == "minisketch-finish-2.png"
    assert Path(info.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.errors == []


def test_undo_clear_pen_and_touch(page):
    pg = page.page
    page.draw("#pad-main", zigzag())
    page.draw("#pad-main", arc(0.5, 0.5, 0.1, 0, 3))
    assert len(page.strokes()) == 2
    pg.click("#undo")
    assert len(page.strokes()) == 1
    pg.keyboard.press("Control+z")
    assert page.strokes() == []
    box = pg.locator("#pad-main").bounding_box()
    for kind, pid in (("pen", 7), ("touch", 8)):
        events = [("pointerdown", 0.3), ("pointermove", 0.4), ("pointermove", 0.5),
                  ("pointerup", 0.5)]
        for event, f in events:
            pg.dispatch_event("#pad-main", event, {
                "pointerId": pid, "pointerType": kind, "isPrimary": True, "button": 0,
                "buttons": 0 if event == "pointerup" else 1,
                "clientX": box["x"] + f * box["width"], "clientY": box["y"] + f * box["height"]})
    strokes = page.strokes()
    assert [len(s) for s in strokes] == [3, 3]
    pg.click("#clear")
    assert page.strokes() == [] and pg.get_attribute("#results", "data-state") == "empty"
    pg.click("#go")                                       # nothing drawn: a hint, no request
    assert "Draw something first" in pg.text_content("#status")
    assert page.errors == []


def test_the_page_simplifies_like_minisketch_strokes(page):
    rng = np.random.default_rng(0)
    lines = [np.cumsum(rng.normal(0, s, size=(n, 2)), axis=0)
             for n, s in ((2, 3), (3, 1), (40, 2), (200, 1.5), (120, 6))]
    lines.append(np.stack([np.linspace(0, 50, 30), np.zeros(30)], axis=1))   # collinear
    for eps in (0.0, 2.0, 5.0):
        keep = page.page.evaluate("([lines, eps]) => lines.map("
                                  "(l) => window.minisketch.rdpKeep(l, eps))",
                                  [[line.tolist() for line in lines], eps])
        for line, k in zip(lines, keep):
            np.testing.assert_array_equal(np.asarray(k), rdp_keep(line, eps))
    assert page.errors == []
