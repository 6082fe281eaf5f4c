"""POST /v1/alertmanager records Alertmanager's pages once per (fingerprint, start); pages_count() is SLI M13."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import duckdb
import pytest

from collector.sources import alertmanager
from collector.storage import alerts as alerts_table, db
try:
    from tests.conftest import auth
except ImportError:  # pytest run without the repository root on sys.path
    from conftest import auth

T0 = "2026-11-21T10:03:00.123456789Z"


def am_alert(fingerprint="a1b2c3d4e5f60718", starts=T0, status="firing", **labels):
    lab = {"alertname": "ScheduledRunSuccessBudgetBurn", "severity": "page", "category": "slo", "team": "data",
           "sloth_service": "notebooks", "sloth_slo": "scheduled-run-success", **labels}
    return {
        "status": status, "labels": lab, "fingerprint": fingerprint, "startsAt": starts,
        "endsAt": "2026-11-21T10:40:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
        "annotations": {"summary": "burning", "runbook_url": "https://r.example.org/slo-scheduled-run-success.md"},
    }


def payload(*alerts, receiver="oncall", status="firing"):
    return {"version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": 0, "status": status,
            "receiver": receiver, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


def count(client, **params) -> int:
    r = client.get("/v1/alertmanager/pages", params={"since": "2026-11-01T00:00:00Z",
                                                     "until": "2026-12-01T00:00:00Z", **params}, headers=auth("read"))
    assert r.status_code == 200, r.text
    return r.json()["count"]


def test_page_is_recorded_once_across_repeats_and_resolution(client):
    body = payload(am_alert())
    r = client.post("/v1/alertmanager", json=body, headers=auth("ingest"))
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 1, "new": 1, "new_pages": 1}
    # Alertmanager's repeat_interval re-sends it; a group update re-sends it; then it resolves
    assert client.post("/v1/alertmanager", json=body, headers=auth("ingest")).json()["new"] == 0
    assert client.post("/v1/alertmanager", json=body, headers=auth("ingest")).json()["new"] == 0
    resolved = payload(am_alert(status="resolved"), status="resolved")
    assert client.post("/v1/alertmanager", json=resolved, headers=auth("ingest")).json() == \
        {"received": 1, "new": 0, "new_pages": 0}
    assert count(client) == 1
    page = client.get("/v1/alertmanager/pages", params={"since": "2026-11-01T00:00:00Z",
                                                        "until": "2026-12-01T00:00:00Z"},
                      headers=auth("read")).json()["pages"][0]
    assert page["status"] == "resolved" and page["notifications"] == 4
    assert page["starts_at"].startswith("2026-11-21T10:03:00.123456")
    assert page["ends_at"].startswith("2026-11-21T10:40:00")
    assert page["slo"] == "scheduled-run-success" and page["team"] == "data"
    assert page["runbook_url"] == "https://r.example.org/slo-scheduled-run-success.md"


def test_the_same_alert_firing_again_later_is_a_new_page(client):
    client.post("/v1/alertmanager", json=payload(am_alert()), headers=auth("ingest"))
    later = payload(am_alert(starts="2026-11-22T08:00:00Z"))
    assert client.post("/v1/alertmanager", json=later, headers=auth("ingest")).json()["new_pages"] == 1
    assert count(client) == 2


def test_tickets_are_stored_but_not_pages(client):
    body = payload(am_alert(fingerprint="t1", severity="ticket"), am_alert(fingerprint="p1"),
                   am_alert(fingerprint="p2", team="ml", alertname="NotebookConsecutiveFailures", notebook="nb-1",
                            owner="bob", category="notebook"))
    assert client.post("/v1/alertmanager", json=body, headers=auth("ingest")).json() == \
        {"received": 3, "new": 3, "new_pages": 2}
    assert count(client) == 2
    assert count(client, team="ml") == 1
    assert count(client, team="data") == 1
    assert count(client, team="finance") == 0


def test_sloth_severity_label_counts_for_plain_sloth_rules(client):
    alert = am_alert()
    del alert["labels"]["severity"]
    alert["labels"]["sloth_severity"] = "page"
    client.post("/v1/alertmanager", json=payload(alert), headers=auth("ingest"))
    assert count(client) == 1


def test_duplicates_inside_one_payload_count_once(client):
    body = payload(am_alert(), am_alert())
    assert client.post("/v1/alertmanager", json=body, headers=auth("ingest")).json() == \
        {"received": 2, "new": 1, "new_pages": 1}


def test_auth_and_validation(client):
    body = payload(am_alert())
    assert client.post("/v1/alertmanager", json=body).status_code == 401
    assert client.post("/v1/alertmanager", json=body, headers=auth("read")).status_code == 403
    bad = copy.deepcopy(body)
    bad["version"] = "3"
    r = client.post("/v1/alertmanager", json=bad, headers=auth("ingest"))
    assert r.status_code == 422 and "version" in r.text
    bad = payload(am_alert(starts="yesterday"))
    r = client.post("/v1/alertmanager", json=bad, headers=auth("ingest"))
    assert r.status_code == 422 and "not an RFC 3339 time" in r.text and "startsAt" in r.text
    bad = payload(am_alert())
    del bad["alerts"][0]["labels"]["alertname"]
    r = client.post("/v1/alertmanager", json=bad, headers=auth("ingest"))
    assert r.status_code == 422 and "alertname" in r.text
    assert count(client) == 0  # nothing of a rejected payload is stored


def test_team_limited_token_sees_only_its_team(client):
    client.post("/v1/alertmanager", json=payload(am_alert(), am_alert(fingerprint="f2", team="finance")),
                headers=auth("ingest"))
    r = client.get("/v1/alertmanager/pages", params={"since": "2026-11-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
                   headers=auth("team_read"))
    assert r.status_code == 200 and r.json()["count"] == 1 and r.json()["team"] == "finance"
    r = client.get("/v1/alertmanager/pages", params={"team": "data"}, headers=auth("team_read"))
    assert r.status_code == 403


def test_secrets_in_annotations_are_redacted(client):
    alert = am_alert()
    alert["annotations"]["description"] = "token ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    client.post("/v1/alertmanager", json=payload(alert), headers=auth("ingest"))
    with client.app.state.store.read_cursor() as cur:
        stored = cur.execute("SELECT annotations FROM alertmanager_alerts").fetchone()[0]
    assert "ghp_a1B2" not in stored and "[REDACTED:" in stored


def test_pages_count_window_and_team(tmp_path):
    con = db.connect(tmp_path / "x.duckdb")
    rows = alertmanager.alert_rows(alertmanager.AMWebhook.model_validate(payload(
        am_alert(fingerprint="a", starts="2026-11-21T10:00:00Z"),
        am_alert(fingerprint="b", starts="2026-11-21T11:00:00Z", team="ml"),
        am_alert(fingerprint="c", starts="2026-11-21T12:00:00Z", severity="ticket"),
    )), datetime(2026, 11, 21, 12, 1, tzinfo=timezone.utc))
    con.execute("BEGIN")
    assert alerts_table.upsert_alerts(con, rows) == (3, 2)
    con.execute("COMMIT")
    t = lambda h: datetime(2026, 11, 21, h, tzinfo=timezone.utc)  # noqa: E731
    assert alerts_table.pages_count(con, t(0), t(23)) == 2
    assert alerts_table.pages_count(con, t(10), t(11)) == 1  # [since, until)
    assert alerts_table.pages_count(con, t(11), t(23), team="ml") == 1
    assert alerts_table.pages_count(con, t(11), t(23), team="data") == 0
    # the grouped form the SLI refresh uses gives the same counts for every team and range at once
    ranges = [(t(0), t(23)), (t(10), t(11)), (t(11), t(23)), (t(13), t(23))]
    grouped = alerts_table.pages_and_flaps_by_team(con, ranges)
    for (a, b), counts in zip(ranges, grouped):
        for team in (None, "ml", "data", "platform"):
            assert counts.get(team, (0, 0)) == alerts_table.pages_and_flaps(con, a, b, team=team), (a, b, team)
    con.close()


def test_a_flapping_page_counts_once(tmp_path):
    # the same alert (fingerprint f): fires 10:00, resolves 10:40, fires again 11:00 (20 min later: a flap of the
    # first page), fires again 13:00 (2 h after 11:00 still unresolved + 1 h window: a new page); a `critical`
    # alert is a page too
    con = db.connect(tmp_path / "x.duckdb")
    rows = alertmanager.alert_rows(alertmanager.AMWebhook.model_validate(payload(
        am_alert(fingerprint="f", starts="2026-11-21T10:00:00Z", status="resolved"),
        am_alert(fingerprint="f", starts="2026-11-21T11:00:00Z"),
        am_alert(fingerprint="f", starts="2026-11-21T13:00:00Z"),
        am_alert(fingerprint="g", starts="2026-11-21T12:00:00Z", severity="critical"),
    )), datetime(2026, 11, 21, 13, 1, tzinfo=timezone.utc))
    con.execute("BEGIN")
    alerts_table.upsert_alerts(con, rows)
    con.execute("COMMIT")
    t = lambda h: datetime(2026, 11, 21, h, tzinfo=timezone.utc)  # noqa: E731
    assert alerts_table.pages_and_flaps(con, t(0), t(23)) == (3, 1)
    assert alerts_table.pages_and_flaps(con, t(11), t(12)) == (0, 1)  # the flap's page started before the window
    assert alerts_table.pages_count(con, t(0), t(23), team="data") == 3
    ranges = [(t(0), t(23)), (t(11), t(12)), (t(12), t(23))]
    assert alerts_table.pages_and_flaps_by_team(con, ranges) == [
        {None: alerts_table.pages_and_flaps(con, a, b), "data": alerts_table.pages_and_flaps(con, a, b, "data")}
        for a, b in ranges]
    assert alerts_table.pages_and_flaps_by_team(con, ranges)[0] == {None: (3, 1), "data": (3, 1)}
    con.close()


@pytest.mark.parametrize("text, expected", [
    ("2026-11-21T10:03:00.123456789Z", datetime(2026, 11, 21, 10, 3, 0, 123456, tzinfo=timezone.utc)),
    ("2026-11-21T12:03:00+02:00", datetime(2026, 11, 21, 10, 3, tzinfo=timezone.utc)),
    ("0001-01-01T00:00:00Z", None),
])
def test_parse_go_times(text, expected):
    assert alertmanager.parse_time(text) == expected


def test_pages_count_on_a_database_without_the_table_raises():
    # slo/sli.py turns this into an absent M13 (never 0)
    con = duckdb.connect()
    with pytest.raises(duckdb.Error):
        alerts_table.pages_count(con, datetime(2026, 1, 1, tzinfo=timezone.utc),
                                 datetime(2026, 2, 1, tzinfo=timezone.utc))
