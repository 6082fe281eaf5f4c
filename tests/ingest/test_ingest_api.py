"""POST /v1/events: formats, dedup, partial acceptance, dead letters, limits and auth."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone

import orjson
import pytest

from collector.contract.examples import example_event
from tests.conftest import auth
from tests.support import event


def stored(client, sql: str = "SELECT count(*) FROM events"):
    with client.app.state.store.read_cursor() as cur:
        return cur.execute(sql).fetchall()[0][0]


def probe(i: int, ok: bool = True) -> dict:
    return event(f"p-{i}", "platform.probe", {"target": "ui", "ok": ok})


def test_same_batch_twice_is_stored_once(client):
    batch = [probe(i) for i in range(10)]
    first = client.post("/v1/events", json=batch, headers=auth("ingest")).json()
    second = client.post("/v1/events", json=batch, headers=auth("ingest")).json()
    assert (first["accepted"], first["duplicates"]) == (10, 0)
    assert (second["accepted"], second["duplicates"]) == (0, 10)
    assert {r["status"] for r in second["results"]} == {"duplicate"}
    assert stored(client) == 10


def test_duplicate_inside_one_request_is_stored_once(client):
    r = client.post("/v1/events", json=[probe(1), probe(1), probe(2)], headers=auth("ingest")).json()
    assert [x["status"] for x in r["results"]] == ["accepted", "duplicate", "accepted"]
    assert stored(client) == 2


def test_same_id_from_another_source_is_another_event(client):
    a = probe(1)
    b = {**probe(1), "source": "test://other"}
    r = client.post("/v1/events", json=[a, b], headers=auth("ingest")).json()
    assert r["accepted"] == 2


def test_mixed_batch_stores_valid_and_dead_letters_the_rest(client):
    bad = event("bad-1", "notebook.run.failed", {"notebook_id": "nb"})  # no run_id
    batch = [probe(1), bad, probe(2), {"not": "an event"}]
    r = client.post("/v1/events", json=batch, headers=auth("ingest"))
    assert r.status_code == 200
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert body["results"][1]["errors"][0]["path"] == "data.run_id"
    assert body["results"][3]["errors"][0]["path"] == "type"
    assert stored(client) == 2
    dl = client.get("/v1/dead-letters", headers=auth("admin")).json()["items"]
    assert [(d["item_index"], d["event_id"], d["reason"]) for d in dl] == [(1, "bad-1", "missing"), (3, None, "missing")]
    assert dl[0]["request_id"] == body["request_id"]
    assert json.loads(dl[0]["payload"])["data"] == {"notebook_id": "nb"}


def test_all_rejected_answers_422(client):
    r = client.post("/v1/events", json=[{"type": "x"}], headers=auth("ingest"))
    assert r.status_code == 422
    assert r.json()["rejected"] == 1


def test_ndjson_with_a_broken_line(client):
    lines = [orjson.dumps(probe(1)), b'{"specversion": "1.0", "id": "broken', orjson.dumps(probe(2)), b""]
    r = client.post("/v1/events", content=b"\n".join(lines), headers={**auth("ingest"),
                                                                       "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200
    body = r.json()
    assert [x["status"] for x in body["results"]] == ["accepted", "rejected", "accepted"]
    err = body["results"][1]["errors"][0]
    assert err["type"] == "json_invalid" and "line 2" in err["message"]
    assert stored(client) == 2


def test_gzip_ndjson(client):
    body = gzip.compress(b"\n".join(orjson.dumps(probe(i)) for i in range(100)))
    r = client.post("/v1/events", content=body, headers={**auth("ingest"), "Content-Type": "application/x-ndjson",
                                                          "Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.json()["accepted"] == 100


def test_bad_gzip_and_bad_json_are_400(client):
    r = client.post("/v1/events", content=b"not gzip", headers={**auth("ingest"), "Content-Encoding": "gzip"})
    assert r.status_code == 400 and "gzip" in r.json()["detail"]
    r = client.post("/v1/events", content=b"{nope", headers={**auth("ingest"), "Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    r = client.post("/v1/events", content=b"[]", headers={**auth("ingest"), "Content-Type": "application/json"})
    assert r.status_code == 400


def test_unsupported_media_type_is_415(client):
    r = client.post("/v1/events", content=b"a,b", headers={**auth("ingest"), "Content-Type": "text/csv"})
    assert r.status_code == 415


def test_size_limits_answer_413(make_client):
    c = make_client(max_body_bytes=10_000, max_inflated_bytes=50_000, max_events_per_request=20)
    big = orjson.dumps([probe(i) for i in range(200)])
    assert len(big) > 10_000
    r = c.post("/v1/events", content=big, headers={**auth("ingest"), "Content-Type": "application/json"})
    assert r.status_code == 413
    bomb = gzip.compress(b"[" + b" " * 1_000_000 + b"]")
    assert len(bomb) < 10_000
    r = c.post("/v1/events", content=bomb, headers={**auth("ingest"), "Content-Encoding": "gzip",
                                                     "Content-Type": "application/json"})
    assert r.status_code == 413 and "decompressed" in r.json()["detail"]
    r = c.post("/v1/events", json=[probe(i) for i in range(21)], headers=auth("ingest"))
    assert r.status_code == 413 and "limit is 20" in r.json()["detail"]
    assert stored(c) == 0


@pytest.mark.parametrize("headers,status", [
    ({}, 401),
    ({"Authorization": "Bearer wrong-token-0000000000"}, 401),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
    (auth("read"), 403),
    (auth("ingest"), 200),
    (auth("admin"), 200),
])
def test_ingest_needs_the_ingest_scope(client, headers, status):
    r = client.post("/v1/events", json=probe(1), headers=headers)
    assert r.status_code == status, r.text
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")
    if status == 403:
        assert "ingest" in r.json()["detail"]


@pytest.mark.parametrize("kind,status", [("ingest", 403), ("read", 403), ("admin", 200)])
def test_dead_letters_need_admin(client, kind, status):
    assert client.get("/v1/dead-letters", headers=auth(kind)).status_code == status


@pytest.mark.parametrize("kind,status", [("ingest", 403), ("read", 200), ("admin", 200)])
def test_metrics_need_read_unless_public(client, kind, status):
    assert client.get("/metrics", headers=auth(kind)).status_code == status
    assert client.get("/metrics").status_code == 401


def test_metrics_can_be_public(make_client):
    c = make_client(metrics_public=True)
    assert c.get("/metrics").status_code == 200


def test_health_endpoints_need_no_token(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["writer"] is True


def test_dead_letter_paging_and_filters(client):
    bad = [event(f"b{i}", "platform.probe", {"target": "ui"}) for i in range(5)]  # ok missing
    client.post("/v1/events", json=bad, headers=auth("ingest"))
    page1 = client.get("/v1/dead-letters", params={"limit": 2}, headers=auth("admin")).json()
    page2 = client.get("/v1/dead-letters", params={"limit": 2, "after": page1["next_after"]},
                       headers=auth("admin")).json()
    page3 = client.get("/v1/dead-letters", params={"limit": 2, "after": page2["next_after"]},
                       headers=auth("admin")).json()
    ids = [d["event_id"] for p in (page1, page2, page3) for d in p["items"]]
    assert ids == [f"b{i}" for i in range(5)] and page3["next_after"] is None
    assert client.get("/v1/dead-letters", params={"reason": "nope"}, headers=auth("admin")).json()["items"] == []


def test_request_id_is_echoed(client):
    r = client.post("/v1/events", json=probe(1), headers={**auth("ingest"), "X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123" and r.json()["request_id"] == "abc-123"


def test_example_of_each_type_round_trips_into_storage_columns(client):
    ev = example_event("notebook.run.succeeded")
    client.post("/v1/events", json=ev, headers=auth("ingest"))
    with client.app.state.store.read_cursor() as cur:
        row = cur.execute("SELECT source, id, type, team, notebook_id, run_id, attempt, trigger, environment, "
                          "epoch(time), data FROM events").fetchall()[0]
    assert row[:9] == (ev["source"], ev["id"], ev["type"], "finance", "nb-revenue-daily",
                       ev["data"]["run_id"], 1, "scheduled", "prod")
    assert row[9] == datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc).timestamp()
    assert json.loads(row[10])["cells"][1]["duration_seconds"] == 180.3


MINIMAL = {"Prefer": "return=minimal"}


def test_minimal_answer_lists_only_the_events_not_accepted(client):
    client.post("/v1/events", json=[probe(90)], headers=auth("ingest"))  # stored before: a duplicate below
    bad = event("bad-m", "notebook.run.failed", {"notebook_id": "nb"})  # no run_id

    def batch(k: int) -> list[dict]:
        return [probe(k), probe(k), probe(k + 1), bad, probe(90)]

    full = client.post("/v1/events", json=batch(10), headers=auth("ingest"))
    short = client.post("/v1/events", json=batch(20), headers={**auth("ingest"), **MINIMAL})
    assert full.status_code == short.status_code == 200
    assert "preference-applied" not in full.headers
    assert short.headers["preference-applied"] == "return=minimal"
    f, s = full.json(), short.json()
    assert [f[k] for k in ("accepted", "duplicates", "rejected")] == [s[k] for k in ("accepted", "duplicates",
                                                                                      "rejected")] == [2, 2, 1]
    # the twin batches differ only in their ids: the full answer, less its accepted events, is the minimal one
    assert [(r["index"], r["status"]) for r in f["results"] if r["status"] != "accepted"] == \
        [(r["index"], r["status"]) for r in s["results"]] == [(1, "duplicate"), (3, "rejected"), (4, "duplicate")]
    assert [(r["source"], r["id"], r["code"]) for r in s["results"]] == [
        ("test://suite", "p-20", 200), ("test://suite", "bad-m", 422), ("test://suite", "p-90", 200)]
    assert s["results"][1]["errors"][0]["path"] == "data.run_id"
    assert stored(client) == 5


def test_minimal_answer_when_every_event_is_accepted(client):
    r = client.post("/v1/events", content=b"\n".join(orjson.dumps(probe(i)) for i in range(5)),
                    headers={**auth("ingest"), "Content-Type": "application/x-ndjson", "Prefer": "RETURN=Minimal"})
    assert (r.status_code, r.headers["preference-applied"]) == (200, "return=minimal")
    assert r.json() == {"request_id": r.headers["x-request-id"], "accepted": 5, "duplicates": 0, "rejected": 0,
                        "batch_id": r.json()["batch_id"], "results": []}
    assert stored(client) == 5


def test_minimal_answer_when_every_event_is_rejected(client):
    r = client.post("/v1/events", json=[{"type": "x"}, {"type": "y"}], headers={**auth("ingest"), **MINIMAL})
    assert (r.status_code, r.headers["preference-applied"]) == (422, "return=minimal")
    assert [x["status"] for x in r.json()["results"]] == ["rejected", "rejected"]


@pytest.mark.parametrize("prefer", [None, "return=representation", "respond-async", 'foo="x, return=minimal"',
                                    "return=representation, return=minimal", "return=minimalist"])
def test_other_preferences_keep_a_result_per_event(client, prefer):
    headers = {**auth("ingest"), **({"Prefer": prefer} if prefer else {})}
    r = client.post("/v1/events", json=[probe(1), probe(2)], headers=headers)
    assert "preference-applied" not in r.headers
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "accepted"]
