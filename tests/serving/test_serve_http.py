"""The HTTP API against a real `digitnet serve` on 127.0.0.1: answers, limits and errors."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from digitnet.data.images import load_digit


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def on_paper(digit: np.ndarray) -> bytes:
    """An MNIST digit as a user would draw it: dark ink on white, larger, off-centre."""
    page = Image.new("L", (200, 160), 255)
    page.paste(Image.fromarray(255 - digit).resize((112, 112)), (70, 30))
    buf = io.BytesIO()
    page.save(buf, "PNG")
    return buf.getvalue()


def test_health_and_model(client, model):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"]["architecture"] == "784-64-64-10"
    info = client.get("/model").json()
    assert info["metrics"]["test_accuracy"] == pytest.approx(model.config["metrics"]["test_accuracy"])
    assert info["spec"]["hidden"] == [64, 64] and info["num_params"] == 55050
    assert info["limits"] == {"max_body_bytes": 256 * 1024, "max_batch": 8, "max_image_pixels": 1_000_000}
    assert info["limits"]["max_body_bytes"] < BIG  # what the limit tests below rely on


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    body = paths["/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data", "image/png"} <= set(body)
    assert "/predict/batch" in paths and "/model" in paths


def test_predict_pixels_matches_the_library(client, model, mnist):
    for i in range(5):
        x = mnist.x_test[i]
        flat = client.post("/predict", json={"pixels": x.reshape(-1).tolist()}).json()
        rows = client.post("/predict", json={"pixels": x.tolist()}).json()
        expected = model.predict_proba(x[None])[0]
        assert flat["label"] == rows["label"] == int(expected.argmax())
        np.testing.assert_allclose(flat["probabilities"], expected, atol=1e-6)
        assert flat["input"] == x.tolist() and flat["model"]["name"] == "tutorial-1epoch"


def test_predict_image_three_ways(client, model, mnist):
    data = on_paper(mnist.x_test[0])
    seen = load_digit(data)
    expected = int(model.predict(seen[None])[0])
    answers = [
        client.post("/predict", files={"file": ("seven.png", data, "image/png")}),
        client.post("/predict", content=data, headers={"content-type": "image/png"}),
        client.post("/predict", json={"image": base64.b64encode(data).decode()}),
        client.post("/predict", json={"image": "data:image/png;base64," + base64.b64encode(data).decode()}),
    ]
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.json()["label"] == expected == 7
        assert r.json()["input"] == seen.tolist()


def test_batch(client, model, mnist):
    x = mnist.x_test[:8]
    r = client.post("/predict/batch", json={"pixels": [a.tolist() for a in x]})
    assert r.status_code == 200, r.text
    labels = [p["label"] for p in r.json()["predictions"]]
    assert labels == model.predict(x).tolist()
    images = [base64.b64encode(on_paper(a)).decode() for a in x[:3]]
    r = client.post("/predict/batch", json={"images": images})
    assert [p["label"] for p in r.json()["predictions"]] == \
        model.predict(np.stack([load_digit(on_paper(a)) for a in x[:3]])).tolist()
    files = [("files", (f"{i}.png", on_paper(a), "image/png")) for i, a in enumerate(x[:3])]
    r = client.post("/predict/batch", files=files)
    assert [p["label"] for p in r.json()["predictions"]] == labels[:3]


def chunks(data: bytes, size: int = 16384):
    for i in range(0, len(data), size):
        yield data[i : i + size]


PIXELS = [0] * 784
BIG = 300_000  # over the server's 256 KiB limit (see conftest.py)


@pytest.mark.parametrize("path, kwargs, status, code", [
    ("/predict", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415,
     "unsupported_media_type"),
    ("/predict", {"content": b'{"pixels": []}'}, 415, "unsupported_media_type"),
    ("/predict", {"content": b'{"pixels": [1, 2', "headers": {"content-type": "application/json"}},
     400, "malformed_json"),
    ("/predict", {"content": b"", "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
    ("/predict", {"json": [1, 2, 3]}, 422, "invalid_input"),
    ("/predict", {"json": {}}, 422, "invalid_input"),
    ("/predict", {"json": {"pixels": PIXELS, "image": "AAAA"}}, 422, "invalid_input"),
    ("/predict", {"json": {"pixels": [0] * 783}}, 422, "wrong_pixel_count"),
    ("/predict", {"json": {"pixels": [[0] * 28] * 27}}, 422, "wrong_pixel_count"),
    ("/predict", {"json": {"pixels": "0" * 784}}, 422, "invalid_pixels"),
    ("/predict", {"json": {"pixels": ["0"] * 784}}, 422, "invalid_pixels"),
    ("/predict", {"json": {"pixels": [True] * 784}}, 422, "invalid_pixels"),
    ("/predict", {"json": {"pixels": [None] * 784}}, 422, "invalid_pixels"),
    ("/predict", {"json": {"pixels": [[[0]]] * 784}}, 422, "invalid_pixels"),
    ("/predict", {"content": ('{"pixels": [NaN' + ", 0" * 783 + "]}").encode(),
                  "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
    ("/predict", {"content": ('{"pixels": [1e999' + ", 0" * 783 + "]}").encode(),
                  "headers": {"content-type": "application/json"}}, 422, "invalid_pixels"),
    ("/predict", {"json": {"pixels": [256] + [0] * 783}}, 422, "pixel_out_of_range"),
    ("/predict", {"json": {"pixels": [-1] + [0] * 783}}, 422, "pixel_out_of_range"),
    ("/predict", {"json": {"image": "not base64!"}}, 422, "invalid_base64"),
    ("/predict", {"json": {"image": 42}}, 422, "invalid_image"),
    ("/predict", {"json": {"image": base64.b64encode(b"GIF89a nope").decode()}}, 422, "invalid_image"),
    ("/predict", {"files": {"file": ("notes.txt", b"not an image", "text/plain")}}, 422, "invalid_image"),
    ("/predict", {"files": {"file": ("cut.png", png(np.zeros((28, 28)))[:40], "image/png")}}, 422,
     "invalid_image"),
    ("/predict", {"content": png(np.full((50, 50), 255)), "headers": {"content-type": "image/png"}},
     422, "invalid_image"),
    ("/predict", {"content": b"", "headers": {"content-type": "image/png"}}, 422, "invalid_image"),
    ("/predict", {"data": {"name": "x"}, "files": {"other": ("a.txt", b"", "text/plain")}}, 422,
     "invalid_image"),
    ("/predict", {"content": b"--b--\r\n", "headers": {"content-type": "multipart/form-data; boundary=b"}},
     422, "invalid_input"),
    ("/predict", {"files": [("f", ("a.png", png(np.eye(28) * 255), "image/png"))] * 2}, 422,
     "invalid_input"),
    ("/predict", {"content": png(np.full((1001, 1000), 255)), "headers": {"content-type": "image/png"}},
     413, "image_too_large"),
    ("/predict", {"content": b"x" * BIG, "headers": {"content-type": "image/png"}}, 413, "body_too_large"),
    ("/predict", {"content": chunks(b"x" * BIG), "headers": {"content-type": "image/png"}}, 413,
     "body_too_large"),
    ("/predict/batch", {"json": {"pixels": [PIXELS] * 9}}, 413, "batch_too_large"),
    ("/predict/batch", {"json": {"pixels": []}}, 422, "invalid_input"),
    ("/predict/batch", {"json": {"pixels": PIXELS}}, 422, "invalid_pixels"),
    ("/predict/batch", {"json": {"images": "AAAA"}}, 422, "invalid_input"),
    ("/predict/batch", {"content": png(np.eye(28)), "headers": {"content-type": "image/png"}}, 415,
     "unsupported_media_type"),
    ("/predict/batch", {"files": [("f", ("a.png", png(np.eye(28) * 255), "image/png"))] * 9}, 400,
     "bad_request"),
])
def test_client_mistakes_get_a_clear_4xx(client, path, kwargs, status, code):
    r = client.post(path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code and isinstance(body["detail"], str) and body["detail"]


def test_unknown_routes_and_methods_are_json(client):
    r = client.get("/predict")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_still_healthy_after_the_mistakes(client):
    assert client.get("/health").json()["status"] == "ok"
    with pytest.raises(httpx.HTTPStatusError):
        client.post("/predict", json={"pixels": [1]}).raise_for_status()


@pytest.mark.parametrize("args, message", [
    (["/no/such/run"], "no such run directory"),
    (["RUN", "--max-batch", "0"], "max_batch must be a positive integer"),
])
def test_serve_refuses_bad_arguments(run_dir, args, message, capsys):
    from digitnet.cli import main

    args = [str(run_dir) if a == "RUN" else a for a in args]
    assert main(["serve", *args]) == 2
    assert message in capsys.readouterr().err


def test_page_is_self_contained(client):
    """The page and its assets come from the server itself: no CDN, works offline."""
    page = client.get("/")
    assert page.status_code == 200 and 'id="pad" width="280" height="280"' in page.text
    for asset, kind in [("/static/app.js", "javascript"), ("/static/style.css", "css")]:
        r = client.get(asset)
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "http://" not in r.text and "https://" not in r.text
    assert "http://" not in page.text and "https://" not in page.text


def test_concurrent_requests_all_answered(server, model, mnist):
    """Many clients at once (pixels and images, single and batch) get every answer right."""
    from concurrent.futures import ThreadPoolExecutor

    x = mnist.x_test[:48]
    expected = model.predict(x).tolist()

    def ask(i: int) -> int:
        with httpx.Client(base_url=server, timeout=60) as c:
            if i % 3 == 2:
                r = c.post("/predict/batch", json={"pixels": [x[i].tolist()] * 5})
                labels = {p["label"] for p in r.json()["predictions"]}
                assert len(labels) == 1
                return labels.pop()
            return c.post("/predict", json={"pixels": x[i].reshape(-1).tolist()}).json()["label"]

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(ask, range(len(x)))) == expected
