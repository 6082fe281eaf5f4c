"""GET /v1/sli filters and auth, Prometheus gauges = API values, missed cron slots, cost SLIs, pages, CLI.

Expected values here are worked out by hand in the test (no production SQL).
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from collector.app import create_app
from collector.settings import Settings
from slo.sli import compute as compute_mod
from slo.sli.fold import fold

_ids = itertools.count()


def ev(type_: str, t: datetime, **data) -> dict:
    return {"specversion": "1.0", "id": f"a{next(_ids)}", "source": "test://api", "type": type_,
            "time": t.isoformat(), "data": data}


def post(client: TestClient, events: list[dict]) -> None:
    r = client.post("/v1/events", json=events)
    assert r.status_code == 200 and r.json()["rejected"] == 0, r.text


@pytest.fixture
def app_db(tmp_path):
    db = tmp_path / "obs.duckdb"
    app = create_app(Settings(db=db, auth=False, gauge_refresh_seconds=3600))
    with TestClient(app) as client:
        yield app, client, db


def _hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def test_gauges_equal_api_values(app_db):
    app, client, _ = app_db
    now = datetime.now(timezone.utc)
    run = dict(notebook_id="nb", trigger="scheduled", environment="prod")
    post(client, [
        ev("notebook.run.succeeded", now - timedelta(minutes=20), run_id="g1", team="a", duration_seconds=30, **run),
        ev("notebook.run.failed", now - timedelta(minutes=10), run_id="g2", team="a", **run),
        # not counted as consecutive failures: a dev run, a manual run, a run whose retry has not ended yet
        ev("notebook.run.failed", now - timedelta(minutes=9), run_id="g4", team="a",
           **{**run, "environment": "dev"}),
        ev("notebook.run.failed", now - timedelta(minutes=8), run_id="g5", team="a", **{**run, "trigger": "manual"}),
        ev("notebook.run.failed", now - timedelta(minutes=7), run_id="g6", attempt=1, team="a", **run),
        ev("notebook.run.started", now - timedelta(minutes=6), run_id="g6", attempt=2, team="a", **run),
        ev("notebook.run.succeeded", now - timedelta(hours=5), run_id="g3", team="b", duration_seconds=90, **run),
        ev("platform.probe", now - timedelta(minutes=3), target="ui", ok=True, team="a"),
        ev("notebook.kernel.started", now - timedelta(minutes=3), kernel_id="k", team="b"),
        ev("notebook.registered", now - timedelta(days=3), notebook_id="nb", owner="o", team="a",
           tags={"description": "d"}, critical=True, has_tests=False),
        ev("notebook.artifact.published", now - timedelta(hours=2), notebook_id="nb", team="a", artifact="x",
           sla_seconds=3600),
    ])
    store = app.state.store
    store.refresher.refresh_now()
    text = client.get("/metrics").text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    as_of = datetime.fromtimestamp(fams["notebook_sli_snapshot_timestamp_seconds"].samples[0].value, timezone.utc)
    api = client.get("/v1/sli", params={"as_of": as_of.isoformat(), "level": "platform,team"}).json()["slis"]
    want_ratio = {(r["sli"], r["window"], r["team"] or "__all__"): r["value"] for r in api
                  if r["stat"] == "ratio" and r["value"] is not None and r["trigger"] is None}
    want_value = {(r["sli"], r["window"], r["team"] or "__all__", r["stat"]): r["value"] for r in api
                  if r["stat"] != "ratio" and r["value"] is not None and r["trigger"] is None}
    got_ratio = {(s.labels["sli"], s.labels["window"], s.labels["team"]): s.value
                 for s in fams["notebook_sli_ratio"].samples}
    got_value = {(s.labels["sli"], s.labels["window"], s.labels["team"], s.labels["stat"]): s.value
                 for s in fams["notebook_sli_value"].samples}
    assert got_ratio == want_ratio
    assert got_value == want_value
    # M1 counts every ended attempt: a has g1 ok and g2, g4, g5, g6#1 failed
    assert got_ratio[("M1", "1h", "a")] == 1 / 5 and got_ratio[("M1", "1d", "__all__")] == 2 / 6
    assert ("M1", "1h", "b") not in got_ratio  # b had no run in the last hour: no sample, not 0
    assert got_value[("M3", "1d", "__all__", "p50")] == 60.0
    ages = {s.labels["team"]: s.value for s in fams["notebook_artifact_age_seconds"].samples}
    stale = {s.labels["team"]: s.value for s in fams["notebook_artifacts_stale"].samples}
    assert stale == {"a": 1.0} and ages["a"] == pytest.approx(7200, abs=120)
    tracked = {s.labels["team"]: s.value for s in fams["notebook_artifacts"].samples}
    m7 = [r for r in api if r["sli"] == "M7" and r["team"] == "a" and r.get("notebook_id") is None
          and r.get("trigger") is None]
    assert m7 and tracked["a"] == m7[0]["total"]
    consec = [(s.labels["notebook"], s.labels["owner"], s.value) for s in fams["notebook_consecutive_failures"].samples]
    assert consec == [("nb", "o", 1.0)]  # g1 succeeded, then g2 failed (g4 dev, g5 manual, g6 retrying)


def test_missed_scheduled_runs(app_db):
    app, client, _ = app_db
    now = datetime.now(timezone.utc)
    h0 = _hour(now)
    grace = 600
    reg_t = h0 - timedelta(hours=5) + timedelta(minutes=1)
    # hourly slots after the registration, decided once slot + grace <= now
    slots = [h0 - timedelta(hours=k) for k in (4, 3, 2, 1, 0) if h0 - timedelta(hours=k) + timedelta(seconds=grace) <= now]
    base = dict(notebook_id="sched", team="etl", trigger="scheduled")
    post(client, [
        ev("notebook.schedule.registered", reg_t, notebook_id="sched", team="etl", cron="0 * * * *",
           grace_seconds=grace),
        ev("notebook.run.started", h0 - timedelta(hours=4) + timedelta(minutes=2), run_id="s4", **base),
        ev("notebook.run.succeeded", h0 - timedelta(hours=4) + timedelta(minutes=7), run_id="s4", **base),
        ev("notebook.run.queued", h0 - timedelta(hours=3) + timedelta(minutes=20), run_id="s3", **base),  # too late
        ev("notebook.run.queued", h0 - timedelta(hours=2) + timedelta(minutes=9), run_id="s2", **base),
        ev("notebook.run.failed", h0 - timedelta(hours=2) + timedelta(minutes=15), run_id="s2", **base),
    ])
    expect_missed = [s for s in slots if s in (h0 - timedelta(hours=3), h0 - timedelta(hours=1), h0)]

    def m8():
        r = client.get("/v1/sli", params={"sli": "M8", "window": "1d", "team": "etl",
                                          "as_of": now.isoformat()}).json()["slis"][0]
        return r["bad"], r["total"]

    # attempts: s4 ok, s2 failed (s3 never ended); misses as listed
    assert m8() == (1 + len(expect_missed), 2 + len(expect_missed))
    with app.state.store.read_cursor() as cur:
        got = [r[0] for r in cur.execute("SELECT slot FROM sli_missed_slots WHERE retracted_at IS NULL ORDER BY slot")
               .fetchall()]
    assert got == expect_missed
    # counted once: another pass adds nothing
    with app.state.store.read_cursor() as cur:
        assert fold(cur).new_missed == 0
    # a late run for the 1-hour-ago slot, started within its grace period, retracts that miss for M8...
    post(client, [ev("notebook.run.started", h0 - timedelta(hours=1) + timedelta(minutes=1), run_id="s1", **base)])
    assert m8() == (len(expect_missed), 1 + len(expect_missed))
    # ...but the counter of detections does not go down. The refresher folds at the wall clock, which may have
    # passed the current hour's slot + grace since `now` (a clean-clone CI run at 14:10 found 3 against 2): it counts
    # every miss detected by then, the retracted one included
    app.state.store.refresher.refresh_now()
    fams = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    missed = {s.labels["team"]: s.value for s in fams["notebook_scheduled_runs_missed"].samples
              if s.name.endswith("_total")}
    with app.state.store.read_cursor() as cur:
        detected = cur.execute("SELECT slot, retracted_at IS NOT NULL FROM sli_missed_slots ORDER BY slot").fetchall()
    late_hour = [] if h0 in expect_missed else [h0]  # decided after `now`, by the refresher's clock
    assert [slot for slot, _ in detected] in (expect_missed, expect_missed + late_hour)
    served = h0 - timedelta(hours=1)
    assert [slot for slot, retracted in detected if retracted] == [served] * (served in expect_missed)
    assert missed == {"etl": float(len(detected))}


def test_a_reregistration_retracts_the_misses_its_schedule_no_longer_has(app_db):
    """A registration arriving late with another cron re-enumerates its notebook: misses of the old cron after it
    are retracted (also those after the new cron's last decided slot: a clean-clone CI run at 03:1x found that
    they stayed), the new cron's slots are decided, and another notebook's misses stay."""
    app, client, _ = app_db
    # 20 minutes past an hour: the old cron's slot at h0 is decided, the new cron's at h0 + 30 min is not yet (its
    # old miss must go all the same: the schedule in force has no slot there)
    h0 = _hour(datetime.now(timezone.utc)) - timedelta(hours=1)
    now = h0 + timedelta(minutes=20)
    reg_t = h0 - timedelta(hours=5) + timedelta(minutes=1)
    decided = timedelta(seconds=600)
    post(client, [ev("notebook.schedule.registered", reg_t, notebook_id=nb, team="etl", cron="0 * * * *",
                     grace_seconds=600) for nb in ("x", "y")])

    def missed(nb: str) -> list[datetime]:
        with app.state.store.read_cursor() as cur:
            fold(cur, now=now)
            return [r[0] for r in cur.execute(
                "SELECT slot FROM sli_missed_slots WHERE notebook_id = ? AND retracted_at IS NULL ORDER BY slot",
                [nb]).fetchall()]

    hourly = [h0 - timedelta(hours=k) for k in (4, 3, 2, 1, 0) if h0 - timedelta(hours=k) + decided <= now]
    assert missed("x") == hourly and missed("y") == hourly
    # x's schedule changed to half past, registered two minutes after the first registration (arriving now)
    post(client, [ev("notebook.schedule.registered", reg_t + timedelta(minutes=1), notebook_id="x", team="etl",
                     cron="30 * * * *", grace_seconds=600)])
    half_past = [h0 - timedelta(hours=k, minutes=-30) for k in (5, 4, 3, 2, 1, 0)
                 if h0 - timedelta(hours=k, minutes=-30) + decided <= now]
    assert missed("x") == half_past
    assert missed("y") == hourly


def test_filters_names_and_errors(app_db):
    _, client, _ = app_db
    now = datetime.now(timezone.utc)
    post(client, [ev("notebook.run.succeeded", now - timedelta(minutes=5), run_id="f1", notebook_id="n1", team="a",
                     trigger="ci"),
                  ev("notebook.run.failed", now - timedelta(minutes=5), run_id="f2", notebook_id="n2", team="b",
                     trigger="manual")])
    r = client.get("/v1/sli", params={"sli": "run_success_rate", "window": "1h", "trigger": "ci"}).json()
    assert {(x["team"], x["trigger"], x["value"]) for x in r["slis"]} == {(None, "ci", 1.0), ("a", "ci", 1.0)}
    r = client.get("/v1/sli", params={"sli": "M1", "window": "1h", "notebook_id": "n2"}).json()
    assert [(x["team"], x["notebook_id"], x["trigger"], x["value"]) for x in r["slis"]] == [
        ("b", "n2", None, 0.0), ("b", "n2", "manual", 0.0)]
    r = client.get("/v1/sli", params={"sli": "M1,M3", "window": "1h,1d", "team": "a"}).json()
    assert {(x["sli"], x["window"], x["stat"]) for x in r["slis"]} >= {("M1", "1h", "ratio"), ("M1", "1d", "ratio")}
    assert all(x["provenance"]["definition_version"].startswith(x["sli"] + "/") for x in r["slis"])
    row = [x for x in r["slis"] if x["sli"] == "M1" and x["window"] == "1h"][0]
    assert row["provenance"]["event_time_to"] == r["as_of"]
    assert client.get("/v1/sli", params={"sli": "M99"}).status_code == 400
    assert client.get("/v1/sli", params={"window": "1 hour"}).status_code == 400
    assert client.get("/v1/sli", params={"as_of": "2026-11-21T09:00:00"}).status_code == 400
    assert client.get("/v1/sli", params={"level": "galaxy"}).status_code == 400
    # the OpenAPI document carries the examples
    assert "/v1/sli" in client.get("/openapi.json").json()["paths"]


def test_team_scoped_token(tmp_path):
    tokens = json.dumps([{"name": "team-a", "token": "tok-team-a-0123456789", "scopes": ["read", "ingest"],
                          "team": "a"}])
    app = create_app(Settings(db=tmp_path / "o.duckdb", auth=True, tokens=tokens, gauge_refresh_seconds=3600))
    h = {"Authorization": "Bearer tok-team-a-0123456789"}
    now = datetime.now(timezone.utc)
    with TestClient(app) as client:
        r = client.post("/v1/events", headers=h, json=[
            ev("notebook.run.succeeded", now - timedelta(minutes=5), run_id="t1", notebook_id="n", team="a"),
            ev("notebook.run.failed", now - timedelta(minutes=5), run_id="t2", notebook_id="m", team="b")])
        assert r.status_code == 200
        assert client.get("/v1/sli").status_code == 401
        rows = client.get("/v1/sli", headers=h, params={"sli": "M1", "window": "1h"}).json()["slis"]
        assert {x["team"] for x in rows} == {"a"}
        assert client.get("/v1/sli", headers=h, params={"team": "b"}).status_code == 403


def _cost_rows(con, rows):
    cols = ["x_run_id", "x_team", "x_billing_month", "ChargePeriodStart", "EffectiveCost"]
    con.executemany(f'INSERT INTO cost_line_items ({", ".join(chr(34) + c + chr(34) for c in cols)}) '
                    f'VALUES (?, ?, ?, ?, ?)', rows)


def test_cost_slis_absent_then_computed(app_db, monkeypatch):
    app, client, _ = app_db
    asked: list[str] = []  # the catalogue asked for the billing tables: once per database, not at every computation
    real_exists = compute_mod.table_exists
    monkeypatch.setattr(compute_mod, "table_exists", lambda cur, name: asked.append(name) or real_exists(cur, name))
    now = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
    post(client, [ev("notebook.run.succeeded", now - timedelta(hours=3), run_id="c1", notebook_id="n", team="a"),
                  ev("notebook.run.failed", now - timedelta(hours=2), run_id="c2", notebook_id="n", team="a"),
                  ev("notebook.run.succeeded", now - timedelta(hours=1), run_id="c3", notebook_id="n", team="a")])
    q = {"sli": "M4,M10", "window": "1d", "as_of": now.isoformat()}
    rows = client.get("/v1/sli", params=q).json()["slis"]
    assert [(x["sli"], x["value"]) for x in rows] == [("M4", None), ("M10", None)]  # no billing data: absent, not 0
    assert asked and set(asked) == {"cost_line_items"}
    first_asks = len(asked)
    store = app.state.store
    store.writer.execute(lambda con: _cost_rows(con, [
        ("c1", "a", "2026-11", now - timedelta(hours=3), 1.50), ("c1", "a", "2026-11", now - timedelta(hours=3), 0.50),
        ("c2", "a", "2026-11", now - timedelta(hours=2), 4.00),
        (None, "a", "2026-11", datetime(2026, 11, 5, tzinfo=timezone.utc), 10.0),
        (None, "a", "2026-10", datetime(2026, 10, 5, tzinfo=timezone.utc), 8.0),
        (None, "a", "2026-10", datetime(2026, 10, 25, tzinfo=timezone.utc), 100.0),  # after Oct 20 12:00: not compared
    ])).result()
    rows = {(x["sli"], x["team"]): x for x in client.get("/v1/sli", params=q).json()["slis"]}
    # c1 costs 2.00, c2 4.00, c3 has no billing line yet (left out): (2 + 4) / 2
    assert rows[("M4", "a")]["value"] == pytest.approx(3.0) and rows[("M4", "a")]["total"] == 2
    # month to date: Nov (2 + 4 + 10 = 16) vs Oct up to the 20th 12:00 (8): +100 %
    assert rows[("M10", "a")]["value"] == pytest.approx(16 / 8 - 1)
    assert len(asked) == first_asks


def test_pages_m13(app_db):
    app, client, _ = app_db
    now = datetime.now(timezone.utc)
    post(client, [ev("platform.probe", now - timedelta(minutes=5), target="ui", ok=True, team="a")])

    def add(con):
        for i, (sev, team) in enumerate((("page", "a"), ("page", "a"), ("ticket", "a"), ("page", "b"))):
            con.execute("INSERT INTO alertmanager_alerts (fingerprint, starts_at, alertname, severity, team, status, "
                        "receiver, labels, annotations, first_received_at, last_received_at, notifications) "
                        "VALUES (?, ?, 'X', ?, ?, 'firing', 'r', '{}', '{}', now(), now(), 1)",
                        [f"fp{i}", now - timedelta(minutes=10), sev, team])

    app.state.store.writer.execute(add).result()
    rows = {(x["team"]): x["value"] for x in client.get("/v1/sli", params={"sli": "M13", "window": "1h"}).json()["slis"]}
    assert rows == {None: 3, "a": 2}  # team b sent no event in the window: its pages are in the platform count only


def test_cli_prints_table_and_json(app_db, tmp_path):
    app, client, db = app_db
    now = datetime.now(timezone.utc)
    post(client, [ev("notebook.run.succeeded", now - timedelta(minutes=5), run_id="cli", notebook_id="n", team="a")])
    client.__exit__(None, None, None)  # release the database file
    from slo.sli.cli import sli_app

    runner = CliRunner()
    res = runner.invoke(sli_app, ["--db", str(db), "--sli", "M1", "--window", "1h"])
    assert res.exit_code == 0, res.output
    assert "run_success_rate" in res.output and "1h" in res.output
    res = runner.invoke(sli_app, ["--db", str(db), "--sli", "M1", "--window", "1h", "--team", "a", "--level", "team", "--json"])
    doc = json.loads(res.output)
    assert [(r["team"], r["value"]) for r in doc["slis"]] == [("a", 1.0)]
    client.__enter__()
