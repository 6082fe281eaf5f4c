"""Batches the deriver gave up on, derived again (collector/ingest/rederive.py). What must hold: a batch given up on
is recorded, counted by a gauge that survives a restart, and listed; once the cause is fixed, a retry gives the
derived tables, the counters and the SLIs that deriving every batch normally gives (the reference, computed on the
same events in a database of its own, and the SLIs also computed directly from the stored events); a retry that
fails again changes nothing and says why by class only; a batch id not waiting is refused before anything is
written; the HTTP API and the CLI (`--url` on a real collector, `--db` on its file) mirror each other."""

from __future__ import annotations

import json
import random
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from collector.contract.vectorized import validate_json_items
from collector.ingest import rederive
from collector.ingest.writer import Writer
from collector.metrics.counters import CounterStore
from collector.storage import db as dbmod
from slo.sli.compute import compute
from slo.sli.config import SliConfig, SliQuery
from slo.sli.fold import fold
from slo.sli.sql import SLIS
from tests.conftest import auth
from tests.ingest.test_run_lookback import T0, TABLES, _stream
from tests.support import OBSERVATORY, Collector, event, metric_sum, parse_metrics, refuse_to_derive

AS_OF = T0 + timedelta(days=40)
# the windows hold every event of the stream (20 days of starts, ends up to 14 days later)
QUERY = SliQuery(as_of=AS_OF, windows=["30d", "60d"], slis=list(SLIS), levels=("platform", "team"))


def _batches(events: list[dict], seed: int) -> list[list[dict]]:
    rnd = random.Random(seed)
    cuts = sorted(rnd.sample(range(1, len(events)), 12))
    return [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)])]


def _ingest(path: Path, batches: list[list[dict]], fold_between: bool = False) -> tuple[Writer, object]:
    """A collector's writer (derived tables after the acknowledgement) with `batches` committed and derived; with
    `fold_between`, the SLIs folded after every batch, as the refresher does."""
    con = dbmod.connect(path)
    w = Writer(con, CounterStore(), defer_derive=True)
    w.start()
    for b in batches:
        w.submit(validate_json_items(b).table, []).result(timeout=30)
        if fold_between:
            assert w.wait_derived(timeout=30)
            fold(con.cursor(), SliConfig(), AS_OF)
    assert w.wait_derived(timeout=30)
    return w, con


def _slis(con, mode: str) -> list:
    """The SLIs' values (without their provenance: the batch folded through, the mode)."""
    rows = compute(con.cursor(), QUERY, SliConfig(), mode=mode)
    return sorted(json.dumps({k: v for k, v in r.items() if k != "provenance"}, sort_keys=True, default=str)
                  for r in rows)


def _state(con) -> list:
    return [con.cursor().execute(q).fetchall() for q in TABLES]


def _reference(path: Path, batches: list[list[dict]]) -> tuple[Writer, object]:
    w, con = _ingest(path, batches)
    fold(con.cursor(), SliConfig(), AS_OF)
    w.stop()
    return w, con


@pytest.mark.parametrize("seed", range(3))
def test_a_retry_gives_what_those_events_arriving_now_give(tmp_path, monkeypatch, seed):
    """Two references, each every batch derived normally: the events in their order, and the given-up batches'
    events arriving last. The derived tables and the SLIs agree with both (they are decided by the events' times);
    the counters with the second: a reproducibility check is counted against the baseline its attempt met when it
    was derived, and counters never go down, so a baseline that arrives late (in a batch given up on) leaves the
    checks counted before it as they were, as it does for any late event."""
    events = _stream(seed)
    batches = _batches(events, seed)
    ref_w, ref = _reference(tmp_path / "ref.duckdb", batches)

    poison = f"r{seed + 3}"  # its events are in one or two batches, with other runs' and kernels' events
    refuse_to_derive(monkeypatch, poison)
    w, con = _ingest(tmp_path / "failed.duckdb", batches, fold_between=True)
    given_up = [b for (b,) in con.cursor().execute("SELECT batch_id FROM derive_failures ORDER BY 1").fetchall()]
    assert given_up and w.stats.underived_batches == len(given_up) == w.stats.derive_failures
    assert not con.cursor().execute("SELECT count(*) FROM run_attempts WHERE run_id = ?", [poison]).fetchone()[0]
    assert _slis(con, "incremental") != _slis(ref, "incremental")  # the SLIs undercount them (not vacuous)
    monkeypatch.undo()  # the cause fixed
    late_ids = {i for (i,) in con.cursor().execute(
        "SELECT id FROM events WHERE list_contains(?, batch_id)", [given_up]).fetchall()}
    late_w, late = _reference(tmp_path / "late.duckdb", [[e for e in b if e["id"] not in late_ids] for b in batches]
                              + [[e for e in events if e["id"] in late_ids]])
    got = w.retry_derive().result(timeout=60)
    assert got.batches == given_up and got.events == len(late_ids)
    assert w.stats.underived_batches == 0 and rederive.outstanding(con.cursor()) == 0
    assert _state(con)[:3] == _state(ref)[:3] == _state(late)[:3]  # run attempts, kernel sessions, baselines
    # the run counters counted now, the events' not twice
    assert w.counters.snapshot() == late_w.counters.snapshot()
    assert _state(con) == _state(late)
    # the SLIs: folded by the refresher's next pass (the batch the retry made is after the fold's cursor); as both
    # references' and as computed directly from the stored events
    fold(con.cursor(), SliConfig(), AS_OF)
    assert _slis(con, "incremental") == _slis(ref, "incremental") == _slis(late, "incremental") \
        == _slis(con, "direct")
    assert w.retry_derive().result(timeout=60).batches == []  # nothing waits any more
    w.stop()
    for c in (ref, late, con):
        c.close()


def _renamed(events: list[dict], prefix: str) -> list[dict]:
    """The same events for other runs and kernels (ids, run ids and kernel ids prefixed)."""
    out = []
    for e in events:
        data = {k: (prefix + v if k in ("run_id", "kernel_id") else v) for k, v in e["data"].items()}
        out.append({**e, "id": prefix + e["id"], "data": data})
    return out


def test_a_retry_folded_in_slices_with_later_batches(tmp_path, monkeypatch):
    """The batch a retry makes may be anywhere in a backlog the fold cuts into slices: its attempts are refolded by
    the slice that holds it. The later batches touch none of them (other runs), so only the retry's batch refolds
    them."""
    batches = _batches(_stream(7), 7)
    later = _batches(_renamed(_stream(8), "x"), 8)
    _, ref = _reference(tmp_path / "ref.duckdb", batches + later)
    refuse_to_derive(monkeypatch, next(e["data"]["run_id"] for e in batches[2] if "run_id" in e["data"]))
    w, con = _ingest(tmp_path / "failed.duckdb", batches, fold_between=True)
    assert w.stats.underived_batches
    monkeypatch.undo()
    w.submit(validate_json_items(later[0]).table, []).result(timeout=30)  # a batch before the retry's
    w.retry_derive().result(timeout=60)
    for b in later[1:]:  # and after it, none folded yet
        w.submit(validate_json_items(b).table, []).result(timeout=30)
    assert w.wait_derived(timeout=30)
    st = fold(con.cursor(), SliConfig(fold_max_events=15), AS_OF)
    assert st.slices > 2
    assert _state(con)[:3] == _state(ref)[:3]
    assert _slis(con, "incremental") == _slis(ref, "incremental") == _slis(con, "direct")
    w.stop()
    ref.close()
    con.close()


def test_a_retry_that_fails_again_changes_nothing(tmp_path, monkeypatch):
    refuse_to_derive(monkeypatch, "r-poison")
    w, con = _ingest(tmp_path / "w.duckdb", [[event("p", "notebook.run.succeeded", {
        "run_id": "r-poison", "notebook_id": "nb", "team": "t", "error_message": "token=hunter2hunter2"})]])
    before = _state(con) + [con.cursor().execute("SELECT * FROM ingest_batches ORDER BY 1").fetchall()]

    def still_failing(*a, **kw):
        raise RuntimeError("derived row refused: r-poison")

    monkeypatch.setattr(rederive, "fold_batches", still_failing)
    with pytest.raises(rederive.RetryFailed) as err:
        w.retry_derive().result(timeout=60)
    assert "(RuntimeError)" in str(err.value) and "r-poison" not in str(err.value)
    assert _state(con) + [con.cursor().execute("SELECT * FROM ingest_batches ORDER BY 1").fetchall()] == before
    assert rederive.outstanding(con.cursor()) == w.stats.underived_batches == 1
    with pytest.raises(rederive.NotOutstanding, match="batch 999"):
        w.retry_derive([999]).result(timeout=60)
    w.stop()
    con.close()


def test_the_gauge_counts_the_batches_waiting_across_a_restart(tmp_path, monkeypatch):
    refuse_to_derive(monkeypatch, "r-poison")
    w, con = _ingest(tmp_path / "w.duckdb", [[event(i, "notebook.run.succeeded", {
        "run_id": f"r-{i}", "notebook_id": "nb", "team": "t"})] for i in ("a", "poison", "b")])
    w.stop()
    monkeypatch.undo()
    again = Writer(con, CounterStore(), defer_derive=True)
    again.start()
    assert again.stats.underived_batches == 1 and again.stats.derive_failures == 0  # the counter is the process's
    [row] = rederive.listing(con.cursor())
    assert row["error"] == "RuntimeError" and row["events"] == 1 and row["rederived_at"] is None
    again.retry_derive([row["batch_id"]]).result(timeout=60)
    assert again.stats.underived_batches == 0
    [done] = rederive.listing(con.cursor(), include_retried=True)
    assert done["rederived_batch"] > row["batch_id"] and done["rederived_at"] is not None
    assert rederive.listing(con.cursor()) == []
    again.stop()
    con.close()


SECRET = "ghp_" + "Zq8Lw3Rt6Yu1Io4Pa7Sd0Fg2Hj5Kl9Zx3Cv6"


def test_a_dismissed_batch_no_longer_waits_and_a_retry_naming_it_still_derives_it(tmp_path, monkeypatch):
    refuse_to_derive(monkeypatch, "r-poison")
    refuse_to_derive(monkeypatch, "r-poison2")
    w, con = _ingest(tmp_path / "w.duckdb", [[event(i, "notebook.run.succeeded", {
        "run_id": f"r-{i}", "notebook_id": "nb", "team": "t"})] for i in ("poison", "ok", "poison2")])
    monkeypatch.undo()
    [a, b] = [r["batch_id"] for r in rederive.listing(con.cursor())]
    assert w.stats.underived_batches == 2
    with pytest.raises(ValueError):
        w.dismiss_derive([a], "   ").result(timeout=30)
    with pytest.raises(rederive.NotOutstanding):
        w.dismiss_derive([a, 999], "lost").result(timeout=30)
    assert w.dismiss_derive([a], f"importer bug, key {SECRET} leaked in the ticket").result(timeout=30) == [a]
    assert w.stats.underived_batches == 1 == rederive.outstanding(con.cursor())
    [row] = [r for r in rederive.listing(con.cursor(), include_retried=True) if r["batch_id"] == a]
    assert row["dismissed_at"] is not None and SECRET not in row["dismissed_reason"]
    assert "importer bug" in row["dismissed_reason"] and "REDACTED" in row["dismissed_reason"]
    with pytest.raises(rederive.NotOutstanding):  # dismissed already
        w.dismiss_derive([a], "again").result(timeout=30)
    # a retry of every batch waiting leaves the dismissed one alone; naming it derives it
    assert w.retry_derive().result(timeout=60).batches == [b]
    assert con.cursor().execute("SELECT count(*) FROM run_attempts WHERE run_id = 'r-poison'").fetchone()[0] == 0
    got = w.retry_derive([a]).result(timeout=60)
    assert got.batches == [a] and got.outstanding == 0 == w.stats.underived_batches
    assert con.cursor().execute("SELECT count(*) FROM run_attempts").fetchone()[0] == 3
    w.stop()
    con.close()


def _given_up_database(path: Path, monkeypatch, now: datetime) -> None:
    """A database a collector left with one batch given up on (two runs stored: one derived, one not)."""
    refuse_to_derive(monkeypatch, "r-poison")
    evs = [[event(i, "notebook.run.succeeded", {"run_id": f"r-{i}", "notebook_id": "nb", "team": "t",
                                                "duration_seconds": 5.0}, time_=now.isoformat())]
           for i in ("ok", "poison")]
    w, con = _ingest(path, evs)
    w.stop()
    con.close()
    monkeypatch.undo()


def test_the_api_lists_and_retries_for_admins_only(make_client, db_path, monkeypatch):
    when = datetime.now(timezone.utc) - timedelta(minutes=5)
    _given_up_database(db_path, monkeypatch, when)
    c = make_client()
    assert c.get("/v1/derive/failures").status_code == 401
    assert c.get("/v1/derive/failures", headers=auth("read")).status_code == 403
    assert c.post("/v1/derive/retry", headers=auth("ingest")).status_code == 403
    for path in ("/v1/derive/failures", "/v1/dead-letters"):  # they concern every team
        r = c.get(path, headers=auth("team_admin"))
        assert r.status_code == 403 and "platform token" in r.json()["detail"]
    assert c.post("/v1/derive/retry", headers=auth("team_admin")).status_code == 403
    doc = c.get("/v1/derive/failures", headers=auth("admin")).json()
    assert doc["outstanding"] == 1 and doc["items"][0]["error"] == "RuntimeError"
    # what the batch holds: the run attempt it keeps out of the derived tables, its team, its events' time
    item = doc["items"][0]
    assert (item["run_attempts"], item["teams"]) == (1, ["t"])
    assert item["event_time_from"] == item["event_time_to"] and item["event_time_from"].startswith(
        when.strftime("%Y-%m-%dT%H:%M:%S"))
    samples = parse_metrics(c.get("/metrics", headers=auth("read")).text)
    assert metric_sum(samples, "observatory_writer_underived_batches") == 1
    assert metric_sum(samples, "notebook_run_attempts_total") == 1
    r = c.post("/v1/derive/retry", json={"batch_ids": [123456]}, headers=auth("admin"))
    assert r.status_code == 404 and "123456" in r.json()["detail"]
    assert c.post("/v1/derive/retry", json={"batch_ids": "x"}, headers=auth("admin")).status_code == 422
    assert c.post("/v1/derive/retry", json={"batch_ids": [2**63]}, headers=auth("admin")).status_code == 422
    assert c.post("/v1/derive/retry", content=b"{", headers=auth("admin")).status_code == 400
    # the body is read under its cap after the token check, never before (collector/api/body.py)
    huge = b"[" + b"1," * (300 * 1024) + b"1]"
    assert c.post("/v1/derive/retry", content=huge).status_code == 401
    assert c.post("/v1/derive/retry", content=huge, headers=auth("admin")).status_code == 413
    r = c.post("/v1/derive/retry", headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["batches"] == [doc["items"][0]["batch_id"]] and r.json()["events"] == 1
    samples = parse_metrics(c.get("/metrics", headers=auth("read")).text)
    assert metric_sum(samples, "observatory_writer_underived_batches") == 0
    assert metric_sum(samples, "notebook_run_attempts_total") == 2
    assert c.get("/v1/runs/r-poison", headers=auth("read")).json()["state"] == "succeeded"
    assert c.get("/v1/derive/failures", headers=auth("admin")).json() == {"outstanding": 0, "items": []}
    assert len(c.get("/v1/derive/failures?all=true", headers=auth("admin")).json()["items"]) == 1
    # a dismissal names its batches and a reason, and is refused for a batch that does not wait
    for body in ({"batch_ids": [], "reason": "x"}, {"batch_ids": [1]}, {"batch_ids": [1], "reason": " "},
                 {"batch_ids": [1], "reason": "x" * 501}, {"batch_ids": [1], "reason": "x", "more": 1}):
        assert c.post("/v1/derive/dismiss", json=body, headers=auth("admin")).status_code == 422, body
    r = c.post("/v1/derive/dismiss", json={"batch_ids": [doc["items"][0]["batch_id"]], "reason": "x"},
               headers=auth("admin"))
    assert r.status_code == 404 and "not waiting" in r.json()["detail"]
    assert c.post("/v1/derive/dismiss", json={"batch_ids": [1], "reason": "x"}).status_code == 401
    assert c.post("/v1/derive/dismiss", json={"batch_ids": [1], "reason": "x"},
                  headers=auth("team_admin")).status_code == 403


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OBSERVATORY, "derive", *args], capture_output=True, text=True, timeout=120)


def test_the_cli_on_a_running_collector_and_on_its_file(tmp_path, monkeypatch):
    db = tmp_path / "o.duckdb"
    _given_up_database(db, monkeypatch, datetime.now(timezone.utc) - timedelta(minutes=5))
    col = Collector(db=db).start()
    try:
        got = _cli("failures", "--url", col.url)
        assert got.returncode == 3, got.stderr
        assert json.loads(got.stdout)["outstanding"] == 1
        locked = _cli("retry", "--db", str(db))  # the collector holds the file
        assert locked.returncode == 1 and locked.stderr.startswith("error: ") and "Traceback" not in locked.stderr
        assert "Traceback" not in _cli("retry", "--url", col.url, "--batch", "424242").stderr
        done = _cli("retry", "--url", col.url)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["events"] == 1
        samples = parse_metrics(httpx.get(col.url + "/metrics").text)
        assert metric_sum(samples, "observatory_writer_underived_batches") == 0
        assert metric_sum(samples, "notebook_run_attempts_total") == 2
        assert _cli("failures", "--url", col.url).returncode == 0
    finally:
        col.stop()
    # on the file, with the collector stopped: the same documents
    assert json.loads(_cli("failures", "--db", str(db), "--all").stdout)["items"][0]["rederived_batch"]
    assert json.loads(_cli("retry", "--db", str(db)).stdout) == {"batches": [], "events": 0, "batch_id": None}


def test_the_cli_dismisses_on_a_running_collector_and_on_its_file(tmp_path, monkeypatch):
    db = tmp_path / "o.duckdb"
    _given_up_database(db, monkeypatch, datetime.now(timezone.utc) - timedelta(minutes=5))
    batch = str(json.loads(_cli("failures", "--db", str(db)).stdout)["items"][0]["batch_id"])
    assert _cli("dismiss", "--db", str(db), "--batch", batch, "--reason", " ").returncode == 1
    col = Collector(db=db).start()
    try:
        done = _cli("dismiss", "--url", col.url, "--batch", batch, "--reason", f"lost for good {SECRET}")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"dismissed": [int(batch)]}
        assert metric_sum(parse_metrics(httpx.get(col.url + "/metrics").text),
                          "observatory_writer_underived_batches") == 0
        again = _cli("dismiss", "--url", col.url, "--batch", batch, "--reason", "again")
        assert again.returncode == 1 and "not waiting" in again.stderr
    finally:
        col.stop()
    listed = json.loads(_cli("failures", "--db", str(db), "--all").stdout)["items"][0]
    assert listed["dismissed_reason"].startswith("lost for good") and SECRET not in listed["dismissed_reason"]
    assert SECRET not in col.logs()
    done = _cli("retry", "--db", str(db), "--batch", batch)  # the cause fixed after all
    assert done.returncode == 0 and json.loads(done.stdout)["batches"] == [int(batch)]


def test_the_cli_retries_on_the_file_of_a_stopped_collector(tmp_path, monkeypatch):
    db = tmp_path / "o.duckdb"
    _given_up_database(db, monkeypatch, datetime.now(timezone.utc) - timedelta(minutes=5))
    assert _cli("failures", "--db", str(db)).returncode == 3
    assert _cli("retry", "--db", str(db), "--batch", "999").returncode == 1
    done = _cli("retry", "--db", str(db))
    assert done.returncode == 0, done.stderr
    con = dbmod.connect(db)
    assert con.execute("SELECT count(*) FROM run_attempts").fetchone()[0] == 2
    assert con.execute("SELECT sum(value) FROM metric_counters WHERE name = 'notebook_run_attempts_total'"
                       ).fetchone()[0] == 2
    con.close()
    missing = _cli("failures", "--db", str(tmp_path / "nope.duckdb"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_the_lake_export_carries_the_attempts_a_retry_derives(tmp_path, monkeypatch):
    """The lake export re-exports a partition of run attempts when its count or its highest `updated_batch` changes:
    a retry inserts the attempts of the batches given up on, and updates others under its own, newer batch id."""
    import duckdb

    from collector.lake.export import export
    from collector.lake.stores import LocalStore

    t0 = datetime.now(timezone.utc) - timedelta(hours=1)
    run = lambda i, type_, rid, k: event(i, type_, {"run_id": rid, "notebook_id": "nb", "team": "t"},  # noqa: E731
                                         time_=(t0 + timedelta(minutes=k)).isoformat())
    refuse_to_derive(monkeypatch, "r-poison")
    w, con = _ingest(tmp_path / "w.duckdb", [
        [run("q", "notebook.run.queued", "r-x", 0)],
        # given up on: a new attempt (first seen days before, in a partition of its own), and the end of one stored
        # before
        [run("p", "notebook.run.succeeded", "r-poison", -3 * 24 * 60), run("x", "notebook.run.succeeded", "r-x", 2)],
        # after it, in r-x's partition: its highest updated_batch is this batch's, above the one given up on
        [run("y", "notebook.run.queued", "r-y", 3)],
    ])
    monkeypatch.undo()
    lake = tmp_path / "lake"

    def lake_runs() -> list[tuple]:
        export(con.cursor(), LocalStore(lake), "c1")
        return duckdb.sql(f"SELECT run_id, state FROM read_parquet('{lake}/run_attempts/*/*.parquet', "
                          "hive_partitioning = true) ORDER BY ALL").fetchall()

    assert lake_runs() == [("r-x", "queued"), ("r-y", "queued")]
    w.retry_derive().result(timeout=60)
    assert lake_runs() == [("r-poison", "succeeded"), ("r-x", "succeeded"), ("r-y", "queued")]
    w.stop()
    con.close()
