"""M3's percentiles from the durations kept between refreshes (slo/sli/durations.py) equal the SQL computation.

Events go through the real app (POST /v1/events); each step then computes the SLIs the way the gauge refresher does
(fold, then the incremental engine) and compares M3 with the direct computation (held to a plain-Python reference
by test_sli_engine.py), while the as_of moves forward by nothing, seconds, hours or more than a window, sometimes
back, and late terminal events change the duration or the outcome of attempts already counted.
"""

from __future__ import annotations

import itertools
import random
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.app import create_app
from collector.settings import Settings
from slo.sli import durations, edges, sums
from slo.sli import sql as Q
from slo.sli.compute import compute
from slo.sli.config import SliConfig, SliQuery
from slo.sli.fold import kept_state

BASE = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)
WINDOWS = ["1h", "1d", "3d"]
USED: list[str] = []  # how each step's kept state came about (non-vacuity)


class App:
    def __init__(self, tmp: Path) -> None:
        self.app = create_app(Settings(db=tmp / "obs.duckdb", auth=False, gauge_refresh_seconds=3600,
                                       gauge_min_gap_seconds=3600))
        self.client = TestClient(self.app)
        self.client.__enter__()
        self.n = itertools.count()
        # The collector's refresher computes once at start (as_of = now, after BASE): a state only moves forward,
        # so the steps below would all be answered by SQL. It refreshes no more within the test; its state goes.
        refresher = self.app.state.store.refresher
        deadline = time.monotonic() + 30
        while refresher.version < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert refresher.version >= 1
        durations._STATES.clear()
        sums._STATES.clear()

    def close(self) -> None:
        self.client.__exit__(None, None, None)

    def post(self, events: list[dict]) -> None:
        r = self.client.post("/v1/events", json=events)
        assert r.status_code == 200 and r.json()["rejected"] == 0, r.text

    def run(self, run: str, team: str, start: datetime, end: datetime, outcome: str, duration: float) -> list[dict]:
        data = {"run_id": run, "notebook_id": f"nb-{team}", "team": team}
        return [{"specversion": "1.0", "source": "test://d", "id": f"e{next(self.n)}", "type": ty, "time": t.isoformat(),
                 "data": d}
                for ty, t, d in (("notebook.run.started", start, data),
                                 (f"notebook.run.{outcome}", end, dict(data, duration_seconds=duration)))]

    def m3(self, as_of: datetime, mode: str, windows: list[str] = WINDOWS) -> dict[tuple, float]:
        q = SliQuery(as_of=as_of, windows=windows, slis=["M3"], levels=("platform", "team"))
        with self.app.state.store.read_cursor() as cur:
            rows = compute(cur, q, SliConfig(), mode=mode)
        return {(r["window"], r["team"], r["stat"]): (r["value"], r["total"]) for r in rows if r["value"] is not None}


    def additive(self, as_of: datetime, mode: str, windows: list[str] = WINDOWS) -> dict[tuple, tuple]:
        """The additive SLIs (slo/sli/sums.py keeps them) at the platform, team and trigger levels."""
        q = SliQuery(as_of=as_of, windows=windows, slis=list(Q.ADDITIVE), levels=("platform", "team", "trigger"))
        with self.app.state.store.read_cursor() as cur:
            rows = compute(cur, q, SliConfig(), mode=mode)
        return {(r["sli"], r["window"], r["team"], r["trigger"], r["stat"]):
                (r["value"], r["good"], r["bad"], r["total"]) for r in rows if r["value"] is not None}

    def schedule(self, t: datetime, cron: str) -> dict:
        """A schedule registration of team a's notebook: a batch holding one is folded in one transaction
        (slo/sli/fold.py `_fold_joined`), which queues its changes on the kept states."""
        return {"specversion": "1.0", "source": "test://d", "id": f"e{next(self.n)}",
                "type": "notebook.schedule.registered", "time": t.isoformat(),
                "data": {"notebook_id": "nb-a", "team": "a", "cron": cron}}

    def probe(self, t: datetime, team: str, ok: bool) -> dict:
        return {"specversion": "1.0", "source": "test://d", "id": f"e{next(self.n)}", "type": "platform.probe",
                "time": t.isoformat(), "data": {"target": "hub", "ok": ok, "team": team}}


def assert_same(got: dict[tuple, tuple], want: dict[tuple, tuple]) -> None:
    """Same rows, same counts, values equal up to rounding in the last places."""
    assert set(got) == set(want)
    for k, (v, *counts) in want.items():
        assert list(got[k][1:]) == counts, k
        assert got[k][0] == pytest.approx(v, rel=1e-12, abs=1e-12), k


@st.composite
def steps(draw):
    out = []
    for _ in range(draw(st.integers(2, 6))):
        runs = [(draw(st.sampled_from(("a", "b", "c"))), draw(st.integers(-4 * 1440, 0)),  # start, minutes
                 draw(st.sampled_from(("succeeded", "succeeded", "failed"))), float(draw(st.integers(1, 300))))
                for _ in range(draw(st.integers(0, 12)))]
        late = draw(st.lists(st.tuples(st.integers(0, 50), st.sampled_from(("succeeded", "failed")),
                                       st.integers(1, 300)), max_size=3))  # later terminal events of earlier runs
        move = draw(st.sampled_from((0, 0, 7, 600, 3 * 3600, 2 * 86400, 5 * 86400, -1800)))  # seconds
        probes = draw(st.lists(st.tuples(st.sampled_from(("a", "b")), st.integers(-4 * 1440, 0), st.booleans()),
                               max_size=4))
        # a schedule registration in the batch: the fold runs in line and queues its changes on the kept states
        register = draw(st.booleans())
        out.append((runs, late, move, probes, register))
    return out


def _note_kept(app, states: dict, as_of: datetime, label: str) -> None:
    """USED gets `label` when the incremental answer came from a kept state at this cursor and as_of."""
    with app.app.state.store.read_cursor() as cur, kept_state(cur) as (key, cursor):
        state = states.get(key)
        if state is not None and state.cursor == cursor and state.as_of == durations.us(as_of):
            USED.append(label)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps())
# Found by this test: a fold queued its changes on the state, a computation at an earlier as_of (answered by SQL)
# left them queued, and the next fold's copy of the state dropped them (durations.Registry.applied).
@example([([], [], 0, [], False), ([("a", 0, "succeeded", 1.0)], [], -1800, [], False),
          ([("a", -1, "succeeded", 1.0)], [], 10800, [], False)])
@example([([], [], 0, [], False), ([], [], -1800, [("a", -1, True)], False),
          ([], [], 10800, [("a", -1, False)], False)])  # the sums
# Queued changes slid with rows read at the window edges (an in-line fold, then a computation 7 s on): ArrowInvalid
# on the two tables' column orders until the forty-third round.
@example([([("a", -5, "succeeded", 1.0)], [], 0, [], False), ([("a", -1, "succeeded", 2.0)], [], 7, [], True)])
def test_kept_percentiles_equal_sql_through_folds_and_slides(case):
    with tempfile.TemporaryDirectory() as d:
        app = App(Path(d))
        try:
            as_of, made = BASE, []
            for runs, late, move, probes, register in case:
                as_of += timedelta(seconds=move)
                events = []
                for team, minute, outcome, dur in runs:
                    start = as_of + timedelta(minutes=minute)
                    run = f"r{len(made)}"
                    made.append((run, team, start))
                    events += app.run(run, team, start, start + timedelta(seconds=dur), outcome, dur)
                for i, outcome, dur in late:
                    if made:
                        run, team, start = made[i % len(made)]
                        end = start + timedelta(seconds=400 + dur)  # later than any first terminal: it wins
                        events += app.run(run, team, start, end, outcome, float(dur))[1:]
                events += [app.probe(as_of + timedelta(minutes=m), team, ok) for team, m, ok in probes]
                if register:  # a new cron each time: one equal to the version in force moves nothing
                    events.append(app.schedule(as_of, f"{len(made) % 60} * * * *"))
                if events:
                    app.post(events)
                got = app.m3(as_of, "incremental")
                _note_kept(app, durations._STATES, as_of, "kept")
                assert_same(got, app.m3(as_of, "direct"))
                kept_sums = app.additive(as_of, "incremental")
                _note_kept(app, sums._STATES, as_of, "sums")
                assert_same(kept_sums, app.additive(as_of, "direct"))
        finally:
            app.close()


def test_kept_percentiles_were_used():
    """Runs after the property test (file order): most steps were answered by the kept state."""
    if not USED:
        pytest.skip("property test not run in this session")
    assert USED.count("kept") >= 20 and USED.count("sums") >= 20


def test_stats_equal_duckdb_quantile_cont():
    rng = np.random.default_rng(3)
    con = duckdb.connect()
    for n in (1, 2, 3, 10, 99, 1000):
        x = np.round(np.exp(rng.normal(4, 2, n)), 2)
        x[: n // 3] = x[0]  # ties
        (qs, mean), = con.execute("SELECT quantile_cont(d, [0.5, 0.95, 0.99]), avg(d) FROM "
                                  "(SELECT unnest($x::DOUBLE[]) AS d)", {"x": x.tolist()}).fetchall()
        got_n, got_mean, got_qs = durations._stats(durations.Sorted(np.sort(x)))
        assert got_n == n
        assert got_mean == pytest.approx(mean, rel=1e-12)
        assert got_qs == pytest.approx(qs, rel=1e-12)


def test_sorted_edits_are_multiset_operations():
    arr = np.array([1.0, 2.0, 2.0, 2.0, 5.0, np.inf])
    assert durations._delete(arr, np.array([2.0, 2.0, np.inf])).tolist() == [1.0, 2.0, 5.0]
    assert durations._insert(arr, np.array([3.0, 0.5, 2.0])).tolist() == [0.5, 1, 2, 2, 2, 2, 3, 5, np.inf]
    with pytest.raises(durations.Drift):
        durations._delete(arr, np.array([2.0, 2.0, 2.0, 2.0]))  # one 2.0 too many
    with pytest.raises(durations.Drift):
        durations._delete(np.array([0.5, 1.0]), np.array([0.5, 0.5, 0.5, 1.0]))  # ties too many before a value held
    with pytest.raises(durations.Drift):
        durations._delete(arr, np.array([3.0]))


def test_a_state_that_drifted_is_dropped_and_the_answer_stays_exact(tmp_path):
    app = App(tmp_path)
    try:
        events = app.run("r0", "a", BASE - timedelta(minutes=30), BASE - timedelta(minutes=20), "succeeded", 600.0)
        app.post(events)
        assert_same(app.m3(BASE, "incremental"), app.m3(BASE, "direct"))
        with app.app.state.store.read_cursor() as cur, kept_state(cur) as (key, _):
            state = durations._STATES[key]
            # the kept platform values lose the run's duration
            state.windows[3600][None] = durations.Sorted(np.empty(0))
        # a late terminal event replaces the attempt's fact: deleting its old duration finds nothing
        app.post(app.run("r0", "a", BASE - timedelta(minutes=30), BASE - timedelta(minutes=10), "succeeded",
                         1200.0)[1:])
        got = app.m3(BASE, "incremental")
        assert_same(got, app.m3(BASE, "direct"))
        assert got[("1h", None, "p50")] == (1200.0, 1)
        with app.app.state.store.read_cursor() as cur, kept_state(cur) as (key, cursor):
            assert durations._STATES[key].windows[3600][None].values().tolist() == [1200.0]  # built again
    finally:
        app.close()


def test_window_edges_stay_half_open_while_sliding(tmp_path):
    """A duration ending exactly at a window's end enters at the next slide; one exactly at its start is in."""
    app = App(tmp_path)
    try:
        app.post(app.run("r0", "a", BASE - timedelta(seconds=60), BASE, "succeeded", 60.0))
        app.post(app.run("r1", "b", BASE - timedelta(hours=2), BASE - timedelta(hours=1), "succeeded", 30.0))
        seen = []
        for as_of in (BASE, BASE + timedelta(seconds=1), BASE + timedelta(hours=1),
                      BASE + timedelta(hours=1, microseconds=1), BASE + timedelta(days=1, seconds=1)):
            got = app.m3(as_of, "incremental")
            with app.app.state.store.read_cursor() as cur, kept_state(cur) as (key, _):
                assert durations._STATES[key].as_of == durations.us(as_of)  # answered by the kept state
            assert_same(got, app.m3(as_of, "direct"))
            seen.append(got.get(("1h", None, "p50"), (None, 0)))
        assert seen == [(30.0, 1), (60.0, 1), (60.0, 1), (None, 0), (None, 0)]
    finally:
        app.close()


@pytest.mark.parametrize("registrations", [False, True], ids=["folds-beside", "folds-in-line"])
def test_rows_read_ahead_at_the_window_edges_follow_every_fold(tmp_path, monkeypatch, registrations):
    """Refreshes 20 s apart, as the gauge refresher's: the stored rows at each window edge are read ahead
    (slo/sli/edges.py), and what each fold changes inside those spans reaches them. Every step posts rows into the
    spans already read (at each edge, and ahead of the as_of), and every third step a late terminal event turns one
    of those runs into a failure, so a span holds changes of both signs; both kept states equal the direct
    computation at every step, and few slides read anything. `registrations`: every step also registers a schedule,
    so each fold runs in line (slo/sli/fold.py `_fold_joined`) and queues its changes on the kept states, which the
    next computation applies in the same slide as the rows read ahead (a slide that raised ArrowInvalid on the two
    tables' column orders until the forty-third round)."""
    reads: list[str] = []
    for mod, name in ((sums, "_read"), (durations, "_read_table")):
        real = getattr(mod, name)

        def spy(cur, ranges, _real=real, _name=name):
            reads.append(_name)
            return _real(cur, ranges)
        monkeypatch.setattr(mod, name, spy)
    app = App(tmp_path)
    try:
        for team, hours in (("a", 1), ("b", 24), ("a", 72), ("b", 0)):  # a run at each edge
            end = BASE - timedelta(hours=hours) + timedelta(minutes=2)
            app.post(app.run(f"h{hours}", team, end - timedelta(seconds=40), end, "succeeded", 40.0))
        as_of = BASE
        assert_same(app.m3(as_of, "incremental"), app.m3(as_of, "direct"))
        assert_same(app.additive(as_of, "incremental"), app.additive(as_of, "direct"))
        reads.clear()
        made: list[tuple[str, str, datetime, datetime]] = []
        steps = 15
        for k in range(1, steps + 1):
            as_of += timedelta(seconds=20)
            events = []
            for edge in (timedelta(0), timedelta(hours=1), timedelta(days=1), timedelta(days=3)):
                end = as_of - edge + timedelta(seconds=30 + 7 * k)  # ahead of this edge: inside its span
                run, team = f"s{k}-{edge.total_seconds():.0f}", ("a", "b")[k % 2]
                made.append((run, team, end - timedelta(seconds=10 + k), end))
                events += app.run(run, team, end - timedelta(seconds=10 + k), end, "succeeded", 10.0 + k)
                events.append(app.probe(end, team, k % 3 != 0))
            if k % 3 == 0:  # a stored success in a span read ahead becomes a failure, ending a little later
                run, team, start, end = made[k]
                events += app.run(run, team, start, end + timedelta(seconds=5), "failed", 1.0)[1:]
            if registrations:  # a new cron each time (one equal to the version in force would move nothing)
                events.append(app.schedule(as_of - timedelta(hours=2), f"{k} * * * *"))
            app.post(events)
            assert_same(app.m3(as_of, "incremental"), app.m3(as_of, "direct"))
            assert_same(app.additive(as_of, "incremental"), app.additive(as_of, "direct"))
            with app.app.state.store.read_cursor() as cur, kept_state(cur) as (key, _):
                for states in (durations._STATES, sums._STATES):
                    assert states[key].as_of == durations.us(as_of)  # answered by the kept state
                    assert sorted(states[key].ahead) == [0, 3600 * 10**6, 86400 * 10**6, 3 * 86400 * 10**6]
        # each kind read its edges once, at the first slide: the rest came from the spans read ahead
        assert sorted(reads) == ["_read", "_read_table"]
    finally:
        app.close()


@pytest.mark.parametrize("seed", range(4))
def test_kept_states_follow_changing_window_sets(tmp_path, monkeypatch, seed):
    """The refresher asks for its windows, API clients for others (`?window=6h`), between the same folds: each
    computation adds the windows it lacks to the kept states and the edges to read ahead change with them. Runs land
    near every edge of every window set, some batches register a schedule (folds in one transaction), the as_of
    moves by 0 s to 12 min; both kept states equal the direct computation at every step, and spans read ahead
    answered some slides."""
    sets = [["1h", "1d", "3d"], ["1h"], ["6h", "1d"], ["30m", "1h", "2h"], ["1h", "1d", "3d", "7d"], ["5m"]]
    used = []
    real = edges.edge_rows

    def spy(spans, *args):
        used.append(bool(spans))
        return real(spans, *args)
    monkeypatch.setattr(edges, "edge_rows", spy)
    rnd = random.Random(seed)
    app = App(tmp_path)
    try:
        as_of = BASE
        for step in range(20):
            as_of += timedelta(seconds=rnd.choice([0, 5, 15, 20, 45, 120, 700]))
            events = []
            for i in range(rnd.randint(0, 6)):
                edge = timedelta(minutes=rnd.choice([0, 5, 30, 60, 120, 360, 1440, 4320, 10080]))
                end, dur = as_of - edge + timedelta(seconds=rnd.randint(-60, 600)), rnd.randint(1, 300)
                events += app.run(f"w{step}-{i}", rnd.choice("ab"), end - timedelta(seconds=dur), end,
                                  rnd.choice(["succeeded", "succeeded", "failed"]), float(dur))
            if rnd.random() < 0.2:
                events.append(app.schedule(as_of - timedelta(hours=3), f"{step} * * * *"))
            if events:
                app.post(events)
            windows = rnd.choice(sets)
            assert_same(app.m3(as_of, "incremental", windows), app.m3(as_of, "direct", windows))
            assert_same(app.additive(as_of, "incremental", windows), app.additive(as_of, "direct", windows))
        assert any(used)
    finally:
        app.close()


@pytest.mark.parametrize("mod, reader", [(durations, "_read_table"), (sums, "_read")])
def test_a_slide_that_fails_halfway_keeps_no_state(tmp_path, monkeypatch, mod, reader):
    """A slide moves the kept state's as_of and takes its queued fold changes before it reads the rows at the
    window edges: a read that fails there (interrupted, out of memory) must not leave that half-moved state to answer
    the next computation, which would then miss the changes it took, silently."""
    app = App(tmp_path)
    try:
        app.post(app.run("r0", "a", BASE - timedelta(minutes=50), BASE - timedelta(minutes=40), "succeeded", 600.0))
        assert_same(app.m3(BASE, "incremental"), app.m3(BASE, "direct"))
        assert_same(app.additive(BASE, "incremental"), app.additive(BASE, "direct"))
        # changes queued on both states (an in-line fold: a schedule registration), then a later computation
        app.post(app.run("r1", "b", BASE - timedelta(minutes=30), BASE - timedelta(minutes=20), "failed", 60.0)
                 + [app.schedule(BASE - timedelta(hours=2), "0 * * * *")])

        def broken(cur, ranges):
            raise duckdb.InterruptException("interrupted")
        monkeypatch.setattr(mod, reader, broken)
        later = BASE + timedelta(hours=2)  # past READ_AHEAD_US: the slide reads the edges
        with pytest.raises(duckdb.InterruptException):
            app.m3(later, "incremental") if mod is durations else app.additive(later, "incremental")
        with app.app.state.store.read_cursor() as cur, kept_state(cur) as (key, _):
            assert key not in mod._STATES
        monkeypatch.undo()
        assert_same(app.m3(later, "incremental"), app.m3(later, "direct"))
        assert_same(app.additive(later, "incremental"), app.additive(later, "direct"))
    finally:
        app.close()


def test_past_the_value_cap_sql_answers_and_nothing_is_kept(tmp_path):
    app = App(tmp_path)
    try:
        app.post(app.run("r0", "a", BASE - timedelta(minutes=30), BASE - timedelta(minutes=20), "succeeded", 600.0)
                 + app.run("r1", "b", BASE - timedelta(minutes=50), BASE - timedelta(minutes=40), "succeeded", 60.0))
        q = SliQuery(as_of=BASE, windows=WINDOWS, slis=["M3"], levels=("platform", "team"))
        with app.app.state.store.read_cursor() as cur:
            capped = compute(cur, q, SliConfig(m3_state_max_values=3))  # 2 durations x 2 copies x 3 windows > 3
            with kept_state(cur) as (key, _):
                assert durations._STATES[key].disabled and not durations._STATES[key].windows
        got = {(r["window"], r["team"], r["stat"]): (r["value"], r["total"]) for r in capped if r["value"] is not None}
        assert_same(got, app.m3(BASE, "direct"))
    finally:
        app.close()


def test_computations_beside_concurrent_ingest_and_folds_stay_exact(tmp_path):
    """API requests (each folds, then reads the kept state) from threads while batches keep arriving: no error,
    and once ingest stops the kept answer equals the direct one."""
    app = App(tmp_path)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                app.m3(BASE, "incremental")
            except BaseException as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(e)
                return

    try:
        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for i in range(12):
            start = BASE - timedelta(minutes=5 + 3 * i)
            events = app.run(f"c{i}", "ab"[i % 2], start, start + timedelta(seconds=10 * i + 1), "succeeded",
                             float(10 * i + 1))
            if i % 3 == 2:  # a later terminal event of an earlier run changes its duration
                earlier = BASE - timedelta(minutes=5 + 3 * (i - 2))
                events += app.run(f"c{i - 2}", "ab"[i % 2], earlier, earlier + timedelta(minutes=4), "succeeded",
                                  999.0 + i)[1:]
            app.post(events)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        got = app.m3(BASE, "incremental")
        assert_same(got, app.m3(BASE, "direct"))
        assert got[("1h", None, "p99")][1] == 12 and got[("1h", None, "p99")][0] > 999  # the changes arrived
    finally:
        stop.set()
        app.close()


@st.composite
def edit_sequences(draw):
    """A starting multiset and edits that delete values present (sometimes one that is not) and insert others;
    few distinct values, so that ties, overlays holding a value twice and deletions of inserted values happen."""
    pool = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 7.5, 60.0, np.inf]), min_size=1, max_size=6))
    start = draw(st.lists(st.sampled_from(pool), max_size=40))
    edits = [(draw(st.lists(st.integers(0, 60), max_size=8)), draw(st.lists(st.sampled_from(pool), max_size=8)),
              draw(st.booleans()))
             for _ in range(draw(st.integers(1, 12)))]
    return start, edits


@settings(max_examples=300, deadline=None)
@given(edit_sequences(), st.sampled_from([0, 10, 1_000_000]), st.sampled_from([1, 4, 16]))
def test_sorted_overlay_equals_a_sorted_list(case, overlay_min, share):
    """durations.Sorted against a plain sorted list through random edits: values, size, sum and every rank;
    with the overlay always on (0), from a small size on (10), or never (the plain array), compacting at several
    shares; a deletion of a value not held raises Drift and leaves the previous multiset usable."""
    start, edits = case
    old = durations.OVERLAY_MIN, durations.COMPACT_SHARE
    durations.OVERLAY_MIN, durations.COMPACT_SHARE = overlay_min, share
    try:
        ref = sorted(start)
        cur = durations.Sorted(np.array(ref, dtype=float))
        overlaid = False
        for picks, ins, missing in edits:
            dels = [ref[i % len(ref)] for i in picks] if ref else []
            if missing:
                dels.append(1234.5)  # never in the pool
            counts = {v: ref.count(v) for v in set(dels)}
            fits = all(dels.count(v) <= counts[v] for v in counts)
            if not fits:
                with pytest.raises(durations.Drift):
                    cur.edited(np.array(dels, dtype=float), np.array(ins, dtype=float))
                dels = [v for v in dels if v != 1234.5]
                dels = [v for i, v in enumerate(dels) if dels[:i + 1].count(v) <= counts.get(v, 0)]
            cur = cur.edited(np.array(dels, dtype=float), np.array(ins, dtype=float))
            for v in dels:
                ref.remove(v)
            ref = sorted(ref + ins)
            overlaid |= bool(cur.add.size or cur.rem.size)
            assert cur.size == len(ref)
            assert cur.values().tolist() == ref
            if ref:
                assert cur.at_ranks(np.arange(len(ref))).tolist() == ref
                finite = [v for v in ref if np.isfinite(v)]
                if len(finite) == len(ref):
                    assert cur.total() == pytest.approx(sum(ref), rel=1e-12)
        if overlay_min == 1_000_000:
            assert not overlaid  # below OVERLAY_MIN every edit is merged at once
    finally:
        durations.OVERLAY_MIN, durations.COMPACT_SHARE = old


def test_sorted_overlay_is_used_and_compacted():
    """Non-vacuity of the property above at the real sizes: an edit of a large multiset keeps the base (shared, not
    copied), and the overlay is merged once it passes 1/COMPACT_SHARE of the base."""
    base = np.sort(np.random.default_rng(1).exponential(100, durations.OVERLAY_MIN * 2))
    s = durations.Sorted(base)
    e = s.edited(base[:10].copy(), np.array([5.0, 6.0]))
    assert e.base is base and e.rem.size == 10 and e.add.size == 2
    assert e.at_ranks(np.array([0, e.size - 1])).tolist() == [e.values()[0], e.values()[-1]]
    big = e.edited(np.empty(0), np.full(base.size // durations.COMPACT_SHARE, 1.0))
    assert big.base is not base and not big.add.size and not big.rem.size and big.size == e.size + base.size // 16


def test_sorted_overlay_ranks_at_scale():
    """Every rank of an overlaid multiset of thousands of values (ties and spread values, deletions from the base
    and from the overlay, insertions below and above the base) equals the merged array's: at_ranks reads only the
    breakpoints near each rank."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        base = np.sort(np.concatenate([rng.choice([1.0, 2.0, 60.0], 3000), rng.exponential(100, 2000)]))
        s = durations.Sorted(base)
        old = durations.OVERLAY_MIN, durations.COMPACT_SHARE
        durations.OVERLAY_MIN, durations.COMPACT_SHARE = 0, 1  # the overlay kept up to the base's size
        try:
            for _ in range(3):
                vals = s.values()
                dels = rng.choice(vals, int(rng.integers(0, 200)), replace=False)
                ins = np.concatenate([rng.exponential(100, int(rng.integers(0, 200))), [-1.0, 1e9, 2.0, 2.0]])
                s = s.edited(dels, ins)
        finally:
            durations.OVERLAY_MIN, durations.COMPACT_SHARE = old
        assert s.add.size or s.rem.size
        assert s.at_ranks(np.arange(s.size)).tolist() == s.values().tolist()
