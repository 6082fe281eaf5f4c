"""Runs last in the package: after every attack of tests/security, no planted credential is anywhere it could land
(the DuckDB file and WAL, every text column, the logs, /metrics, the dead letters, every response), and the
server's peak memory stayed bounded."""

from __future__ import annotations

import pytest

from tests.security.conftest import PLANTED
from tests.security.test_secrets_e2e import scan_text_columns

pytestmark = pytest.mark.integration

PEAK_RSS_BOUND = 600 * 1024 * 1024  # the 300 MB unauthenticated bodies alone used to add ~1 GB


def test_no_planted_secret_anywhere_and_bounded_memory(server):
    peak = server.peak_rss()
    metrics = server.request("GET", "/metrics").text
    dead = server.request("GET", "/v1/dead-letters", params={"limit": 1000}).text
    server.col.stop()
    db = server.col.db
    raw = db.read_bytes()
    wal = db.with_suffix(".duckdb.wal")
    if wal.exists():
        raw += wal.read_bytes()
    logs = server.col.logs()
    responses = "\n".join(server.responses)
    assert len(server.responses) > 100  # the attacks of this package ran first
    for name, secret in PLANTED.items():
        assert secret.encode() not in raw, f"{name} in the DuckDB file"
        assert secret not in logs, f"{name} in the logs"
        assert secret not in metrics, f"{name} in /metrics"
        assert secret not in dead, f"{name} in the dead letters"
        assert secret not in responses, f"{name} in a response: " + next(
            r[:200] + " ... " + r[max(0, r.find(secret) - 300):r.find(secret) + 100]
            for r in server.responses if secret in r)
    assert not scan_text_columns(db, list(PLANTED.values()))
    assert peak < PEAK_RSS_BOUND, f"peak RSS {peak / 2**20:.0f} MiB"
