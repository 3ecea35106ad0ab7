"""The drawing page in a real browser (Debian's Chromium, headless, driven by Playwright):
draw digits stroke by stroke with the mouse and read the prediction the page shows."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("DIGITNET_CHROMIUM", "/usr/bin/chromium")

# Strokes in canvas pixels (280×280), each a list of points the pen passes through.
DIGITS = {
    "1": [[(140, 40), (140, 240)]],
    "7": [[(70, 50), (210, 50), (120, 245)]],
    "0": [[(140 + 65 * math.sin(t / 24 * 2 * math.pi), 140 - 95 * math.cos(t / 24 * 2 * math.pi))
           for t in range(25)]],
    "4": [[(165, 40), (75, 170), (210, 170)], [(165, 100), (165, 250)]],
}


@pytest.fixture(scope="module")
def page(server):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium (or set DIGITNET_CHROMIUM)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 900, "height": 700})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server + "/")
        yield page
        browser.close()
        assert not errors, errors


def draw(page, strokes) -> None:
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
        page.mouse.up()


def shown_prediction(page) -> str:
    """The label once the page has the answer for its latest drawing."""
    page.wait_for_function(
        "() => { const d = document.getElementById('pad').dataset;"
        " return d.version && d.predicted === d.version; }", timeout=15_000)
    return page.locator("#label").inner_text()


@pytest.mark.parametrize("digit", list(DIGITS))
def test_draw_a_digit_and_see_it_recognised(page, digit, pytestconfig):
    page.click("#clear")
    assert page.locator("#label").inner_text() == "?"
    draw(page, DIGITS[digit])
    label = shown_prediction(page)
    artifacts = pytestconfig.rootpath / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / f"serve-page-{digit}.png"))
    assert label == digit
    # The bar chart and the 28×28 image the model saw are on the page.
    widths = page.eval_on_selector_all(
        "#bars .fill", "els => els.map(e => e.getBoundingClientRect().width / e.parentNode.clientWidth)")
    assert len(widths) == 10 and max(widths) == widths[int(digit)] > 0.5
    ink = page.evaluate("() => { const c = document.getElementById('seen').getContext('2d');"
                        " return Array.from(c.getImageData(0, 0, 28, 28).data)"
                        ".filter((v, i) => i % 4 === 0 && v > 128).length; }")
    assert ink > 10


def test_clear_resets_the_page(page):
    draw(page, DIGITS["1"])
    shown_prediction(page)
    page.click("#clear")
    assert page.locator("#label").inner_text() == "?"
    assert page.locator("#confidence").inner_text() == ""
    blank = page.evaluate("() => Array.from(document.getElementById('pad').getContext('2d')"
                          ".getImageData(0, 0, 280, 280).data).every(v => v === 255)")
    assert blank
