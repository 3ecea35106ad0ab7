"""The service checks JSON pixels against the served model's own input shape, not MNIST's:
a model of 8×8 images takes 64 numbers (flat or 8 rows of 8) and names 64 (8×8) when refused."""

from __future__ import annotations

import orjson
import pytest

from digitnet.serve.inputs import batch_from_json, from_json, plain_pixels
from digitnet.serve.limits import ClientError

SHAPE = (8, 8)


def test_the_models_shape_is_taken_flat_or_in_rows():
    flat = list(range(64))
    rows = [list(range(8 * r, 8 * r + 8)) for r in range(8)]
    for value in (flat, rows):
        assert from_json({"pixels": value}, SHAPE, 10_000).tolist() == [flat]
        body = orjson.dumps({"pixels": value})
        assert plain_pixels(orjson.loads(body), body, SHAPE).tolist() == [flat]
    assert batch_from_json({"pixels": [flat, rows]}, SHAPE, 10_000, 8).shape == (2, 64)


@pytest.mark.parametrize("value, detail", [
    ([0] * 784, "pixels must have 64 values (8×8), got 784"),
    ([[0] * 16] * 4, "pixels in rows must be 8 rows of 8 numbers, got 4 rows of 16"),
    ("x", "pixels must be a list of 64 numbers"),
])
def test_other_counts_are_refused_naming_the_models_shape(value, detail):
    body = orjson.dumps({"pixels": value})
    assert plain_pixels(orjson.loads(body), body, SHAPE) is None  # the slow path explains
    with pytest.raises(ClientError) as err:
        from_json({"pixels": value}, SHAPE, 10_000)
    assert err.value.status_code == 422 and err.value.detail == detail
    with pytest.raises(ClientError, match='"pixels" \\(64 numbers'):
        from_json({}, SHAPE, 10_000)
