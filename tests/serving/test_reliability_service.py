"""Short version of the service part of tests/reliability.py, on the session's server."""

from __future__ import annotations

import random

import attacks
import pytest
import reliability as rel


@pytest.mark.slow
def test_the_service_answers_fuzzed_requests_without_5xx(server):
    out = rel.service_faults(server, cases=40)
    assert out["server_errors"] == 0 and out["cases"] >= 20, out["operations"]
    assert out["oversized"]["status"].startswith("HTTP/1.1 413")
    assert out["slow_clients"]["health"] == 200


def test_a_short_load_has_no_errors(server):
    out = rel.service_load(server, seconds=2, clients=4, burst=16)
    assert out["errors"] == 0, out["error_kinds"]
    assert out["requests"] > 0 and out["rss_end_mb"] > 0


@pytest.mark.parametrize("cls", [c for c in attacks.SERVICE_CLASSES if c != 4])
def test_hostile_requests_of_each_class_get_4xx_json_at_bounded_cost(cls, server):
    """Issue 16, service side: a few generated requests of each class (hundreds in the full
    suite) against the session's server; no 5xx, no hang, bounded CPU and memory."""
    out = attacks.SERVICE[cls](attacks.Server(server), 6, random.Random(cls))
    assert out.cases >= 6 and out.failed == 0, out.failures


def test_stalled_clients_do_not_block_health_and_are_dropped(server, monkeypatch):
    monkeypatch.setattr(attacks, "STALL_SECONDS", 15.0)
    out = attacks.class4(attacks.Server(server), 12, random.Random(4))
    # The session's server has 3 s header and 5 s body deadlines (conftest.LIMITS).
    assert out.cases >= 12 and out.failed == 0, out.failures
