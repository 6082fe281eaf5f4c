"""How events are cut into writer batches does not change the derived tables or the counters.

The writer skips the statements a batch cannot affect (a derived table's upsert when the batch has none of its
event types, the first-terminal lookup when no attempt of the batch ended) and aggregates a batch's tables in
one polars pass; these tests ingest the same events in one request and split so that the skips happen, and
compare every derived table and counter.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from collector.app import create_app
from collector.settings import Settings
from tests.conftest import auth, token_store
from tests.support import event

TABLES = {
    "run_attempts": "SELECT * EXCLUDE (updated_batch, first_batch) FROM run_attempts ORDER BY ALL",
    "kernel_sessions": "SELECT * FROM kernel_sessions ORDER BY ALL",
    "notebooks": "SELECT * FROM notebooks ORDER BY ALL",
    "schedules": "SELECT * FROM schedules ORDER BY ALL",
    "repro_baselines": "SELECT * FROM repro_baselines ORDER BY ALL",
    "metric_counters": "SELECT * FROM metric_counters ORDER BY ALL",
}


def _events() -> list[dict]:
    """Runs (queued, started, then ended; a rerun compared with its baseline), kernels, registry, schedules.

    One terminal event per attempt: the run counters count an attempt's outcome when its first terminal event
    is ingested, which with several terminal events legitimately depends on how they were batched."""
    run = {"notebook_id": "nb1", "team": "a", "trigger": "scheduled", "environment": "prod"}
    hashes = {"input_hash": "i", "parameters_hash": "p", "env_hash": "e"}
    return [
        event("reg", "notebook.registered", {"notebook_id": "nb1", "team": "a", "owner": "o",
                                              "notebook_path": "/x.ipynb"}, time_="2026-11-20T09:00:00Z"),
        event("sch", "notebook.schedule.registered", {"notebook_id": "nb1", "team": "a", "cron": "0 * * * *"},
              time_="2026-11-20T09:01:00Z"),
        event("q1", "notebook.run.queued", {**run, "run_id": "r1"}, time_="2026-11-20T10:00:00Z"),
        event("s1", "notebook.run.started", {**run, "run_id": "r1"}, time_="2026-11-20T10:01:00Z"),
        event("q2", "notebook.run.queued", {**run, "run_id": "r2"}, time_="2026-11-20T10:02:00Z"),
        event("k1", "notebook.kernel.started", {"kernel_id": "k1", "team": "a", "notebook_id": "nb1"},
              time_="2026-11-20T10:03:00Z"),
        event("e1", "notebook.run.succeeded", {**run, "run_id": "r1", "duration_seconds": 30, "output_hash": "o1",
                                                **hashes}, time_="2026-11-20T10:05:00Z"),
        event("kd", "notebook.kernel.died", {"kernel_id": "k1", "team": "a", "reason": "oom", "exit_code": 137},
              time_="2026-11-20T10:06:00Z"),
        event("s2", "notebook.run.started", {**run, "run_id": "r2"}, time_="2026-11-20T10:07:00Z"),
        event("e2", "notebook.run.succeeded", {**run, "run_id": "r2", "duration_seconds": 70, "output_hash": "o2",
                                                **hashes}, time_="2026-11-20T10:09:00Z"),
    ]


def _ingest(db: Path, requests: list[list[dict]]) -> dict[str, list]:
    settings = Settings(db=db, gauge_refresh_seconds=3600)
    tokens = token_store()
    tokens.enabled = settings.auth
    with TestClient(create_app(settings, tokens=tokens)) as client:
        for body in requests:
            r = client.post("/v1/events", json=body, headers=auth("ingest"))
            assert r.status_code == 200, r.text
        with client.app.state.store.read_cursor() as cur:
            return {name: cur.execute(sql).fetchall() for name, sql in TABLES.items()}


# Splits: every event alone (each table's upsert skipped in most batches, and the first-terminal lookup in
# every batch without a terminal event); runs without an end first, then the rest; by kind.
SPLITS = {
    "one_by_one": lambda evs: [[e] for e in evs],
    "no_terminal_first": lambda evs: [evs[:6], evs[6:]],
    "one_attempt_ends_one_does_not": lambda evs: [evs[:5], evs[5:9], evs[9:]],
    "by_kind": lambda evs: [[e for e in evs if "kernel" in e["type"]], [e for e in evs if "kernel" not in e["type"]]],
}


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_split_batches_give_the_derived_tables_and_counters_of_one_batch(tmp_path, split):
    evs = _events()
    whole = _ingest(tmp_path / "whole.duckdb", [evs])
    parts = _ingest(tmp_path / "parts.duckdb", SPLITS[split](evs))
    assert whole["run_attempts"] and whole["kernel_sessions"] and whole["repro_baselines"]
    for name in TABLES:
        assert parts[name] == whole[name], name
