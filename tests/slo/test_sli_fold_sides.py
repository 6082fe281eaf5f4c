"""The fold's two sides (slo/sli/fold.py): the events' and the run attempts', each committed with its own cursor.

Normally they run at once in transactions of their own; a side that fails leaves the other folded, and the next
fold brings the lagging side forward in one transaction. Either way the incremental SLIs equal the direct ones
(computed from the events alone), and the kept states never answer for a cursor they were not built at."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from collector.app import create_app
from collector.settings import Settings
from slo.sli import compute as C
from slo.sli import durations, sums
from slo.sli import fold as F
from slo.sli.config import SliQuery

T = datetime(2026, 11, 10, 10, 0, tzinfo=timezone.utc)
Q = SliQuery(as_of=T, windows=["1h", "1d", "7d"], levels=("platform", "team", "trigger"))


def _ev(i: str, type_: str, t: datetime, **data) -> dict:
    return {"specversion": "1.0", "id": i, "source": "test://sides", "type": type_, "time": t.isoformat(),
            "data": data}


def _run(run: str, team: str, start: datetime, minutes: float, outcome: str, output: str = "X") -> list[dict]:
    common = dict(run_id=run, notebook_id=f"nb-{team}", team=team, trigger="scheduled", input_hash="i",
                  parameters_hash="p", env_hash="e")
    end = start + timedelta(minutes=minutes)
    terminal = dict(common, duration_seconds=minutes * 60, **({"output_hash": output} if outcome == "succeeded"
                                                                else {}))
    return [_ev(f"{run}-s-{start.isoformat()}", "notebook.run.started", start, **common),
            _ev(f"{run}-t-{end.isoformat()}", f"notebook.run.{outcome}", end, **terminal)]


def _batches() -> list[list[dict]]:
    first = [e for k in range(6) for e in _run(f"a{k}", ("ds", "ml")[k % 2], T - timedelta(hours=5 - k), 10,
                                               ("succeeded", "failed")[k % 3 == 2], ("X", "Y")[k % 4 == 3])]
    first.append(_ev("art-1", "notebook.artifact.published", T - timedelta(hours=3), notebook_id="nb-ds", team="ds",
                     artifact="s3://a", sla_seconds=3600))
    # later batches: new runs, a late earlier success (moves a reproducibility baseline), a late terminal event
    # that turns a success into a failure, an artifact published again
    second = [e for k in range(4) for e in _run(f"b{k}", ("ds", "ml")[k % 2], T - timedelta(minutes=50 - 10 * k),
                                                5, "succeeded", "Y")]
    second += _run("a0", "ds", T - timedelta(hours=5), 30, "failed")[1:]
    second += _run("z", "ml", T - timedelta(hours=6), 3, "succeeded", "Y")
    second.append(_ev("art-2", "notebook.artifact.published", T - timedelta(minutes=20), notebook_id="nb-ds",
                      team="ds", artifact="s3://a", sla_seconds=1800))
    third = [e for k in range(3) for e in _run(f"c{k}", "ds", T - timedelta(minutes=30 - 5 * k), 2, "succeeded")]
    return [first, second, third]


def _strip(row: dict) -> dict:
    """A row without how it was computed (the provenance's mode and fold cursor), its value rounded to 9 significant
    digits (the kept percentiles interpolate in float64, DuckDB with more precision: slo/sli/durations.py)."""
    prov = {k: v for k, v in row["provenance"].items() if k not in ("mode", "folded_through_batch")}
    value = row["value"] if row["value"] is None else float(f"{row['value']:.9g}")
    return {**row, "value": value, "provenance": prov}


class Collector:
    def __init__(self, tmp_path) -> None:
        self.app = create_app(Settings(db=tmp_path / "obs.duckdb", auth=False, gauge_refresh_seconds=3600))
        self.client = TestClient(self.app).__enter__()

    def post(self, events: list[dict]) -> None:
        r = self.client.post("/v1/events", json=events)
        assert r.status_code == 200 and r.json()["rejected"] == 0, r.text

    def fold(self) -> F.FoldStats:
        with self.app.state.store.read_cursor() as cur:
            return F.fold(cur, now=T)

    def cursors(self) -> tuple[int, int]:
        with self.app.state.store.read_cursor() as cur:
            return F._cursors(cur)[:2]

    def assert_incremental_equals_direct(self) -> None:
        with self.app.state.store.read_cursor() as cur:
            inc = C.compute(cur, Q, fold_first=False)
            direct = C.compute(cur, Q, mode="direct")
        assert [_strip(r) for r in inc] == [_strip(r) for r in direct]  # values up to the last places: below
        assert any(r["sli"] == "M3" and r["value"] is not None for r in inc)  # not two empty answers

    def close(self) -> None:
        self.client.__exit__(None, None, None)


@pytest.fixture
def col(tmp_path):
    c = Collector(tmp_path)
    yield c
    c.close()


def _spy(monkeypatch) -> list[str]:
    """Which way each of the test's folds went (not the collector's gauge refresher's, in its own thread)."""
    seen: list[str] = []
    for name in ("_fold_sides", "_fold_joined"):
        real = getattr(F, name)

        def spy(*a, _real=real, _name=name, **k):
            if threading.current_thread() is threading.main_thread():
                seen.append(_name)
            return _real(*a, **k)
        monkeypatch.setattr(F, name, spy)
    return seen


def test_sides_fold_at_once_and_equal_the_direct_computation(col, monkeypatch):
    seen = _spy(monkeypatch)
    first, second, third = _batches()
    col.post(first)
    col.fold()
    col.assert_incremental_equals_direct()  # the kept states are built here, and followed below
    for batch in (second, third):
        col.post(batch)
        st = col.fold()
        assert st.attempts > 0
        lo, runs_lo = col.cursors()
        assert lo == runs_lo == st.to_batch
        col.assert_incremental_equals_direct()
    assert seen == ["_fold_joined", "_fold_sides", "_fold_sides"]  # the first fold is of one transaction


def _second_batch_posted(col: Collector) -> list[dict]:
    """The first batch folded (and the kept states built by a computation), the second posted: the third batch."""
    first, second, third = _batches()
    col.post(first)
    col.fold()
    col.assert_incremental_equals_direct()
    col.post(second)
    return third


def test_a_failed_run_side_leaves_the_events_folded_and_the_next_fold_catches_up(col, monkeypatch):
    third = _second_batch_posted(col)
    real = F._write_runs

    def failing(cur, runs, cfg, now):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the run side fails")
        return real(cur, runs, cfg, now)

    monkeypatch.setattr(F, "_write_runs", failing)
    before = col.cursors()
    with pytest.raises(RuntimeError, match="the run side fails"):
        col.fold()
    lo, runs_lo = col.cursors()
    assert runs_lo == before[1] < lo  # the events' side committed, the run attempts' did not
    with col.app.state.store.read_cursor() as cur, F.kept_state(cur) as (key, cursor):
        assert cursor == runs_lo  # what both sides have folded
        assert key not in durations._STATES and key not in sums._STATES  # forgotten: they were of one cursor
    monkeypatch.setattr(F, "_write_runs", real)
    col.post(third)
    _catches_up(col, monkeypatch)


def _catches_up(col: Collector, monkeypatch) -> None:
    """The next fold, with the sides apart: one transaction, each side from its own cursor, then both together."""
    seen = _spy(monkeypatch)
    col.fold()
    assert seen == ["_fold_joined"]
    assert len(set(col.cursors())) == 1
    col.assert_incremental_equals_direct()


def test_a_failed_events_side_leaves_the_runs_folded_and_the_next_fold_catches_up(col, monkeypatch):
    _second_batch_posted(col)
    lo0, _ = col.cursors()
    real = F._decide

    def failing(cur, cfg, now, attempts_changed):
        # (the slot decisions: the events' side's own) after the run side has committed, so that the sides end apart
        for _ in range(200):
            if col.cursors()[1] > lo0:
                break
            time.sleep(0.05)
        raise RuntimeError("the events side fails")

    monkeypatch.setattr(F, "_decide", failing)
    with pytest.raises(RuntimeError, match="the events side fails"):
        col.fold()
    lo, runs_lo = col.cursors()
    assert lo == lo0 < runs_lo
    monkeypatch.setattr(F, "_decide", real)
    _catches_up(col, monkeypatch)  # no new batch: the events' side alone is behind


SCHEDULE = dict(notebook_id="nb-ds", team="ds", cron="*/15 * * * *", grace_seconds=300)


class _InLine:
    """A cursor that is not a DuckDB connection: the fold takes it in line, always (`_fold_joined`)."""

    def __init__(self, cur) -> None:
        self._cur = cur

    def __getattr__(self, name):
        return getattr(self._cur, name)


def _slots(col: Collector) -> tuple[set, set]:
    """The misses in force and the slot outcomes."""
    with col.app.state.store.read_cursor() as cur:
        return (set(cur.execute("SELECT notebook_id, slot, team, cron, grace_seconds FROM sli_missed_slots "
                                "WHERE retracted_at IS NULL").fetchall()),
                set(cur.execute("SELECT notebook_id, slot, team, grace_seconds, outcome FROM sli_slot_outcomes"
                                ).fetchall()))


@pytest.mark.parametrize("again, at, way", [
    (dict(SCHEDULE, notebook_id="nb-ml", team="ml"), timedelta(seconds=30.5), "_fold_joined"),  # a new schedule
    (SCHEDULE, timedelta(seconds=30.5), "_fold_sides"),  # the same again within a minute (a scheduler restart)
    (SCHEDULE, timedelta(0), "_fold_joined"),  # the same again on a whole minute: a slot of its own could be there
    (dict(SCHEDULE, cron="*/20 * * * *"), timedelta(seconds=30.5), "_fold_joined"),  # another cron
    (dict(SCHEDULE, grace_seconds=600), timedelta(seconds=30.5), "_fold_joined"),  # another grace
], ids=["new", "same", "same-on-a-minute", "cron", "grace"])
def test_a_schedule_registration_that_changes_a_slot_folds_in_one_transaction(col, monkeypatch, tmp_path, again,
                                                                               at, way):
    """Its resets write missed slots, which late runs retract on the other side: both sides fold in line. One equal
    to the version in force, within a minute, changes no slot (slo/sli/missed.py, NEW_REGISTRATIONS) and the sides
    fold apart, the run attempts' side reading the registrations as they were. Either way the misses equal one fold
    of all the events, the slot outcomes (each decided once, so late runs leave them: docs/sli.md) those of the
    same folds in line, and the SLIs the direct computation."""
    first, second, _ = _batches()  # (second: late runs of slots the first fold decides)
    first.append(_ev("reg-0", "notebook.schedule.registered", T - timedelta(hours=6), **SCHEDULE))
    reg = _ev("reg-1", "notebook.schedule.registered", T - timedelta(hours=1) + at, **again)
    col.post(first)
    col.fold()
    col.assert_incremental_equals_direct()
    seen = _spy(monkeypatch)
    col.post(second + [reg])
    col.fold()
    assert seen == [way]
    col.assert_incremental_equals_direct()
    got = _slots(col)
    assert got[0] and got[1]
    for name, batches in (("whole", [first + second + [reg]]), ("in-line", [first, second + [reg]])):
        other = Collector(tmp_path / name)
        try:
            for batch in batches:
                other.post(batch)
                with other.app.state.store.read_cursor() as cur:
                    F.fold(_InLine(cur), now=T)
            want = _slots(other)
        finally:
            other.close()
        assert got[0] == want[0], name
        if name == "in-line":
            assert got[1] == want[1]


def _detection_on(side: str, monkeypatch, fail: bool = False) -> list[bool]:
    """Make missed-run detection go to `side` ("events" or "runs", `_FirstReady`): the other side waits, before it
    asks, until detection ran (the events' side in its slot decisions, the run attempts' side in its writes).
    Returns, per detection, whether it ran on the events' side. `fail`: the detection raises once it has run."""
    ran: list[bool] = []
    real_detect, real_decide, real_write = F._detect, F._decide, F._write_runs

    def detect(cur, *a, **k):
        found = real_detect(cur, *a, **k)
        ran.append(threading.current_thread() is threading.main_thread())
        if fail:
            raise RuntimeError("detection fails")
        return found

    def wait_for_detection() -> None:
        for _ in range(200):
            if ran:
                return
            time.sleep(0.05)

    def decide(*a, **k):
        if side == "runs" and threading.current_thread() is threading.main_thread():
            wait_for_detection()
        return real_decide(*a, **k)

    def write_runs(*a, **k):
        if side == "events" and threading.current_thread() is not threading.main_thread():
            wait_for_detection()
        return real_write(*a, **k)

    monkeypatch.setattr(F, "_detect", detect)
    monkeypatch.setattr(F, "_decide", decide)
    monkeypatch.setattr(F, "_write_runs", write_runs)
    return ran


def _slot_batches(restart: bool = False) -> tuple[list[dict], list[dict], datetime]:
    """A schedule and the first batch of runs, folded at `first_now`; the second batch (runs late for slots that
    fold decided, new runs), folded at T, after which more slots are due: detection finds misses in both folds.
    `restart`: the second batch registers the schedule again, unchanged (a scheduler's restart: the sides still
    fold apart, the run attempts' side reading the registrations as they were)."""
    first, second, _ = _batches()
    first.append(_ev("reg-0", "notebook.schedule.registered", T - timedelta(hours=6), **SCHEDULE))
    if restart:
        second.append(_ev("reg-1", "notebook.schedule.registered", T - timedelta(hours=1, seconds=-30.5), **SCHEDULE))
    return first, second, T - timedelta(hours=3)


def _in_line_slots(tmp_path, name: str, restart: bool = False) -> tuple[set, set]:
    """The misses and slot outcomes of the same two folds, each in one transaction."""
    first, second, first_now = _slot_batches(restart)
    other = Collector(tmp_path / name)
    try:
        for batch, now in ((first, first_now), (second, T)):
            other.post(batch)
            with other.app.state.store.read_cursor() as cur:
                F.fold(_InLine(cur), now=now)
        return _slots(other)
    finally:
        other.close()


@pytest.mark.parametrize("restart", [False, True], ids=["runs", "restart"])
@pytest.mark.parametrize("side", ["events", "runs"])
def test_missed_run_detection_on_either_side_stores_what_a_fold_in_line_stores(col, monkeypatch, tmp_path, side,
                                                                               restart):
    """Detection goes to the side that is ready first (`_FirstReady`): either gives the misses and slot outcomes of
    the same folds in one transaction, and the SLIs of the direct computation."""
    first, second, first_now = _slot_batches(restart)
    col.post(first)
    with col.app.state.store.read_cursor() as cur:
        F.fold(cur, now=first_now)
    col.assert_incremental_equals_direct()
    seen = _spy(monkeypatch)
    ran = _detection_on(side, monkeypatch)
    col.post(second)
    with col.app.state.store.read_cursor() as cur:
        st = F.fold(cur, now=T)
    assert seen == ["_fold_sides"] and ran == [side == "events"]
    assert st.new_missed > 0  # (detection had slots to decide)
    assert _slots(col) == _in_line_slots(tmp_path, "in-line", restart)
    col.assert_incremental_equals_direct()


def test_detection_that_fails_on_the_run_side_rolls_back_with_it_and_the_next_fold_detects(col, monkeypatch,
                                                                                           tmp_path):
    """The run attempts' side took detection and failed: its transaction, detection included, rolled back, the
    events' side committed; the next fold (in line, the sides apart) detects, and stores what a fold in line
    stores."""
    first, second, first_now = _slot_batches()
    col.post(first)
    with col.app.state.store.read_cursor() as cur:
        F.fold(cur, now=first_now)
    before = _slots(col)
    ran = _detection_on("runs", monkeypatch, fail=True)
    col.post(second)
    with pytest.raises(RuntimeError, match="detection fails"), col.app.state.store.read_cursor() as cur:
        F.fold(cur, now=T)
    assert ran == [False]
    lo, runs_lo = col.cursors()
    assert runs_lo < lo
    assert _slots(col)[0] == before[0]  # no miss of the failed detection stored
    monkeypatch.undo()
    seen = _spy(monkeypatch)
    with col.app.state.store.read_cursor() as cur:
        assert F.fold(cur, now=T).new_missed > 0
    assert seen == ["_fold_joined"]
    assert _slots(col) == _in_line_slots(tmp_path, "in-line")
    col.assert_incremental_equals_direct()


def test_the_stores_cursors_carry_the_fold_key_a_query_would_give(col):
    """A cursor from the collector's store is told its database's path (fold.remember_path), so a refresh on it
    runs no catalogue query; the path must be the very one a query gives, or two cursors of one database would
    fold under two locks and key two kept states."""
    store = col.app.state.store
    with store.read_cursor() as cur:
        told = F._PATHS[cur]
    fresh = store.con.cursor()
    try:
        asked = fresh.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
                              ).fetchone()[0]
    finally:
        fresh.close()
    assert told == asked == F.database_path(store.con)
    assert told.endswith("obs.duckdb")
