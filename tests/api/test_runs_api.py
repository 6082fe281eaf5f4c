"""The read API behind the dashboards' tables (collector/api/runs.py): filters, paging, scoping, redaction."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from tests.conftest import auth
from tests.support import event

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def t(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_events(run_id: str, attempt: int, outcome: str, *, team: str = "finance", nb: str = "nb-a",
               trigger: str = "scheduled", ended: float = 10, duration: float = 60.0, **extra) -> list[dict]:
    base = {"run_id": run_id, "attempt": attempt, "notebook_id": nb, "team": team, "owner": f"{team}-owner",
            "trigger": trigger, "environment": "prod"}
    out = [event(f"{run_id}/{attempt}/q", "notebook.run.queued", base, time_=t(ended + duration / 60 + 1)),
           event(f"{run_id}/{attempt}/s", "notebook.run.started", base, time_=t(ended + duration / 60))]
    if outcome != "started":
        out.append(event(f"{run_id}/{attempt}/{outcome}", f"notebook.run.{outcome}",
                         {**base, "duration_seconds": duration, **extra}, time_=t(ended)))
    return out


@pytest.fixture
def seeded(client):
    evs = [
        event("reg-a", "notebook.registered", {"notebook_id": "nb-a", "owner": "ann", "team": "finance",
                                                "tags": {"tier": "production"}, "critical": True, "has_tests": True,
                                                "created_at": t(60 * 24 * 10)}, time_=t(60 * 24 * 9)),
        event("promo-a", "notebook.promoted", {"notebook_id": "nb-a", "team": "finance"}, time_=t(60 * 24 * 5)),
        event("reg-b", "notebook.registered", {"notebook_id": "nb-b", "owner": "bob", "team": "risk",
                                                "tags": {}}, time_=t(60 * 24 * 9)),
        event("sched-a", "notebook.schedule.registered", {"notebook_id": "nb-a", "team": "finance",
                                                          "cron": "0 6 * * *"}, time_=t(60 * 24 * 9)),
        # run 1: failed then succeeded on retry; run 2: failed (latest attempt); run 3: risk, succeeded;
        # run 4: a retry still running
        *run_events("r1", 1, "failed", ended=50, error_type="KeyError", error_message="KeyError: 'x'",
                    cells=[{"index": 1, "duration_seconds": 2.5, "status": "error"},
                           {"index": 0, "duration_seconds": 1.5, "status": "ok"}]),
        *run_events("r1", 2, "succeeded", ended=40, cpu_seconds=12.5, max_memory_bytes=1024,
                    cells=[{"index": 0, "duration_seconds": 1.0, "status": "ok"},
                           {"index": 1, "duration_seconds": 3.0, "status": "ok"},
                           {"index": 2, "duration_seconds": 0.5, "status": "ok"}]),
        *run_events("r2", 1, "timed_out", ended=30, error_type="Timeout",
                    error_message="token ghp_abcdefghijklmnopqrstuvwxyz0123456789AB leaked"),
        *run_events("r3", 1, "succeeded", team="risk", nb="nb-b", trigger="manual", ended=20),
        *run_events("r4", 2, "started", ended=5),
        event("k1", "notebook.kernel.died", {"kernel_id": "k1", "team": "finance", "notebook_id": "nb-a",
                                              "reason": "oom", "exit_code": 137, "msg": "out of memory",
                                              "traceback": "MemoryError"}, time_=t(15)),
        event("k2", "notebook.kernel.restarted", {"kernel_id": "k2", "team": "risk", "reason": "crash"}, time_=t(14)),
        event("k3", "notebook.kernel.restarted", {"kernel_id": "k3", "team": "risk", "reason": "user"}, time_=t(13)),
        event("art-1", "notebook.artifact.published", {"notebook_id": "nb-a", "team": "finance", "artifact": "tbl",
                                                        "sla_seconds": 600, "size_bytes": 100}, time_=t(120)),
        event("art-2", "notebook.artifact.published", {"notebook_id": "nb-a", "team": "finance", "artifact": "tbl",
                                                        "sla_seconds": 600, "size_bytes": 200}, time_=t(60)),
        event("art-3", "notebook.artifact.published", {"notebook_id": "nb-a", "team": "finance",
                                                        "artifact": "report", "size_bytes": 5}, time_=t(1)),
        event("art-4", "notebook.artifact.published", {"notebook_id": "nb-b", "team": "risk", "artifact": "fresh",
                                                        "sla_seconds": 86400, "size_bytes": 7}, time_=t(2)),
        event("q1", "notebook.quality.checked", {"notebook_id": "nb-a", "team": "finance", "check": "rows",
                                                  "result": "pass", "run_id": "r1", "attempt": 2}, time_=t(39)),
        event("q2", "notebook.quality.checked", {"notebook_id": "nb-a", "team": "finance", "check": "nulls",
                                                  "result": "fail", "run_id": "r1", "attempt": 2}, time_=t(38)),
        event("s1", "notebook.security.secret_detected", {"notebook_id": "nb-a", "team": "finance",
                                                           "detector": "trufflehog", "location": "cell 3"},
              time_=t(12)),
        event("s2", "notebook.security.access_denied", {"team": "risk", "principal": "eve",
                                                         "resource": "warehouse.x", "action": "read"}, time_=t(11)),
    ]
    r = client.post("/v1/events", json=evs, headers=auth("ingest"))
    assert r.status_code == 200 and r.json()["rejected"] == 0, r.text
    return client


def get(client, url: str, kind: str = "read", status: int = 200) -> dict:
    r = client.get(url, headers=auth(kind))
    assert r.status_code == status, r.text
    return r.json()


def keys(items: list[dict]) -> list[tuple]:
    return [(i["run_id"], i["attempt"]) for i in items]


def test_runs_newest_first_with_filters(seeded):
    items = get(seeded, "/v1/runs")["items"]
    assert keys(items) == [("r4", 2), ("r3", 1), ("r2", 1), ("r1", 2), ("r1", 1)]
    assert keys(get(seeded, "/v1/runs?team=risk")["items"]) == [("r3", 1)]
    assert keys(get(seeded, "/v1/runs?team=risk,finance&state=failed&state=timed_out")["items"]) == [
        ("r2", 1), ("r1", 1)]
    # latest attempt only: r1 failed but succeeded on retry, so it is not a failing run
    assert keys(get(seeded, "/v1/runs?state=failed,timed_out&latest_attempt=true")["items"]) == [("r2", 1)]
    assert keys(get(seeded, "/v1/runs?min_attempt=2&state=queued,started")["items"]) == [("r4", 2)]
    assert keys(get(seeded, "/v1/runs?trigger=manual")["items"]) == [("r3", 1)]
    assert keys(get(seeded, f"/v1/runs?since={t(35)}&until={t(10)}")["items"]) == [("r3", 1), ("r2", 1)]
    # Grafana's ${__from} is epoch milliseconds
    ms = int((NOW - timedelta(minutes=35)).timestamp() * 1000)
    assert keys(get(seeded, f"/v1/runs?since={ms}")["items"]) == [("r4", 2), ("r3", 1), ("r2", 1)]


def test_run_row_fields_and_redaction(seeded):
    (r2,) = get(seeded, "/v1/runs?state=timed_out")["items"]
    assert r2["owner"] == "finance-owner" and r2["team"] == "finance" and r2["notebook_id"] == "nb-a"
    assert r2["duration_seconds"] == 60.0 and r2["error_type"] == "Timeout"
    assert "ghp_" not in r2["error_message"] and "[REDACTED:" in r2["error_message"]
    assert r2["link"] == "/v1/runs/r2?attempt=1"
    assert r2["time"] == r2["ended_at"]


def test_paging_is_keyset_without_gaps_or_repeats(seeded):
    seen, after, pages = [], None, 0
    while True:
        page = get(seeded, "/v1/runs?limit=2" + (f"&after={after}" if after else ""))
        seen += keys(page["items"])
        pages += 1
        after = page["next_after"]
        if after is None:
            break
    assert pages == 3
    assert seen == keys(get(seeded, "/v1/runs")["items"])


def test_bad_parameters_are_422(seeded):
    assert "unknown values" in get(seeded, "/v1/runs?state=exploded", status=422)["detail"]
    assert "trigger" in get(seeded, "/v1/runs?trigger=cron", status=422)["detail"]
    assert "since" in get(seeded, "/v1/runs?since=yesterday", status=422)["detail"]
    assert "cursor" in get(seeded, "/v1/runs?after=bm90LWEtY3Vyc29y", status=422)["detail"]
    get(seeded, "/v1/runs?limit=0", status=422)
    get(seeded, "/v1/runs?limit=100000", status=422)
    get(seeded, "/v1/quality?result=maybe", status=422)
    get(seeded, "/v1/security/events?kind=other", status=422)
    get(seeded, "/v1/runs/latest", status=422)


def test_run_detail_with_cells_in_order_and_offsets(seeded):
    d = get(seeded, "/v1/runs/r1")
    assert d["attempt"] == 2 and d["attempts"] == 2 and d["cpu_seconds"] == 12.5
    assert [(c["index"], c["duration_seconds"], c["start_offset_seconds"]) for c in d["cells"]] == [
        (0, 1.0, 0.0), (1, 3.0, 1.0), (2, 0.5, 4.0)]
    first = get(seeded, "/v1/runs/r1?attempt=1")
    # cells arrive out of order; they are served in notebook order
    assert [(c["label"], c["status"], c["start_offset_seconds"]) for c in first["cells"]] == [
        ("cell 0", "ok", 0.0), ("cell 1", "error", 1.5)]
    # `latest` is the newest finished attempt (r4's retry is still running and has no cells yet)
    latest = get(seeded, "/v1/runs/latest?notebook_id=nb-a")
    assert (latest["run_id"], latest["attempt"], latest["state"]) == ("r2", 1, "timed_out")
    assert get(seeded, "/v1/runs/r4")["cells"] == []
    get(seeded, "/v1/runs/nope", status=404)
    get(seeded, "/v1/runs/r1?attempt=7", status=404)


def test_kernel_crashes_are_deaths_and_crash_restarts(seeded):
    items = get(seeded, "/v1/kernels/crashes")["items"]
    assert [(i["kernel_id"], i["reason"]) for i in items] == [("k2", "crash"), ("k1", "oom")]
    k1 = items[1]
    assert (k1["exit_code"], k1["message"], k1["traceback"], k1["owner"]) == (137, "out of memory", "MemoryError",
                                                                                 None)
    assert [i["kernel_id"] for i in get(seeded, "/v1/kernels/crashes?reason=oom")["items"]] == ["k1"]
    assert [i["kernel_id"] for i in get(seeded, "/v1/kernels/crashes?team=risk")["items"]] == ["k2"]


def test_notebooks_registry_with_runs_and_promotion(seeded):
    items = {n["notebook_id"]: n for n in get(seeded, "/v1/notebooks")["items"]}
    assert set(items) == {"nb-a", "nb-b"}
    a = items["nb-a"]
    assert (a["owner"], a["critical"], a["cron"], a["runs_7d"], a["failed_runs_7d"]) == ("ann", True, "0 6 * * *",
                                                                                       3, 2)
    assert a["days_to_production"] == pytest.approx(5.0, abs=0.01)
    assert a["last_run_state"] == "started"
    promoted = get(seeded, f"/v1/notebooks?promoted_since={t(60 * 24 * 6)}")["items"]
    assert [n["notebook_id"] for n in promoted] == ["nb-a"]
    assert get(seeded, f"/v1/notebooks?promoted_since={t(60 * 24 * 4)}")["items"] == []
    assert [n["notebook_id"] for n in get(seeded, "/v1/notebooks?promoted=false")["items"]] == ["nb-b"]
    page = get(seeded, "/v1/notebooks?limit=1")
    assert [n["notebook_id"] for n in page["items"]] == ["nb-a"]
    nxt = get(seeded, f"/v1/notebooks?limit=1&after={page['next_after']}")
    assert [n["notebook_id"] for n in nxt["items"]] == ["nb-b"] and nxt["next_after"] is None


def test_artifacts_latest_publication_age_and_staleness(seeded):
    items = {(a["notebook_id"], a["artifact"]): a for a in get(seeded, "/v1/artifacts")["items"]}
    tbl = items[("nb-a", "tbl")]
    assert (tbl["size_bytes"], tbl["publications"], tbl["sla_seconds"], tbl["stale"]) == (200, 2, 600.0, True)
    # published 60 min before NOW, which was fixed when this module was imported (maybe minutes ago in a long run)
    expected_age = 3600 + (datetime.now(timezone.utc) - NOW).total_seconds()
    assert tbl["age_seconds"] == pytest.approx(expected_age, abs=60)
    assert items[("nb-a", "report")]["stale"] is None  # no SLA
    assert items[("nb-b", "fresh")]["stale"] is False
    assert [a["artifact"] for a in get(seeded, "/v1/artifacts?stale=true")["items"]] == ["tbl"]
    assert [a["artifact"] for a in get(seeded, "/v1/artifacts?notebook_id=nb-b")["items"]] == ["fresh"]


def test_quality_and_security_events(seeded):
    q = get(seeded, "/v1/quality?notebook_id=nb-a")["items"]
    assert [(i["check"], i["result"], i["failed"]) for i in q] == [("nulls", "fail", 1), ("rows", "pass", 0)]
    assert [i["check"] for i in get(seeded, "/v1/quality?result=fail")["items"]] == ["nulls"]
    sec = get(seeded, "/v1/security/events")["items"]
    kinds = [(i["kind"], i["event_id"]) for i in sec]
    assert ("access_denied", "s2") in kinds and ("secret_detected", "s1") in kinds
    redacted = [i for i in sec if i["kind"] == "redacted_at_ingest"]
    assert [i["event_id"] for i in redacted] == ["r2/1/timed_out"] and redacted[0]["redactions"] >= 1
    assert [i["event_id"] for i in get(seeded, "/v1/security/events?kind=access_denied")["items"]] == ["s2"]


def test_read_scope_and_team_tokens(seeded):
    assert seeded.get("/v1/runs").status_code == 401
    for url in ("/v1/runs", "/v1/runs/r1", "/v1/kernels/crashes", "/v1/notebooks", "/v1/artifacts", "/v1/quality",
                "/v1/security/events"):
        assert seeded.get(url, headers=auth("ingest")).status_code == 403, url
        assert seeded.get(url, headers=auth("read")).status_code == 200, url
    # a token limited to finance sees finance only, and is refused other teams
    assert {i["team"] for i in get(seeded, "/v1/runs", "team_read")["items"]} == {"finance"}
    assert [i["kernel_id"] for i in get(seeded, "/v1/kernels/crashes", "team_read")["items"]] == ["k1"]
    assert get(seeded, "/v1/runs?team=risk", "team_read", status=403)
    get(seeded, "/v1/runs/r3", "team_read", status=404)
    assert {n["team"] for n in get(seeded, "/v1/notebooks", "team_read")["items"]} == {"finance"}


def test_openapi_documents_the_endpoints(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/runs", "/v1/runs/{run_id}", "/v1/kernels/crashes", "/v1/notebooks", "/v1/artifacts",
                 "/v1/quality", "/v1/security/events"):
        op = spec["paths"][path]["get"]
        assert op["tags"] == ["runs"] and op["summary"], path
        assert op.get("security"), f"{path} must declare the bearer scheme"
        params = {p["name"] for p in op["parameters"]}
        if path not in ("/v1/runs/{run_id}",):
            assert {"limit", "after", "team"} <= params, path
    schemas = spec["components"]["schemas"]
    assert schemas["Run"].get("examples"), "Run has an example"
    assert any(t["name"] == "runs" for t in spec["tags"])


def test_cursor_is_opaque_base64_json(seeded):
    after = get(seeded, "/v1/runs?limit=1")["next_after"]
    parts = orjson.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
    assert parts[1:] == ["r4", 2]
