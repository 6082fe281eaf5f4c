"""Schedule-aware slot outcomes (slo/sli/slots.py) and the other paging gauges of issue 15, against outcomes worked
out by hand for a timeline of runs, retries, misses and late finishes.

Events go through the real app (validation, writer, derived tables); the app is then closed and the SLI tables are
folded again at chosen moments (`now`), so the wall clock of the test machine plays no part.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient

from collector.app import create_app
from collector.settings import Settings
from collector.storage import db as dbmod
from slo.sli import missed, slots
from slo.sli.compute import active_kernels, artifact_states
from slo.sli.config import SliConfig
from slo.sli.fold import fold, rebuild
from tests.support import assert_slot_counts_kept, database_before, write_events

T = datetime(2026, 11, 10, 0, 0, tzinfo=timezone.utc)
_ids = itertools.count()


def ev(type_: str, t: datetime, **data) -> dict:
    return {"specversion": "1.0", "id": f"s{next(_ids)}", "source": "test://slots", "type": type_,
            "time": t.isoformat(), "data": data}


def m(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def ingest(tmp_path, events: list[dict]):
    db = tmp_path / "obs.duckdb"
    app = create_app(Settings(db=db, auth=False, gauge_refresh_seconds=3600))
    with TestClient(app) as client:
        r = client.post("/v1/events", json=events)
        assert r.status_code == 200 and r.json()["rejected"] == 0, r.text
    con = dbmod.connect(db)
    con.execute("DELETE FROM sli_slot_outcomes")  # the app's refresher folded at the wall clock: start over
    con.execute("DELETE FROM sli_slot_counts")  # (and kept what it decided as counts)
    return con


CFG = SliConfig(slot_settle_seconds=300)
NB = dict(notebook_id="nb-hourly", team="fin")
RUN = dict(**NB, trigger="scheduled", environment="prod")


def timeline() -> list[dict]:
    """Hourly slots 00:00..05:00 (grace 10 min, SLA 30 min) and what happened to each."""
    return [
        ev("notebook.schedule.registered", m(-1), **NB, cron="0 * * * *", grace_seconds=600, sla_seconds=1800,
           environment="prod"),
        # 00:00 ok
        ev("notebook.run.started", m(1), run_id="r0", **RUN),
        ev("notebook.run.succeeded", m(10), run_id="r0", **RUN),
        # 01:00 attempt 1 fails, the retry succeeds before the deadline: ok, burns nothing
        ev("notebook.run.failed", m(65), run_id="r1", attempt=1, **RUN),
        ev("notebook.run.started", m(67), run_id="r1", attempt=2, **RUN),
        ev("notebook.run.succeeded", m(75), run_id="r1", attempt=2, **RUN),
        # 02:00 no scheduled run (a manual one does not serve the slot): missed
        ev("notebook.run.succeeded", m(123), run_id="manual", **{**RUN, "trigger": "manual"}),
        # 03:00 both attempts fail: failed
        ev("notebook.run.failed", m(185), run_id="r3", attempt=1, **RUN),
        ev("notebook.run.failed", m(190), run_id="r3", attempt=2, **RUN),
        # 04:00 succeeds at 04:45, after the 04:30 deadline: late
        ev("notebook.run.started", m(242), run_id="r4", **RUN),
        ev("notebook.run.succeeded", m(285), run_id="r4", **RUN),
        # 05:00 still running at the deadline (+ settle): late
        ev("notebook.run.started", m(301), run_id="r5", **RUN),
    ]


def outcomes(con) -> dict[str, str | None]:
    return {s.strftime("%H:%M"): o for s, o in con.execute(
        "SELECT slot, outcome FROM sli_slot_outcomes ORDER BY slot").fetchall()}


def test_slot_outcomes_by_final_attempt_and_deadline(tmp_path):
    con = ingest(tmp_path, timeline())
    try:
        # at 03:20: 00:00 and 01:00 ok (decided as soon as the success is folded), 02:00 missed (grace 10 min +
        # settle 5 min passed), 03:00 waits for its deadline (03:30) + settle: its retry may still come
        rebuild(con, CFG, now=m(200))
        assert outcomes(con) == {"00:00": "ok", "01:00": "ok", "02:00": "missed", "03:00": None}
        # at 05:40: 03:00 failed, 04:00 late (ended 04:45 > 04:30), 05:00 late (running at 05:35); 06:00 not due
        fold(con, CFG, now=m(340))
        assert outcomes(con) == {"00:00": "ok", "01:00": "ok", "02:00": "missed", "03:00": "failed",
                                 "04:00": "late", "05:00": "late"}
        assert slots.counts(con) == [("fin", "prod", "failed", 1), ("fin", "prod", "late", 2),
                                     ("fin", "prod", "missed", 1), ("fin", "prod", "ok", 2)]
        # decided once: a later fold (even a much later one) changes no outcome
        fold(con, CFG, now=m(341))
        assert [c for c in slots.counts(con) if c[2] != "missed"] == [
            ("fin", "prod", "failed", 1), ("fin", "prod", "late", 2), ("fin", "prod", "ok", 2)]
        assert_slot_counts_kept(con)
    finally:
        con.close()


def test_a_fold_decides_by_enumeration_alone_new_attempts_alone_and_time_alone(tmp_path):
    """decide() may skip its join only when nothing can have changed: each of the three causes, alone, decides."""
    con = ingest(tmp_path, timeline()[:3] + timeline()[7:9])  # schedule; 00:00 ok at 00:10; 03:00 both fail
    try:
        rebuild(con, CFG, now=m(5))  # 00:00 is not due before 00:10 (grace): nothing enumerated
        assert outcomes(con) == {}
        fold(con, CFG, now=m(11))  # enumeration alone: 00:00's success was folded already
        assert outcomes(con) == {"00:00": "ok"}
        fold(con, CFG, now=m(71))  # 01:00 due, no run yet
        assert outcomes(con) == {"00:00": "ok", "01:00": None}
        write_events(con, [ev("notebook.run.started", m(61), run_id="late-fold", **RUN),
                     ev("notebook.run.succeeded", m(70), run_id="late-fold", **RUN)])
        fold(con, CFG, now=m(72))  # new attempts alone, before 01:15 (grace + settle)
        assert outcomes(con) == {"00:00": "ok", "01:00": "ok"}
        fold(con, CFG, now=m(200))  # 02:00 missed, 03:00 waits for its 03:30 deadline + settle
        assert outcomes(con) == {"00:00": "ok", "01:00": "ok", "02:00": "missed", "03:00": None}
        fold(con, CFG, now=m(216))  # time alone: nothing to fold, nothing enumerated (04:00 is due at 04:10)
        assert outcomes(con)["03:00"] == "failed"
        fold(con, CFG, now=m(251))  # 04:00 due, no run
        assert outcomes(con)["04:00"] is None
        fold(con, CFG, now=m(256))  # time alone, without a run: missed at grace + settle, not at the deadline
        assert outcomes(con)["04:00"] == "missed"
        assert_slot_counts_kept(con)
    finally:
        con.close()


def test_artifact_retire_and_criticality(tmp_path):
    art = dict(team="fin", sla_seconds=3600)
    con = ingest(tmp_path, [
        ev("notebook.registered", m(-600), notebook_id="crit-nb", owner="o", team="fin", tags={}, critical=True),
        ev("notebook.registered", m(-600), notebook_id="plain-nb", owner="o", team="fin", tags={}),
        # stale (age 2 h), critical by its notebook's registry flag
        ev("notebook.artifact.published", m(-120), notebook_id="crit-nb", artifact="a/crit", **art),
        # stale, critical by the publication itself although its notebook is not
        ev("notebook.artifact.published", m(-120), notebook_id="plain-nb", artifact="a/flagged", critical=True,
           **art),
        # fresh, not critical
        ev("notebook.artifact.published", m(-10), notebook_id="plain-nb", artifact="a/fresh", **art),
        # abandoned and retired: no longer tracked; retired then published again: tracked
        ev("notebook.artifact.published", m(-300), notebook_id="plain-nb", artifact="a/old", **art),
        ev("notebook.artifact.retired", m(-200), notebook_id="plain-nb", artifact="a/old", team="fin"),
        ev("notebook.artifact.retired", m(-200), notebook_id="plain-nb", artifact="a/back", team="fin"),
        ev("notebook.artifact.published", m(-5), notebook_id="plain-nb", artifact="a/back", **art),
    ])
    try:
        rebuild(con, CFG, now=m(0))
        # (team, critical, tracked, stale, oldest age)
        assert artifact_states(con, m(0), CFG) == [("fin", False, 2, 0, 600.0), ("fin", True, 2, 2, 7200.0)]
        # before its retirement the abandoned artifact was tracked, and stale (age 90 min > SLA 1 h)
        assert artifact_states(con, m(-210), CFG) == [("fin", False, 1, 1, 60.0 * 90)]
    finally:
        con.close()


def test_active_kernel_sessions(tmp_path):
    k = dict(team="ds")
    con = ingest(tmp_path, [
        ev("notebook.kernel.started", m(-300), kernel_id="long", **k),  # alive for hours, no event since
        ev("notebook.kernel.started", m(-30), kernel_id="ended", **k),
        ev("notebook.kernel.shutdown", m(-5), kernel_id="ended", reason="user", **k),
        ev("notebook.kernel.started", m(-20), kernel_id="died", **k),
        ev("notebook.kernel.died", m(-2), kernel_id="died", reason="oom", **k),
        ev("notebook.kernel.started", m(-60 * 30), kernel_id="orphan", team="ml"),  # no event for 30 h
    ])
    try:
        assert active_kernels(con, m(0), CFG) == [("ds", 1)]
        assert active_kernels(con, m(-10), CFG) == [("ds", 3)]
        assert active_kernels(con, m(-60 * 29), CFG) == [("ml", 1)]
    finally:
        con.close()


def by_day(con) -> dict[str, str | None]:
    return {s.strftime("%m-%d"): o for s, o in con.execute(
        "SELECT slot, outcome FROM sli_slot_outcomes ORDER BY slot").fetchall()}


def test_a_run_queued_hours_ahead_serves_its_slot_and_its_retry_decides(tmp_path):
    """Both scans of run_attempts in decide() are bounded to a day before the oldest undecided slot: a run queued
    20 h ahead naming its slot still serves it, its retry is its final attempt; a stray attempt numbered higher but
    dated two days before the slot lies outside that bound and is not read (docs/alerts.md)."""
    early = ev("notebook.schedule.registered", m(-48 * 60), **NB, cron="0 0 * * *", grace_seconds=600,
               sla_seconds=1800, environment="prod")
    events = [early,
              ev("notebook.run.queued", m(-20 * 60), run_id="q", attempt=1, scheduled_for=T.isoformat(), **RUN),
              ev("notebook.run.failed", m(2), run_id="q", attempt=1, **RUN),
              ev("notebook.run.started", m(3), run_id="q", attempt=2, **RUN),
              ev("notebook.run.succeeded", m(8), run_id="q", attempt=2, **RUN)]
    con = ingest(tmp_path, events)
    try:
        rebuild(con, CFG, now=m(11))  # the day before had no run: missed
        assert by_day(con) == {"11-09": "missed", "11-10": "ok"}
    finally:
        con.close()
    (tmp_path / "failed").mkdir()
    con = ingest(tmp_path / "failed", events[:-1] + [ev("notebook.run.failed", m(8), run_id="q", attempt=2, **RUN),
                                                     ev("notebook.run.succeeded", m(-49 * 60), run_id="q", attempt=3,
                                                        **RUN)])
    try:
        rebuild(con, CFG, now=m(60))
        assert by_day(con) == {"11-09": "missed", "11-10": "failed"}
    finally:
        con.close()


def test_migration_0213_counts_the_slots_stored_before_it(tmp_path):
    """The counters read kept counts (migration 0213): a database whose slot outcomes and misses were stored before
    starts from their counts, then the fold adds what it decides."""
    con = database_before(tmp_path / "old.duckdb", 213)
    rows = [("a", m(0), "fin", "prod", "ok"), ("a", m(60), "fin", "prod", "missed"), ("b", m(0), "ops", "dev", "ok"),
            ("b", m(60), "ops", "dev", None), ("c", m(0), "fin", "prod", "ok")]
    for nb, slot, team, env, outcome in rows:
        con.execute("INSERT INTO sli_slot_outcomes VALUES (?, ?, ?, ?, 300, ?, ?, ?)",
                    [nb, slot, team, env, slot + timedelta(hours=1), outcome, slot if outcome else None])
    for nb, slot, team in (("a", m(60), "fin"), ("b", m(120), "ops"), ("b", m(180), "ops")):
        con.execute("INSERT INTO sli_missed_slots VALUES (?, ?, ?, '0 * * * *', NULL, 300, ?, NULL)",
                    [nb, slot, team, slot])
    con.close()
    con = dbmod.connect(tmp_path / "old.duckdb")
    assert slots.counts(con) == [("fin", "prod", "missed", 1), ("fin", "prod", "ok", 2), ("ops", "dev", "ok", 1)]
    assert con.execute(missed.COUNTS).fetchall() == [("fin", 1), ("ops", 2)]
    assert_slot_counts_kept(con)
