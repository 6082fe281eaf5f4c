"""Derived tables maintained incrementally from each committed batch equal a recomputation from scratch."""

from __future__ import annotations

import random

import duckdb
import pytest

from collector.storage import db as dbmod
from collector.storage.schema import STORED_FIELDS
from tests.conftest import auth
from tests.support import database_before, event


def q(client, sql):
    with client.app.state.store.read_cursor() as cur:
        return cur.execute(sql).fetchall()


def post(client, evs):
    r = client.post("/v1/events", json=evs, headers=auth("ingest"))
    assert r.status_code == 200, r.text


RUN = {"run_id": "r1", "notebook_id": "nb", "team": "a", "trigger": "scheduled"}


def test_outcome_is_the_latest_terminal_event_by_event_time_even_when_it_arrives_first(client):
    post(client, [event("t2", "notebook.run.succeeded", {**RUN, "duration_seconds": 5},
                        time_="2026-11-20T10:05:00Z")])
    post(client, [event("s", "notebook.run.started", RUN, time_="2026-11-20T10:00:00Z"),
                  event("t1", "notebook.run.failed", {**RUN, "error_type": "E"}, time_="2026-11-20T10:03:00Z")])
    rows = q(client, "SELECT state, strftime(started_at, '%H:%M'), strftime(ended_at, '%H:%M'), error_type, "
                     "duration_seconds, terminal_events FROM run_attempts")
    assert rows == [("succeeded", "10:00", "10:05", None, 5.0, 2)]


def test_attempts_are_separate_rows(client):
    post(client, [event("a1", "notebook.run.failed", {**RUN, "attempt": 1}),
                  event("a2", "notebook.run.succeeded", {**RUN, "attempt": 2})])
    assert q(client, "SELECT attempt, state FROM run_attempts ORDER BY attempt") == [(1, "failed"), (2, "succeeded")]


def test_queued_then_started_state(client):
    post(client, [event("q", "notebook.run.queued", RUN, time_="2026-11-20T09:59:00Z")])
    assert q(client, "SELECT state FROM run_attempts") == [("queued",)]
    post(client, [event("s", "notebook.run.started", RUN)])
    assert q(client, "SELECT state, strftime(queued_at, '%H:%M') FROM run_attempts") == [("started", "09:59")]


def test_kernel_sessions_accumulate(client):
    k = {"kernel_id": "k1", "team": "ml", "notebook_path": "a.ipynb"}
    post(client, [event("1", "notebook.kernel.started", k, time_="2026-11-20T10:00:00Z"),
                  event("2", "notebook.kernel.restarted", {**k, "reason": "crash"}, time_="2026-11-20T10:01:00Z")])
    post(client, [event("3", "notebook.kernel.restarted", {**k, "reason": "user"}, time_="2026-11-20T10:02:00Z"),
                  event("4", "notebook.kernel.died", {**k, "reason": "oom", "exit_code": -9},
                        time_="2026-11-20T10:03:00Z")])
    post(client, [event("5", "notebook.kernel.shutdown", {**k, "reason": "culled"}, time_="2026-11-20T10:09:00Z")])
    assert q(client, "SELECT team, notebook_path, restarts, crash_restarts, deaths, end_reason, last_exit_code, "
                     "strftime(ended_at, '%H:%M') FROM kernel_sessions") == [
        ("ml", "a.ipynb", 2, 1, 1, "shutdown:culled", -9, "10:09")]


def test_registry_takes_the_latest_value_of_each_field_by_event_time(client):
    reg = {"notebook_id": "nb", "owner": "ana", "team": "fin", "tags": {"tier": "gold"}, "critical": True}
    post(client, [event("r", "notebook.registered", reg, time_="2026-11-01T00:00:00Z")])
    post(client, [event("u2", "notebook.updated", {"notebook_id": "nb", "owner": "bo", "has_tests": True},
                        time_="2026-11-03T00:00:00Z")])
    # a late update (11-02) must not overwrite the owner set on 11-03, but wins over the registration (11-01)
    # for `critical`, and fills a field nobody set yet; each field follows the newest event that set it
    post(client, [event("u1", "notebook.updated", {"notebook_id": "nb", "owner": "old", "critical": False,
                                                   "created_at": "2026-10-01T00:00:00Z"},
                        time_="2026-11-02T00:00:00Z"),
                  event("u3", "notebook.updated", {"notebook_id": "nb", "tags": {"tier": "silver"}},
                        time_="2026-11-04T00:00:00Z")])
    post(client, [event("p", "notebook.promoted", {"notebook_id": "nb"}, time_="2026-11-05T00:00:00Z")])
    assert q(client, "SELECT owner, team, tags::VARCHAR, critical, has_tests, strftime(created_at, '%Y-%m-%d'), "
                     "strftime(promoted_at, '%Y-%m-%d') FROM notebooks") == [
        ("bo", "fin", '{"tier":"silver"}', False, True, "2026-10-01", "2026-11-05")]


def test_registry_is_independent_of_arrival_order(make_client):
    evs = [
        event("r", "notebook.registered", {"notebook_id": "nb", "owner": "a", "team": "t1", "tags": {}},
              time_="2026-11-01T00:00:00Z"),
        event("u1", "notebook.updated", {"notebook_id": "nb", "owner": "b"}, time_="2026-11-03T00:00:00Z"),
        event("u2", "notebook.updated", {"notebook_id": "nb", "owner": "c", "has_tests": True},
              time_="2026-11-02T00:00:00Z"),
        event("u3", "notebook.updated", {"notebook_id": "nb", "has_tests": False}, time_="2026-11-04T00:00:00Z"),
    ]
    results = set()
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        for chunking in (1, 2, 4):
            c = make_client()  # a fresh database per ordering (the file is removed below)
            picked = [evs[i] for i in order]
            for k in range(0, 4, chunking):
                post(c, picked[k:k + chunking])
            results.add(tuple(q(c, "SELECT owner, team, has_tests FROM notebooks")[0]))
            c.__exit__(None, None, None)
            c.app.state.settings.db.unlink()
    assert results == {("b", "t1", False)}


def test_latest_schedule_registration_wins(client):
    post(client, [event("s2", "notebook.schedule.registered", {"notebook_id": "nb", "cron": "0 * * * *"},
                        time_="2026-11-02T00:00:00Z"),
                  event("s1", "notebook.schedule.registered", {"notebook_id": "nb", "cron": "0 0 * * *"},
                        time_="2026-11-01T00:00:00Z")])
    post(client, [event("s0", "notebook.schedule.registered", {"notebook_id": "nb", "cron": "5 5 * * *"},
                        time_="2026-10-01T00:00:00Z")])
    assert q(client, "SELECT cron FROM schedules") == [("0 * * * *",)]


def recompute_runs(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """From scratch over all events: one query, no incremental state."""
    return con.execute("""
        SELECT run_id, attempt,
               coalesce(arg_max(replace(type, 'notebook.run.', ''), (time, id)) FILTER (WHERE type IN
                   ('notebook.run.succeeded','notebook.run.failed','notebook.run.timed_out','notebook.run.cancelled')),
                   CASE WHEN count(*) FILTER (WHERE type = 'notebook.run.started') > 0 THEN 'started' ELSE 'queued' END),
               min(time) FILTER (WHERE type = 'notebook.run.started'),
               max(time) FILTER (WHERE type LIKE 'notebook.run.%' AND type NOT IN ('notebook.run.queued', 'notebook.run.started')),
               count(*) FILTER (WHERE type NOT IN ('notebook.run.queued', 'notebook.run.started'))
        FROM events WHERE run_id IS NOT NULL GROUP BY ALL ORDER BY ALL""").fetchall()


@pytest.mark.parametrize("seed", range(3))
def test_incremental_runs_equal_recomputation_on_random_streams(client, seed):
    rng = random.Random(seed)
    evs = []
    for i in range(300):
        r = rng.randrange(40)
        t = rng.choice(["notebook.run.queued", "notebook.run.started", "notebook.run.succeeded",
                        "notebook.run.failed", "notebook.run.timed_out", "notebook.run.cancelled"])
        evs.append(event(f"e{i}", t, {"run_id": f"r{r}", "notebook_id": "nb", "attempt": rng.randint(1, 2)},
                         time_=f"2026-11-20T10:{rng.randrange(60):02d}:00Z"))
    while evs:
        k = rng.randint(1, 30)
        post(client, evs[:k])
        evs = evs[k:]
    with client.app.state.store.read_cursor() as cur:
        expected = recompute_runs(cur)
        got = cur.execute("SELECT run_id, attempt, state, started_at, ended_at, terminal_events FROM run_attempts "
                          "ORDER BY ALL").fetchall()
    assert got == expected


def test_migrations_are_numbered_and_idempotent(tmp_path):
    versions = [v for v, _, _ in dbmod.migrations()]
    assert versions == sorted(versions) and len(versions) == len(set(versions))
    con = dbmod.connect(tmp_path / "m.duckdb")
    assert dbmod.apply_migrations(con) == []  # already applied
    applied = [v for (v,) in con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()]
    assert applied == versions
    con.close()


VERDICTS = [event("p1", "platform.probe", {"target": "ui", "ok": True, "team": "a"}),
            event("p2", "platform.probe", {"target": "ui", "ok": False, "team": "a"}),
            event("c1", "notebook.quality.checked", {"notebook_id": "nb", "check": "lint", "result": "pass"}),
            event("c2", "notebook.reproducibility.checked", {"notebook_id": "nb", "result": "mismatch"}),
            event("k1", "notebook.kernel.restarted", {"kernel_id": "k", "reason": "oom"}),
            event("k2", "notebook.kernel.died", {"kernel_id": "k", "reason": "crash", "exit_code": -9}),
            event("r1", "notebook.run.succeeded", {**RUN, "duration_seconds": 1}),
            event("a1", "notebook.artifact.published", {"notebook_id": "nb", "artifact": "s3://b/x",
                                                        "sla_seconds": 3600.5, "critical": True}),
            event("a2", "notebook.artifact.published", {"notebook_id": "nb", "artifact": "s3://b/y"}),
            event("a3", "notebook.artifact.retired", {"notebook_id": "nb", "artifact": "s3://b/x"}),
            event("n1", "notebook.registered", {"notebook_id": "nb", "critical": False}),
            event("s1", "notebook.schedule.registered", {"notebook_id": "nb", "cron": "0 * * * *",
                                                         "sla_seconds": 600})]


def test_stored_typed_columns_of_an_older_file_come_from_its_data(client, tmp_path):
    """Migrations 0003 (`ok`, `result`, `reason`) and 0214 (`artifact`, `sla_seconds`, `critical`) fill the typed
    columns of rows stored before them with what the writer stores for the same events now (the SLIs read the
    columns, not the JSON)."""
    post(client, VERDICTS)
    cols = f"SELECT id, {', '.join(STORED_FIELDS)} FROM events ORDER BY id"
    written = q(client, cols)
    assert [r for r in written if any(v is not None for v in r[1:])] == [
        # id, ok, result, reason, artifact, sla_seconds, critical
        ("a1", None, None, None, "s3://b/x", 3600.5, True), ("a2", None, None, None, "s3://b/y", None, None),
        ("a3", None, None, None, "s3://b/x", None, None), ("c1", None, "pass", None, None, None, None),
        ("c2", None, "mismatch", None, None, None, None), ("k1", None, None, "oom", None, None, None),
        ("k2", None, None, "crash", None, None, None), ("n1", None, None, None, None, None, False),
        ("p1", True, None, None, None, None, None), ("p2", False, None, None, None, None, None),
        ("s1", None, None, None, None, 600.0, None)]
    with client.app.state.store.read_cursor() as cur:
        stored = cur.sql(f"SELECT * EXCLUDE ({', '.join(STORED_FIELDS)}) FROM events").to_arrow_table()
    con = database_before(tmp_path / "old.duckdb", 3)
    con.register("stored", stored)
    con.execute("INSERT INTO events BY NAME SELECT * FROM stored")
    applied = dbmod.apply_migrations(con)
    assert 3 in applied and 214 in applied
    assert con.execute(cols).fetchall() == written
    con.close()
