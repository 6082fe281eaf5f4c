"""The SLIs say what they miss while batches wait to be derived again (slo/sli/underived.py). What must hold: every
row of an SLI over run attempts (M1-M4, M8) carries, in `provenance.underived_run_attempts`, the number of run
attempts of its scope with an event in its window in a batch the deriver gave up on and that was not derived again
(counted here in plain Python from the posted events); a dismissed batch still counts (its attempts stay missing); a
retry brings every count to 0; the other SLIs carry null; a team sees only its own attempts; `observatory sli`
says so under its table; `GET /v1/runs/{id}` of such a run names the batch instead of a bare "not found"."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from collector.ingest import rederive
from slo.sli.compute import compute
from slo.sli.config import SliConfig, SliQuery
from slo.sli.fold import fold
from slo.sli.gauges import families
from slo.sli.sql import SLIS
from slo.sli.underived import FROM_RUN_ATTEMPTS
from slo.sli.windows import windows
from tests.conftest import auth
from tests.ingest.test_rederive import AS_OF, _batches, _ingest, _given_up_database
from tests.ingest.test_run_lookback import _stream
from tests.support import OBSERVATORY, event, refuse_to_derive

WINDOWS = ["1d", "7d", "30d"]
LEVELS = [("platform", "team", "trigger"), ("notebook",)]


def _run_event(e: dict) -> bool:
    """An event that makes a run attempt (the deriver's definition: a run id and a `notebook.run.*` type)."""
    return "run_id" in e["data"] and e["type"].startswith("notebook.run.")


def _expected(events: list[dict], ids: set[str], as_of: datetime) -> dict[tuple, tuple]:
    """(run_id, attempt) -> (time of its latest event before `as_of` among `ids`, its scope then)."""
    latest: dict[tuple, tuple] = {}
    for e in events:
        d, t = e["data"], datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
        if e["id"] not in ids or not _run_event(e) or t >= as_of:
            continue
        key = (d["run_id"], d.get("attempt") or 1)
        if key not in latest or t > latest[key][0]:
            latest[key] = (t, d.get("team") or "unknown", d.get("notebook_id"), d.get("trigger") or "unknown")
    return latest


def _check(rows: list[dict], latest: dict[tuple, tuple], as_of: datetime) -> int:
    """Every row's count against the reference; returns the largest count seen."""
    start = {w.name: w.s for w in windows(WINDOWS, as_of)}
    most = 0
    for r in rows:
        got = r["provenance"]["underived_run_attempts"]
        if r["sli"] not in FROM_RUN_ATTEMPTS:
            assert got is None, r
            continue
        want = sum(1 for t, team, nb, trig in latest.values() if t >= start[r["window"]]
                   and r["team"] in (None, team) and r["notebook_id"] in (None, nb) and r["trigger"] in (None, trig))
        assert got == want, (r["sli"], r["window"], r["team"], r["notebook_id"], r["trigger"], got, want)
        most = max(most, got)
    return most


def _rows(con, levels: tuple[str, ...], mode: str, team: str | None = None) -> list[dict]:
    q = SliQuery(as_of=AS_OF, windows=WINDOWS, slis=list(SLIS), levels=levels, team=team)
    return compute(con.cursor(), q, SliConfig(), mode=mode)


@pytest.mark.parametrize("seed", range(2))
def test_the_rows_count_the_attempts_of_batches_not_derived(tmp_path, monkeypatch, seed):
    events = _stream(seed)
    # three runs refused, so that several batches (and teams, notebooks) are given up on
    for r in (f"r{seed}", f"r{seed + 4}", f"r{seed + 11}"):
        refuse_to_derive(monkeypatch, r)
    w, con = _ingest(tmp_path / "w.duckdb", _batches(events, seed), fold_between=True)
    monkeypatch.undo()
    given_up = [b for (b,) in con.cursor().execute("SELECT batch_id FROM derive_failures ORDER BY 1").fetchall()]
    assert len(given_up) >= 2
    ids = {i for (i,) in con.cursor().execute("SELECT id FROM events WHERE list_contains(?, batch_id)",
                                              [given_up]).fetchall()}
    latest = _expected(events, ids, AS_OF)
    # the listing says what each batch holds: its run attempts and their teams, its events' time range
    by_id = {e["id"]: e for e in events}
    for item in rederive.listing(con.cursor()):
        mine = [by_id[i] for (i,) in con.cursor().execute("SELECT id FROM events WHERE batch_id = ?",
                                                            [item["batch_id"]]).fetchall()]
        runs = {(e["data"]["run_id"], e["data"].get("attempt") or 1) for e in mine if _run_event(e)}
        teams = sorted({e["data"].get("team") or "unknown" for e in mine if _run_event(e)})
        times = sorted(datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in mine)
        assert (item["run_attempts"], item["teams"]) == (len(runs), teams)
        assert (item["event_time_from"], item["event_time_to"]) == (times[0], times[-1])
    for levels in LEVELS:
        for mode in ("incremental", "direct"):
            assert _check(_rows(con, levels, mode), latest, AS_OF) > 0  # not vacuous
    # the gauge: the platform's and each team's count per window, as their rows say
    rows = _rows(con, ("platform", "team"), "incremental")
    [gauge] = [f for f in families(AS_OF, rows, con.cursor(), SliConfig())
               if f.name == "notebook_sli_underived_run_attempts"]
    got = {(s.labels["window"], s.labels["team"]): s.value for s in gauge.samples}
    want = {(r["window"], r["team"] or "__all__"): r["provenance"]["underived_run_attempts"] for r in rows
            if r["sli"] == "M1" and r["trigger"] is None}
    assert got == want and ("30d", "__all__") in got and max(got.values()) > 0
    # a team's rows count its own attempts only
    team_rows = _rows(con, ("team",), "incremental", team="t1")
    assert {r["team"] for r in team_rows} == {"t1"}
    _check(team_rows, latest, AS_OF)
    # a dismissed batch stays missing, so it still counts
    w.dismiss_derive(given_up[:1], "test").result(timeout=30)
    _check(_rows(con, LEVELS[0], "incremental"), latest, AS_OF)
    # derived again (the dismissed one named too): nothing is missing
    w.retry_derive(given_up).result(timeout=60)
    fold(con.cursor(), SliConfig(), AS_OF)
    for levels in LEVELS:
        assert _check(_rows(con, levels, "incremental"), {}, AS_OF) == 0
    w.stop()
    con.close()


def test_the_api_marks_the_rows_and_a_team_sees_its_own(make_client, db_path, monkeypatch):
    now = datetime.now(timezone.utc)
    _given_up_database(db_path, monkeypatch, now - timedelta(minutes=5))  # team t: r-ok derived, r-poison not
    c = make_client()
    doc = c.get("/v1/sli", params={"sli": "M1,M3,M6", "window": "1h,1d", "level": "platform,team"},
                headers=auth("read")).json()
    m1 = {(r["window"], r["team"]): r for r in doc["slis"] if r["sli"] == "M1"}
    assert m1[("1h", None)]["total"] == 1 and m1[("1h", None)]["provenance"]["underived_run_attempts"] == 1
    assert m1[("1d", "t")]["provenance"]["underived_run_attempts"] == 1
    assert all(r["provenance"]["underived_run_attempts"] is None for r in doc["slis"] if r["sli"] == "M6")
    assert any(r["sli"] == "M3" and r["provenance"]["underived_run_attempts"] == 1 for r in doc["slis"])
    # the finance team's token: its rows miss nothing (the batch holds team t's attempts only)
    doc = c.get("/v1/sli", params={"sli": "M1", "window": "1d"}, headers=auth("team_read")).json()
    assert {r["team"] for r in doc["slis"]} == {"finance"}
    assert [r["provenance"]["underived_run_attempts"] for r in doc["slis"]] == [0]
    # the run itself: not found, and the answer names the batch holding its events, for the tokens that see them
    [batch] = [r["batch_id"] for r in c.get("/v1/derive/failures", headers=auth("admin")).json()["items"]]
    r = c.get("/v1/runs/r-poison", headers=auth("read"))
    assert r.status_code == 404 and f"stored in batch {batch}, which the collector could not derive" in r.text
    r = c.get("/v1/runs/r-poison", headers=auth("team_read"))  # another team's run: nothing of it
    assert r.status_code == 404 and "batch" not in r.text
    r = c.get("/v1/runs/r-nothing", headers=auth("read"))
    assert r.status_code == 404 and "batch" not in r.text
    # the listing: the run is not in it, and the page says how many such attempts its team, notebook and time
    # filters may miss (its other filters cannot be applied to events not derived)
    def listed(kind: str = "read", **params) -> tuple[set[str], int]:
        r = c.get("/v1/runs", params=params, headers=auth(kind))
        assert r.status_code == 200, r.text
        return {i["run_id"] for i in r.json()["items"]}, r.json()["underived_run_attempts"]

    soon = (now + timedelta(hours=1)).isoformat()
    assert listed() == ({"r-ok"}, 1) and listed(notebook_id="nb") == ({"r-ok"}, 1)
    assert listed(state="failed") == (set(), 1)  # an upper bound: the state is what deriving decides
    assert listed(notebook_id="other")[1] == listed(since=soon)[1] == listed(team="u")[1] == 0
    assert listed("team_read") == (set(), 0)  # the finance token: team t's attempt is not its to count
    assert c.post("/v1/derive/retry", headers=auth("admin")).status_code == 200
    assert c.get("/v1/runs/r-poison", headers=auth("read")).status_code == 200
    assert listed() == ({"r-ok", "r-poison"}, 0)
    doc = c.get("/v1/sli", params={"sli": "M1", "window": "1d", "level": "platform"}, headers=auth("read")).json()
    [row] = doc["slis"]
    assert row["total"] == 2 and row["provenance"]["underived_run_attempts"] == 0


def test_the_cli_says_what_the_table_misses(tmp_path, monkeypatch):
    db = tmp_path / "o.duckdb"
    _given_up_database(db, monkeypatch, datetime.now(timezone.utc) - timedelta(minutes=5))
    got = subprocess.run([OBSERVATORY, "sli", "--db", str(db), "--sli", "M1", "--window", "1d"],
                         capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert "miss run attempts of batches the deriver gave up on (at most 1, M1 over 1d)" in got.stderr
    assert "observatory derive failures" in got.stderr
    done = subprocess.run([OBSERVATORY, "derive", "retry", "--db", str(db)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    got = subprocess.run([OBSERVATORY, "sli", "--db", str(db), "--sli", "M1", "--window", "1d"],
                         capture_output=True, text=True, timeout=120)
    assert got.returncode == 0 and "gave up on" not in got.stderr


def test_only_run_events_make_the_attempts_counted(tmp_path, monkeypatch):
    """A batch given up on may hold events that name a run without being the run's own (a quality check of run
    r-q, whose attempt was derived from an earlier batch): they make no run attempt, as for the deriver."""
    when = (AS_OF - timedelta(hours=2)).isoformat()
    run = {"notebook_id": "nb", "team": "t", "duration_seconds": 5.0}
    refuse_to_derive(monkeypatch, "r-x")
    w, con = _ingest(tmp_path / "w.duckdb", [
        [event("q-ok", "notebook.run.succeeded", {**run, "run_id": "r-q"}, time_=when)],
        [event("x-ok", "notebook.run.succeeded", {**run, "run_id": "r-x"}, time_=when),
         event("q-check", "notebook.quality.checked", {"run_id": "r-q", "check": "rows", "result": "fail",
                                                       "team": "u", "notebook_id": "nb"}, time_=when)]])
    monkeypatch.undo()
    [item] = rederive.listing(con.cursor())
    assert (item["events"], item["run_attempts"], item["teams"]) == (2, 1, ["t"])
    rows = _rows(con, ("platform", "team"), "incremental")
    m1 = {(r["window"], r["team"]): r for r in rows if r["sli"] == "M1"}
    assert m1[("1d", None)]["total"] == 1 and m1[("1d", None)]["provenance"]["underived_run_attempts"] == 1
    assert all(r["provenance"]["underived_run_attempts"] == 0 for r in rows
               if r["team"] == "u" and r["sli"] in FROM_RUN_ATTEMPTS)
    w.stop()
    con.close()
