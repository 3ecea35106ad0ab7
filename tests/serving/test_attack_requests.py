"""Requests written by an attacker who reads serve/app.py and serve/inputs.py: multipart edge
cases, content types, JSON oddities, method confusion, query strings and paths, against the
session's real `digitnet serve` (tests/serving/conftest.py). Every answer is the right status,
a 4xx carrying {"error", "detail"} in one line, and the server keeps answering /health."""

from __future__ import annotations

import base64
import json

import httpx
import pytest


def png(width: int, height: int) -> bytes:
    """A blank grey PNG."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "PNG")
    return buf.getvalue()


PNG_28 = png(28, 28)


def multipart(parts: list[bytes], boundary: bytes = b"zz") -> tuple[bytes, dict[str, str]]:
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts) + b"--" + boundary + b"--\r\n"
    return body, {"content-type": f"multipart/form-data; boundary={boundary.decode()}"}


def file_part(name: bytes = b"file", filename: bytes = b"a.png", data: bytes = PNG_28) -> bytes:
    return (b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename
            + b'"\r\nContent-Type: image/png\r\n\r\n' + data)


J = {"content-type": "application/json"}
# (label, method, path, body, headers, the statuses that are right)
REQUESTS = [
    ("multipart without a boundary", "POST", "/predict", b"xx",
     {"content-type": "multipart/form-data"}, {400}),
    ("multipart never terminated", "POST", "/predict", b"--zz\r\n" + file_part(),
     {"content-type": "multipart/form-data; boundary=zz"}, {400, 422}),
    ("multipart boundary of 1000 chars", "POST", "/predict", *multipart([file_part()], b"b" * 1000),
     {200, 400}),
    ("multipart filename of 200 kB", "POST", "/predict",
     *multipart([file_part(filename=b"a" * 100_000)]), {400, 413}),
    ("multipart 2000 fields", "POST", "/predict/batch",
     *multipart([b'Content-Disposition: form-data; name="f%d"\r\n\r\nx' % i for i in range(2000)]),
     {400}),
    ("multipart 9 files to a batch of 8", "POST", "/predict/batch",
     *multipart([file_part(b"files")] * 9), {400, 413}),
    ("multipart 2 files to /predict", "POST", "/predict", *multipart([file_part()] * 2), {422}),
    ("multipart unicode, RTL and NUL in the filename", "POST", "/predict",
     *multipart([file_part(filename="\u202e\U0001f600\x00.png".encode())]), {200, 422}),
    ("multipart non-UTF-8 names", "POST", "/predict",
     *multipart([file_part(name=b"\xff\xfe", filename=b"\xff.png")]), {200, 422}),
    ("multipart empty file", "POST", "/predict", *multipart([file_part(data=b"")]), {422}),
    ("multipart fields only", "POST", "/predict",
     *multipart([b'Content-Disposition: form-data; name="file"\r\n\r\nabc']), {422}),
    ("multipart _charset_ field", "POST", "/predict",
     *multipart([b'Content-Disposition: form-data; name="_charset_"\r\n\r\nutf-999']), {422}),
    ("multipart/mixed", "POST", "/predict", *multipart([file_part()])[:1],
     {"content-type": "multipart/mixed; boundary=zz"}, {415}),
    ("form-urlencoded", "POST", "/predict", b"a=b",
     {"content-type": "application/x-www-form-urlencoded"}, {415}),
    ("no content-type", "POST", "/predict", PNG_28, {}, {415}),
    ("image/svg+xml holding a PNG", "POST", "/predict", PNG_28, {"content-type": "image/svg+xml"},
     {200, 422}),
    ("a 1×999,999 PNG (under the pixel limit, decoded row by row)", "POST", "/predict",
     png(1, 999_999), {"content-type": "image/png"}, {413}),
    # The session's server: 1,000,000 px an image, so 4,000,000 px a request (inputs.images)
    ("8 blank 1000² PNGs in JSON (8 Mpx)", "POST", "/predict/batch",
     json.dumps({"images": [base64.b64encode(png(1000, 1000)).decode()] * 8}).encode(), J, {413}),
    ("8 blank 1000² PNGs in multipart (8 Mpx)", "POST", "/predict/batch",
     *multipart([file_part(b"files", data=png(1000, 1000))] * 8), {413}),
    ("4 blank 1000² PNGs (4 Mpx)", "POST", "/predict/batch",
     *multipart([file_part(b"files", data=png(1000, 1000))] * 4), {422}),
    ("image/* to the batch", "POST", "/predict/batch", PNG_28, {"content-type": "image/png"}, {415}),
    ("JSON as latin-1 (UTF-16 bytes)", "POST", "/predict", '{"pixels": []}'.encode("utf-16"),
     {"content-type": "APPLICATION/JSON; charset=latin-1"}, {400}),
    ("JSON with a BOM", "POST", "/predict", b'\xef\xbb\xbf{"pixels": []}', J, {400}),
    ("JSON lone surrogate", "POST", "/predict", b'{"pixels": [], "\\ud800": 1}', J, {400}),
    ("JSON NaN literal", "POST", "/predict", b'{"pixels": [NaN]}', J, {400}),
    ("JSON Infinity literal", "POST", "/predict", b'{"pixels": [Infinity]}', J, {400}),
    ("JSON 784 × 1e400", "POST", "/predict", b'{"pixels": [' + b",".join([b"1e400"] * 784) + b"]}",
     J, {422}),
    ("JSON 784 × 30-digit integers", "POST", "/predict",
     b'{"pixels": [' + b",".join([b"9" * 30] * 784) + b"]}", J, {422}),
    ("JSON 784 × -0.0", "POST", "/predict", json.dumps({"pixels": [-0.0] * 784}).encode(), J, {200}),
    ("JSON 100,000 pixels", "POST", "/predict", json.dumps({"pixels": [0] * 100_000}).encode(), J,
     {413, 422}),
    ("JSON 60,000 empty images", "POST", "/predict/batch",
     b'{"pixels": [' + b",".join([b"[]"] * 60_000) + b"]}", J, {413, 422}),
    ("JSON duplicate keys", "POST", "/predict",
     b'{"pixels": 1, "pixels": ' + json.dumps([0] * 784).encode() + b"}", J, {200, 422}),
    ("JSON a vendor +json type", "POST", "/predict", json.dumps({"pixels": [0] * 784}).encode(),
     {"content-type": "application/evil+json"}, {200}),
    ("JSON 29 ragged rows of 784 values", "POST", "/predict",
     json.dumps({"pixels": [[0] * 27] * 28 + [[0] * 28]}).encode(), J, {422}),
    ("JSON 27 rows then 28 numbers", "POST", "/predict",
     json.dumps({"pixels": [[0] * 28] * 27 + [0] * 28}).encode(), J, {422}),
    ("JSON pixels as an object", "POST", "/predict", b'{"pixels": {"a": 1}}', J, {422}),
    ("JSON 16 rows of 49: 784 numbers, not a 28x28 image", "POST", "/predict",
     json.dumps({"pixels": [[0] * 49] * 16}).encode(), J, {422}),
    ("JSON 16 rows of 49, with a boolean (the slow path)", "POST", "/predict",
     json.dumps({"pixels": [[0] * 49] * 15 + [[0] * 48 + [True]]}).encode(), J, {422}),
    ("JSON a batch of 16 rows of 49", "POST", "/predict/batch",
     json.dumps({"pixels": [[[0] * 49] * 16] * 2}).encode(), J, {422}),
    ("JSON 28 rows of 28 in a batch", "POST", "/predict/batch",
     json.dumps({"pixels": [[[0] * 28] * 28] * 2}).encode(), J, {200}),
    ("JSON 3-deep rows", "POST", "/predict", json.dumps({"pixels": [[[0] * 28] * 28]}).encode(), J,
     {422}),
    ("JSON base64 image not ASCII", "POST", "/predict", json.dumps({"image": "éééé"}).encode(), J,
     {422}),
    ("JSON data: URL without a comma", "POST", "/predict", b'{"image": "data:image/png;base64"}',
     J, {422}),
    ("JSON images of numbers", "POST", "/predict/batch", b'{"images": [1, 2]}', J, {422}),
    ("query of 5000 parameters", "POST", "/predict?" + "explain=true&" * 5000,
     json.dumps({"pixels": [0] * 784}).encode(), J, {200, 400, 414, 431}),
    ("explain=%ff%00", "POST", "/predict?explain=%ff%00", json.dumps({"pixels": [0] * 784}).encode(),
     J, {200, 400}),
    ("path traversal under /static", "GET", "/static/%2e%2e/%2e%2e/etc/passwd", b"", {}, {404}),
    ("path of unicode", "GET", "/\u00e9\u00e9", b"", {}, {404}),
    # httptools knows no method FOO: the server's own JSON 400 (serve.server)
    *[(f"{m} {p}", m, p, b"", {}, {400} if m == "FOO" else {405, 404} if p != "/nope" else {404})
      for m in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO")
      for p in ("/predict", "/predict/batch", "/nope") if not (m == "GET" and p == "/nope")],
    *[(f"{m} {p}", m, p, b"", {}, {405}) for m in ("POST", "PUT", "DELETE")
      for p in ("/health", "/metrics", "/model")],
]


@pytest.mark.parametrize("label,method,path,body,headers,statuses", REQUESTS,
                         ids=[r[0] for r in REQUESTS])
def test_hostile_requests_get_4xx_json(label, method, path, body, headers, statuses, server):
    with httpx.Client(base_url=server, timeout=30) as c:
        r = c.request(method, path, content=body or None, headers=headers)
        assert r.status_code in statuses, (r.status_code, r.text[:300])
        if r.status_code >= 400:
            doc = r.json()
            assert set(doc) == {"error", "detail"} and "\n" not in str(doc["detail"]), doc
        assert c.get("/health").status_code == 200


def test_an_endless_header_is_cut_off_at_the_head_limit(server):
    """httptools bounds no header: one endless value grew in the server's memory until the
    header deadline (about 10 MB/s over loopback). Now 431 after MAX_HEAD_BYTES."""
    import socket
    from urllib.parse import urlsplit

    from digitnet.serve.server import MAX_HEAD_BYTES

    port = urlsplit(server).port
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ")
        sent, chunk = 0, b"a" * 4096
        try:
            while sent < 64 * MAX_HEAD_BYTES:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:  # closed by the server: what is expected
            pass
        answer = s.recv(4096)
    assert sent < 64 * MAX_HEAD_BYTES, "the server read 4 MiB of one header"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431") and json.loads(body)["error"] == "headers_too_large"


def test_headers_under_the_head_limit_with_a_body_in_one_read(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        r = c.post("/predict", content=json.dumps({"pixels": [0] * 784}).encode(),
                   headers={"content-type": "application/json", "x-big": "a" * 60_000})
        assert r.status_code == 200, r.text[:200]
