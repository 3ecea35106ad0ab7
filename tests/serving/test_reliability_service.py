"""Short version of the service part of tests/reliability.py, on the session's server."""

from __future__ import annotations

import reliability as rel


def test_the_service_answers_fuzzed_requests_without_5xx(server):
    out = rel.service_faults(server, cases=40)
    assert out["server_errors"] == 0 and out["cases"] >= 20, out["operations"]
    assert out["oversized"]["status"].startswith("HTTP/1.1 413")
    assert out["slow_clients"]["health"] == 200
