"""/docs from local files, and /predict's explanation against the library's gradient × input."""

from __future__ import annotations

import re

import numpy as np

from digitnet.explain import gradient_x_input, normalized


def test_docs_use_only_local_assets(client):
    html = client.get("/docs").text
    assets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', html) + re.findall(r"url: ?'([^']+)'", html)
    assert assets and not [a for a in assets if "://" in a or a.startswith("//")], assets
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200, asset
    js = [a for a in assets if a.endswith(".js")]
    assert js and all(len(client.get(a).content) > 100_000 for a in js)  # Swagger UI itself
    redoc = client.get("/redoc").text
    assert "://" not in "".join(re.findall(r'src="([^"]+)"', redoc))
    page = client.get("/").text
    assert 'href="/docs"' in page


def test_predict_explains_with_gradient_x_input(client, model, mnist):
    x = mnist.x_test[3]
    assert "explanation" not in client.post("/predict", json={"pixels": x.tolist()}).json()
    answer = client.post("/predict", params={"explain": "true"}, json={"pixels": x.tolist()}).json()
    why = np.array(answer["explanation"])
    _, attr = gradient_x_input(model, x[None], [answer["label"]])
    assert why.shape == (28, 28) and np.abs(why).max() == 1.0
    np.testing.assert_allclose(why, normalized(attr)[0], atol=1e-3)
    assert (why[x == 0] == 0).all()
