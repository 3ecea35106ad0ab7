"""The drawing page in a real browser (Debian's Chromium, headless, driven by Playwright):
draw digits stroke by stroke with the mouse and read the prediction the page shows."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
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
def browser():
    """One Chromium for the module's pages."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium (or set DIGITNET_CHROMIUM)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


def open_page(browser, url: str):
    """The drawing page at `url`; yields it, then fails on any script error it raised."""
    page = browser.new_page(viewport={"width": 900, "height": 700})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/")
    yield page
    page.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def page(browser, server):
    yield from open_page(browser, server)


@pytest.fixture(scope="module")
def binary_page(browser, binary_server):
    """The page served for the binary ('is it a 5?') run of tests/conftest.py."""
    yield from open_page(browser, binary_server)


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


def answer_shown(page) -> dict:
    shown_prediction(page)
    return page.evaluate("""() => ({
        verdict: document.querySelector('.answer').dataset.verdict,
        label: document.getElementById('label').textContent,
        confidence: document.getElementById('confidence').textContent,
        top3: Array.from(document.querySelectorAll('#top3 li')).map(li => li.textContent),
        seen: Array.from(document.getElementById('seen').getContext('2d')
                .getImageData(0, 0, 28, 28).data).filter((v, i) => i % 4 === 0),
        why: Array.from(document.getElementById('why').getContext('2d')
                .getImageData(0, 0, 28, 28).data),
    })""")


def test_a_dot_is_not_a_digit(page):
    page.click("#clear")
    draw(page, [[(140, 140), (142, 141)]])
    shown = answer_shown(page)
    assert shown["verdict"] == "empty" and shown["label"] == "?"
    assert shown["confidence"].startswith("not sure: too little ink")


def test_top3_and_explanation_follow_the_answer(page, model):
    page.click("#clear")
    draw(page, DIGITS["7"])
    shown = answer_shown(page)
    seen = np.array(shown["seen"], np.uint8).reshape(28, 28)
    probs = model.predict_proba(seen[None])[0]
    order = np.argsort(-probs)[:3]
    assert shown["top3"] == [f"{d}: {100 * probs[d]:.1f}%" for d in order]
    assert shown["label"] == "7" and shown["verdict"] == ("sure" if probs[7] >= 0.6 else "unsure")
    # the explanation: a red-white-blue 28×28 map, coloured where there is ink, white elsewhere
    why = np.array(shown["why"], np.uint8).reshape(28, 28, 4)[..., :3].astype(int)
    coloured = (why != 255).any(axis=2)
    assert coloured.sum() > 10 and not coloured[seen == 0].any()
    from digitnet.explain import gradient_x_input

    _, attr = gradient_x_input(model, seen[None], [7])
    red = (why[..., 0] == 255) & (why[..., 1] < 250)  # pushed towards 7
    assert red.sum() > 0 and (attr[0][red] > 0).all()


def test_low_top_probability_says_not_sure(page):
    """The server's answer is replaced by one whose best class has 40%: the page must hedge."""
    import json
    import re

    probs = [0.02, 0.01, 0.05, 0.02, 0.35, 0.02, 0.03, 0.05, 0.05, 0.40]
    body = {"label": 9, "probabilities": probs, "model": {},
            "input": [[0] * 28] * 28, "explanation": [[0] * 28] * 28}
    predict = re.compile(r"/predict(\?.*)?$")  # the page asks /predict?explain=true
    page.route(predict, lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(body)))
    try:
        page.click("#clear")
        draw(page, DIGITS["1"])
        shown = answer_shown(page)
    finally:
        page.unroute(predict)
    assert shown["verdict"] == "unsure" and shown["label"] == "9"
    assert shown["confidence"] == "not sure: maybe 9 (40.0%) or 4 (35.0%)"
    assert shown["top3"] == ["9: 40.0%", "4: 35.0%", "2: 5.0%"]


def photo_bytes(digit) -> bytes:
    """A dark-ink digit on white paper, larger than MNIST and off-centre: a user's photo."""
    import io

    from PIL import Image

    paper = Image.new("L", (240, 180), 235)
    paper.paste(Image.fromarray(255 - digit).resize((120, 120)), (90, 40))
    buf = io.BytesIO()
    paper.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def check_photo_answer(page, model, data: bytes) -> None:
    from digitnet.data.images import load_digit

    shown = answer_shown(page)
    expected = load_digit(data)
    assert np.array_equal(np.array(shown["seen"], np.uint8).reshape(28, 28), expected)
    assert shown["label"] == str(int(model.predict(expected[None])[0]))
    assert shown["verdict"] in ("sure", "unsure")
    status = page.locator("#status").inner_text()
    assert status.startswith("Your photo")
    # the photo is drawn on the pad too
    assert page.evaluate("() => Array.from(document.getElementById('pad').getContext('2d')"
                         ".getImageData(0, 0, 280, 280).data).some(v => v < 200)")


def test_upload_a_photo(page, model, mnist, tmp_path):
    data = photo_bytes(mnist.x_test[1])  # a 2
    path = tmp_path / "two.jpg"
    path.write_bytes(data)
    page.click("#clear")
    page.set_input_files("#upload", str(path))
    check_photo_answer(page, model, data)
    assert page.locator("#label").inner_text() == "2"


def test_drop_a_photo_on_the_pad(page, model, mnist):
    import base64

    data = photo_bytes(mnist.x_test[2])  # a 1
    page.click("#clear")
    transfer = page.evaluate_handle("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'one.jpg', {type: 'image/jpeg'}));
        return dt;
    }""", base64.b64encode(data).decode())
    page.dispatch_event("#pad", "dragover", {"dataTransfer": transfer})
    assert "dragover" in page.get_attribute("#pad", "class")
    page.dispatch_event("#pad", "drop", {"dataTransfer": transfer})
    check_photo_answer(page, model, data)
    assert page.locator("#label").inner_text() == "1"


def test_api_docs_link_works_offline(page, server):
    """Everything not on this server is refused: Swagger UI must still draw the API."""
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    docs = page.context.browser.new_page()
    docs.route("**/*", only_local)
    docs.goto(server + "/")
    docs.click("text=API docs")
    docs.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
    paths = docs.locator(".opblock-summary-path").all_inner_texts()
    assert "/predict" in paths and "/predict/batch" in paths
    assert not outside, outside
    docs.close()


def bars_shown(page) -> list[dict]:
    return page.eval_on_selector_all("#bars li", """els => els.map(li => ({
        digit: li.children[0].textContent, pct: li.querySelector('.pct').textContent,
        top: li.classList.contains('top'),
        width: li.querySelector('.fill').getBoundingClientRect().width
               / li.querySelector('.track').clientWidth}))""")


def check_two_bars(page, model) -> str:
    """The answer on the page against the model's probabilities for the image the page says the
    model saw; returns the label shown."""
    shown = answer_shown(page)
    seen = np.array(shown["seen"], np.uint8).reshape(28, 28)
    probs = model.predict_proba(seen[None])[0]
    assert probs.shape == (2,)
    label = int(probs.argmax())
    assert shown["label"] == str(label)
    assert shown["verdict"] == ("sure" if probs[label] >= 0.6 else "unsure")
    assert shown["top3"] == [f"{d}: {100 * probs[d]:.1f}%" for d in np.argsort(-probs)]
    bars = bars_shown(page)
    assert [b["digit"] for b in bars] == ["0", "1"]
    assert [b["pct"] for b in bars] == [f"{100 * p:.1f}%" for p in probs]
    assert [b["top"] for b in bars] == [d == label for d in (0, 1)]
    np.testing.assert_allclose([b["width"] for b in bars], probs, atol=0.01)
    return shown["label"]


def test_a_binary_model_gets_two_bars(binary_page, five, mnist, tmp_path, pytestconfig):
    """A one-sigmoid-unit model ('is it a 5?') answers two classes: the page draws two bars,
    0 (not a 5) and 1 (a 5), each as long as the model's probability, and lists the two."""
    import digitnet

    page, model = binary_page, digitnet.load(five[2])
    page.wait_for_function("() => document.getElementById('model-info').textContent"
                           ".includes('MLP 784-32-1')", timeout=15_000)
    # Before any answer: two bars, and the accuracy on the model's own 500 0/1 test labels.
    info = page.text_content("#model-info")
    accuracy = 100 * model.config["metrics"]["test_accuracy"]
    assert f"{accuracy:.2f}% on the {five[0].name} test set (500 images)" in info
    assert [b["digit"] for b in bars_shown(page)] == ["0", "1"]
    page.click("#clear")
    draw(page, DIGITS["7"])
    assert check_two_bars(page, model) == "0"
    assert mnist.y_test[102] == 5  # one the model, trained on 4,000 images, is sure of
    path = tmp_path / "five.jpg"
    path.write_bytes(photo_bytes(mnist.x_test[102]))
    page.click("#clear")
    page.set_input_files("#upload", str(path))
    assert check_two_bars(page, model) == "1"
    artifacts = pytestconfig.rootpath / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "serve-page-binary.png"))
    page.click("#clear")
    assert [(b["digit"], b["pct"], b["width"]) for b in bars_shown(page)] == [("0", "", 0), ("1", "", 0)]
