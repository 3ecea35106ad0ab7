"""Short version of the service part of tests/reliability.py, on the session's server."""

from __future__ import annotations

import reliability as rel


def test_the_service_answers_fuzzed_requests_without_5xx(server):
    out = rel.service_faults(server, cases=40)
    assert out["server_errors"] == 0 and out["cases"] >= 20, out["operations"]
    assert out["oversized"]["status"].startswith("HTTP/1.1 413")
    assert out["slow_clients"]["health"] == 200


def test_a_short_load_has_no_errors(server):
    out = rel.service_load(server, seconds=2, clients=4, burst=16)
    assert out["errors"] == 0, out["error_kinds"]
    assert out["requests"] > 0 and out["rss_end_mb"] > 0
