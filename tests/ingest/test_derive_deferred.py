"""The collector's writer acknowledges a request once its events are committed and folds them into the derived
tables in a later transaction, several batches at once (collector/ingest/writer.py: `defer_derive`). What must
hold: the derived tables and counters are what deriving in each batch's own transaction gives; a read after an
acknowledgement sees it (the barrier in Store.cursor and /metrics); a batch committed and not derived when the
process died is derived on the next start; a batch that cannot be derived holds back no other; and readers that
keep state by batch never read past the last derived one."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone

import pytest

from collector.contract.vectorized import validate_json_items
from collector.ingest import writer as writer_mod
from collector.ingest.writer import Writer, _Write
from collector.metrics.counters import CounterStore
from collector.storage import db as dbmod
from collector.storage.queries import DERIVED_THROUGH
from tests.ingest.test_run_lookback import TABLES, _stream
from tests.conftest import auth
from tests.support import database_before, event, metric_sum, parse_metrics, refuse_to_derive



def _batches(seed: int) -> list[list[dict]]:
    events = _stream(seed)
    rnd = random.Random(seed)
    cuts = sorted(rnd.sample(range(1, len(events)), 15))
    return [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)])]


def _tables(con) -> list:
    return [con.execute(q).fetchall() for q in TABLES]


def _sync(tmp_path, batches: list[list[dict]]) -> list:
    """The reference: each batch derived in its own transaction."""
    con = dbmod.connect(tmp_path / "sync.duckdb")
    w = Writer(con, CounterStore())
    w.start()
    try:
        for b in batches:
            w.submit(validate_json_items(b).table, []).result(timeout=30)
    finally:
        w.stop()
    rows = _tables(con)
    con.close()
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_deriving_after_the_acknowledgement_gives_what_each_batch_alone_gives(tmp_path, seed):
    batches = _batches(seed)
    con = dbmod.connect(tmp_path / "deferred.duckdb")
    # the writer derives only when asked (or after an hour)
    w = Writer(con, CounterStore(), defer_derive=True, derive_delay=3600)
    w.start()
    try:
        for b in batches:
            w.submit(validate_json_items(b).table, []).result(timeout=30)
        # acknowledged, and not derived yet: the events are stored, the attempts are not
        assert w.derive_lag_events == sum(map(len, batches)) - 5  # the stream repeats 5 events
        assert con.cursor().execute("SELECT count(*) FROM run_attempts").fetchone()[0] == 0
        assert con.cursor().execute(DERIVED_THROUGH).fetchone()[0] == 0
        assert w.wait_derived(timeout=30)
        assert w.derive_lag_events == 0
        assert w.stats.derives == 1  # all the batches in one transaction
        stored = con.cursor().execute("SELECT max(batch_id) FROM ingest_batches").fetchone()[0]
        assert con.cursor().execute(DERIVED_THROUGH).fetchone()[0] == stored
    finally:
        w.stop()
    got = _tables(con)
    con.close()
    assert got == _sync(tmp_path, batches)
    assert got[0] and got[3]  # not vacuous


def _commit_events(w: Writer, batches: list[list[dict]]) -> None:
    """Each batch's events committed and the batch pended, as the writer's thread does before it answers."""
    for b in batches:
        t = validate_json_items(b).table
        w._transaction_once([_Write(t, [], "http", None, Future(), t.num_rows)], exhaustive=False, derive=False)


def test_a_batch_committed_and_not_derived_is_derived_on_the_next_start(tmp_path):
    batches = _batches(7)
    path = tmp_path / "crashed.duckdb"
    con = dbmod.connect(path)
    w = Writer(con, CounterStore(), defer_derive=True)  # not started: its transactions run here
    _commit_events(w, batches[:9])
    w._derive()  # the first nine derived
    _commit_events(w, batches[9:])
    first_pending = w._pending[0][0]
    assert con.execute(DERIVED_THROUGH).fetchone()[0] == first_pending - 1
    con.close()  # the process dies: the pending batches are only in the database's events

    con = dbmod.connect(path)
    counters = CounterStore()
    counters.load(con)
    again = Writer(con, counters, defer_derive=True)
    again.start()  # derives them before anything else
    again.stop()
    assert con.execute("SELECT count(*) FROM ingest_batches WHERE NOT derived").fetchone()[0] == 0
    got = _tables(con)
    con.close()
    assert got == _sync(tmp_path, batches)


def test_a_batch_left_underived_that_cannot_be_read_back_does_not_stop_the_start(tmp_path, monkeypatch, caplog):
    batches = _batches(3)
    path = tmp_path / "crashed.duckdb"
    con = dbmod.connect(path)
    w = Writer(con, CounterStore(), defer_derive=True)  # not started: its transactions run here
    _commit_events(w, batches[:2])
    bad, good = w._pending[0][0], w._pending[1][0]
    con.close()  # the process dies with both batches not derived

    real = writer_mod.typed_from_stored
    monkeypatch.setattr(writer_mod, "typed_from_stored",  # the first batch's rows cannot be read back
                        lambda rel: real(rel) + f" WHERE CASE WHEN $b = {bad} THEN error('unreadable') ELSE true END")
    con = dbmod.connect(path)
    again = Writer(con, CounterStore(), defer_derive=True)
    with caplog.at_level(logging.ERROR, logger="collector.ingest.writer"):
        again.start()  # starts all the same
    again.stop()
    assert again.stats.derive_failures == 1
    assert f"deriving batch {bad} failed" in caplog.text
    assert con.execute("SELECT count(*) FROM ingest_batches WHERE NOT derived").fetchone()[0] == 0
    assert con.execute(DERIVED_THROUGH).fetchone()[0] == good
    assert con.execute("SELECT count(*) FROM run_attempts").fetchone()[0] > 0  # the other batch was derived
    con.close()


def test_a_batch_that_cannot_be_derived_holds_back_no_other(tmp_path, monkeypatch, caplog):
    refuse_to_derive(monkeypatch, "r-poison")
    con = dbmod.connect(tmp_path / "w.duckdb")
    w = Writer(con, CounterStore(), defer_derive=True, derive_delay=3600)
    w.start()
    try:
        for i in ("a", "poison", "b"):
            got = validate_json_items([event(i, "notebook.run.succeeded",
                                             {"run_id": f"r-{i}", "notebook_id": "nb", "team": "t"})])
            assert w.submit(got.table, []).result(timeout=30).statuses == ["accepted"]
        with caplog.at_level(logging.ERROR, logger="collector.ingest.writer"):
            assert w.wait_derived(timeout=30)
    finally:
        w.stop()
    assert w.stats.derive_failures == 1
    assert con.execute("SELECT run_id FROM run_attempts ORDER BY 1").fetchall() == [("r-a",), ("r-b",)]
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 3  # acknowledged: kept
    # its events are counted as ingested all the same (those counters need nothing derived)
    assert con.execute("SELECT sum(value) FROM metric_counters WHERE name = 'observatory_events_ingested_total'"
                       ).fetchone()[0] == 3
    assert con.execute(DERIVED_THROUGH).fetchone()[0] == con.execute("SELECT max(batch_id) FROM ingest_batches"
                                                                     ).fetchone()[0]
    assert "failed (RuntimeError)" in caplog.text and "r-poison" not in caplog.text  # no value in the log
    con.close()


@pytest.mark.parametrize(("batches", "through"), [
    ([], 0),
    ([(1, True), (2, True)], 2),
    ([(1, True), (2, False), (3, False)], 1),
    ([(1, False)], 0),
    ([(1, True), (2, False), (3, True)], 1),  # 3 had nothing to derive; 2 is pending
    ([(1, True), (4, True), (6, False)], 5),  # ids a rolled-back transaction took are skipped
])
def test_derived_through_is_the_batch_before_the_first_not_derived(tmp_path, batches, through):
    con = dbmod.connect(tmp_path / "w.duckdb")
    for b, derived in batches:
        con.execute("INSERT INTO ingest_batches VALUES (?, now(), 1, 0, 0, ?)", [b, derived])
    assert con.execute(DERIVED_THROUGH).fetchone()[0] == through
    con.close()


def test_a_read_after_the_acknowledgement_sees_it(make_client):
    """The writer would derive only after an hour; each read asks for it."""
    c = make_client()
    c.app.state.store.writer.derive_delay = 3600
    t0 = datetime.now(timezone.utc) - timedelta(minutes=5)
    evs = [event(f"rw-{k}", "notebook.run.succeeded",
                 {"run_id": f"rw-{k}", "notebook_id": "nb-rw", "team": "rw", "duration_seconds": 3.0},
                 time_=(t0 + timedelta(seconds=k)).isoformat()) for k in range(3)]
    for ev in evs[:2]:
        r = c.post("/v1/events", json=[ev], headers=auth("ingest"))
        assert r.status_code == 200, r.text
        got = c.get(f"/v1/runs/{ev['data']['run_id']}", headers=auth("read"))
        assert got.status_code == 200, got.text
        assert got.json()["state"] == "succeeded"
    assert c.post("/v1/events", json=[evs[2]], headers=auth("ingest")).status_code == 200
    samples = parse_metrics(c.get("/metrics", headers=auth("read")).text)  # its counter is written with the runs
    assert metric_sum(samples, "notebook_run_attempts_total") == 3


def test_the_sli_fold_reads_no_batch_past_the_last_derived_one(tmp_path):
    """A fold that runs while a batch is committed and not derived (a cursor that does not wait) must stop before
    it: its events without their run attempts would be kept wrong. Once derived, the next fold catches up and the
    kept state equals the direct computation."""
    from slo.sli import fold as F
    from tests.slo.test_sli_fold_sides import T, Collector, _batches

    col = Collector(tmp_path)
    try:
        store = col.app.state.store
        first, second, _ = _batches()
        col.post(first)
        done = col.fold().to_batch
        col.assert_incremental_equals_direct()
        store.refresher.stop()  # its reads would make the writer derive
        store.writer.derive_delay = 3600
        col.post(second)  # acknowledged, not derived
        assert store.writer.derive_lag_events == len(second)
        with store.read_cursor(settled=False) as cur:
            assert cur.execute(DERIVED_THROUGH).fetchone()[0] == done
            st = F.fold(cur, now=T)
        assert st.to_batch == done and st.attempts == 0  # nothing past the last derived batch
        assert store.writer.derive_lag_events == len(second)  # and that cursor did not make the writer derive
        st = col.fold()  # a settled cursor: the writer derives first
        assert st.to_batch > done and st.attempts > 0
        col.assert_incremental_equals_direct()
    finally:
        col.close()


def _blocking_deriver(monkeypatch) -> tuple[threading.Event, threading.Event, list[str]]:
    """`fold_batches` made to wait for `release` (after setting `entered`); the threads it ran on."""
    entered, release, threads = threading.Event(), threading.Event(), []
    real = writer_mod.fold_batches

    def blocking(con, batches, **kw):
        threads.append(threading.current_thread().name)
        entered.set()
        assert release.wait(60)
        return real(con, batches, **kw)

    monkeypatch.setattr(writer_mod, "fold_batches", blocking)
    return entered, release, threads


def test_the_writer_commits_and_answers_while_the_deriver_works(tmp_path, monkeypatch):
    """The derived rows are written by a thread of their own, on a connection of its own, so a derive in progress
    holds back no acknowledgement; the result is still what deriving each batch as itself, in order, gives."""
    batches = _batches(5)
    entered, release, threads = _blocking_deriver(monkeypatch)
    con = dbmod.connect(tmp_path / "w.duckdb")
    w = Writer(con, CounterStore(), defer_derive=True)
    w.start()
    try:
        w.submit(validate_json_items(batches[0]).table, []).result(timeout=30)
        assert entered.wait(30)  # the deriver is inside the first batch's derive, and stays there
        for b in batches[1:]:  # every later batch is committed and answered meanwhile
            assert w.submit(validate_json_items(b).table, []).result(timeout=30).statuses
        assert con.cursor().execute(DERIVED_THROUGH).fetchone()[0] == 0
        assert w.derive_lag_events > 0
        release.set()
        assert w.wait_derived(timeout=60)
    finally:
        release.set()
        w.stop()
    assert set(threads) == {"duckdb-deriver"}
    got = _tables(con)
    con.close()
    assert got == _sync(tmp_path, batches)


def test_the_writer_waits_for_a_deriver_that_falls_behind(tmp_path, monkeypatch):
    """What is committed and not derived is held in memory: once `max_batch_events` such events wait (the batch
    being derived included), the writer commits nothing more until the deriver catches up (the queue fills, clients
    get 429), and loses nothing."""
    entered, release, _ = _blocking_deriver(monkeypatch)
    con = dbmod.connect(tmp_path / "w.duckdb")
    w = Writer(con, CounterStore(), defer_derive=True, max_batch_events=3, max_queue_events=6)
    w.start()
    try:
        runs = [validate_json_items([event(f"e{i}", "notebook.run.succeeded",
                                           {"run_id": f"r{i}", "notebook_id": "nb", "team": "t"})]).table
                for i in range(9)]
        w.submit(runs[0], []).result(timeout=30)
        assert entered.wait(30)  # the deriver holds the first batch
        for t in runs[1:3]:  # 1, then 2 events behind: still committed
            w.submit(t, []).result(timeout=30)
        assert w.derive_lag_events == 3
        assert w.stats.deriver_wait_seconds == 0  # nothing held yet
        held_from = time.perf_counter()
        held = [w.submit(t, []) for t in runs[3:9]]  # the queue is full of what the writer holds
        with pytest.raises(writer_mod.QueueFull):
            w.submit(runs[0], [])
        time.sleep(0.3)
        assert not any(f.done() for f in held)
        assert w.derive_lag_events == 3
        release.set()
        for f in held:
            assert f.result(timeout=60).statuses == ["accepted"]
        held_for = time.perf_counter() - held_from
        # The writer counts the time it held commits (observatory_writer_deriver_wait_seconds_total): at least the
        # 0.3 s above, at most the time since it began to hold.
        assert 0.3 <= w.stats.deriver_wait_seconds <= held_for
        assert w.wait_derived(timeout=60)
        assert w.derive_lag_events == 0
    finally:
        release.set()
        w.stop()
    assert con.execute("SELECT count(*) FROM run_attempts").fetchone()[0] == 9
    con.close()


def test_counter_parts_sum_into_metric_counters(tmp_path):
    """Migration 0209: the counters stored before it are the `events` part; `metric_counters` is the parts' sum."""
    con = database_before(tmp_path / "old.duckdb", 209)
    con.execute("INSERT INTO metric_counters VALUES ('notebook_reproducibility_checks_total', "
                "'{\"result\":\"match\",\"team\":\"a\"}', 5), ('observatory_events_duplicate_total', '{}', 2)")
    assert 209 in dbmod.apply_migrations(con)
    CounterStore.persist(con, {("notebook_reproducibility_checks_total", (("result", "match"), ("team", "a"))): 3.0},
                         "derived")
    CounterStore.persist(con, {("notebook_reproducibility_checks_total", (("result", "match"), ("team", "a"))): 1.0})
    assert con.execute("SELECT part, name, value FROM metric_counter_parts ORDER BY ALL").fetchall() == [
        ("derived", "notebook_reproducibility_checks_total", 3.0),
        ("events", "notebook_reproducibility_checks_total", 6.0),
        ("events", "observatory_events_duplicate_total", 2.0)]
    counters = CounterStore()
    counters.load(con)
    assert counters.value("notebook_reproducibility_checks_total", team="a") == 9.0
    assert counters.value("observatory_events_duplicate_total") == 2.0
    con.close()


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="threads have no nice value of their own here")
def test_the_deriver_yields_the_cpu_to_the_acknowledgement_path(tmp_path):
    """The deriver runs at a lower CPU priority than the writer (its own nice value, raised by `deriver_nice`),
    and still derives everything."""
    con = dbmod.connect(tmp_path / "w.duckdb")
    w = Writer(con, CounterStore(), defer_derive=True, deriver_nice=7)
    w.start()
    try:
        for b in _batches(1)[:3]:
            w.submit(validate_json_items(b).table, []).result(timeout=30)
        assert w.wait_derived(timeout=30)
        base = os.getpriority(os.PRIO_PROCESS, w._thread.native_id)
        assert os.getpriority(os.PRIO_PROCESS, w._deriver.native_id) == min(19, base + 7)
    finally:
        w.stop()
    assert con.execute("SELECT count(*) FROM run_attempts").fetchone()[0] > 0
    con.close()


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="threads have no nice value of their own here")
def test_the_collector_sets_its_derivers_priority_from_the_settings(make_client):
    """`OBSERVATORY_DERIVER_NICE` reaches the collector's deriver."""
    w = make_client(deriver_nice=4).app.state.store.writer
    base = os.getpriority(os.PRIO_PROCESS, w._thread.native_id)
    assert os.getpriority(os.PRIO_PROCESS, w._deriver.native_id) == min(19, base + 4) > base


def _run_events(prefix: str, n: int):
    return validate_json_items([event(f"{prefix}{i}", "notebook.run.succeeded",
                                      {"run_id": f"{prefix}{i}", "notebook_id": "nb", "team": "t"})
                                for i in range(n)]).table


def _lag_once_settled(w: Writer, timeout: float = 30.0) -> int:
    """The derive lag once it stops falling (without asking for a fold, as `wait_derived` would)."""
    end = time.monotonic() + timeout
    while w.derive_lag_events and time.monotonic() < end:
        time.sleep(0.02)
    return w.derive_lag_events


def test_the_deriver_folds_once_the_oldest_batch_has_waited_the_delay(tmp_path):
    """`derive_delay`: acknowledged events wait that long for the deriver (so a pass folds more under load), and
    are then folded with no read asking."""
    con = dbmod.connect(tmp_path / "w.duckdb")
    w = Writer(con, CounterStore(), defer_derive=True, derive_delay=1.0)
    w.start()
    try:
        acked = time.monotonic()
        w.submit(_run_events("a", 3), []).result(timeout=30)
        w.submit(_run_events("b", 2), []).result(timeout=30)
        lag = w.derive_lag_events
        assert _lag_once_settled(w) == 0
        if time.monotonic() - acked < 0.9:  # checked in time: both batches were still waiting
            assert lag == 5
        assert time.monotonic() - acked >= 1.0
        assert w.stats.derives == 1  # both batches in one pass
    finally:
        w.stop()
    assert con.execute("SELECT count(*) FROM run_attempts").fetchone()[0] == 5
    con.close()


def test_half_the_lag_bound_waiting_is_folded_without_waiting_the_delay(tmp_path):
    """The deriver does not let the writer reach the lag bound (where it stops committing) for the delay's sake:
    it folds once half the bound waits."""
    con = dbmod.connect(tmp_path / "w.duckdb")
    w = Writer(con, CounterStore(), defer_derive=True, derive_delay=3600, max_batch_events=10)
    w.start()
    try:
        w.submit(_run_events("a", 4), []).result(timeout=30)
        time.sleep(0.3)
        assert w.derive_lag_events == 4  # below half the bound: it waits the delay
        w.submit(_run_events("b", 1), []).result(timeout=30)
        assert _lag_once_settled(w) == 0  # 5 of 10
        assert w.stats.derives == 1
    finally:
        w.stop()
    assert con.execute("SELECT count(*) FROM run_attempts").fetchone()[0] == 5
    con.close()


def test_the_collector_sets_its_derive_delay_from_the_settings(make_client):
    """`OBSERVATORY_DERIVE_DELAY_SECONDS` reaches the collector's writer, and a read still sees what was
    acknowledged before it at once (it asks for the fold)."""
    c = make_client(derive_delay_seconds=10)
    assert c.app.state.store.writer.derive_delay == 10
    r = c.post("/v1/events", json=[event("d1", "notebook.run.succeeded",
                                         {"run_id": "d1", "notebook_id": "nb", "team": "t"})],
               headers=auth("ingest"))
    assert r.status_code == 200
    got = c.get("/v1/runs/d1", headers=auth("read"))
    assert got.status_code == 200 and got.json()["state"] == "succeeded"
