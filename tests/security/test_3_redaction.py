"""Issue 13, point 4: every string that leaves a request passes redaction (stored column, label value, log line,
error message, dead letter, response); identifiers holding a credential or a control character are refused.
The final scan of the DuckDB file, WAL, logs, /metrics, dead letters and every response is test_9_no_leak.py."""

from __future__ import annotations

import pytest

from tests.security.conftest import PLANTED
from tests.support import event

pytestmark = pytest.mark.integration

S = PLANTED
NOW = "2026-11-20T10:00:00Z"
PEM_ESCAPED = "-----BEGIN RSA PRIVATE KEY-----\\n" + S["pem_body"][:20]  # truncated, JSON-escaped break


def _no_secret(text: str) -> None:
    for name, secret in S.items():
        assert secret not in text, f"{name} leaked: {text[:300]}"


def test_cloudevents_identifiers_texts_and_errors(server):
    items = [
        event("r-src", "notebook.run.started", {"run_id": "x1", "notebook_id": "nb-red"},
              source=f"papermill://{S['aws']}", time_=NOW),
        event(f"id-{S['github']}", "notebook.run.started", {"run_id": "x2", "notebook_id": "nb-red"}, time_=NOW),
        event("r-nul", "notebook.run.started", {"run_id": "x3", "notebook_id": "nb-red", "team": "a\x00b"},
              time_=NOW),
        event("r-nulsrc", "notebook.run.started", {"run_id": "x4", "notebook_id": "nb-red"}, source="s\x00x",
              time_=NOW),
        event("r-team", "notebook.run.started", {"run_id": "x5", "notebook_id": "nb-red", "team": S["slack"]},
              time_=NOW),
        event("r-type", f"notebook.{S['aws']}", {}, time_=NOW),
        event("r-cron", "notebook.schedule.registered", {"notebook_id": "nb-red", "cron": f"0 * * * {S['aws']}"},
              time_=NOW),
        event("r-tz", "notebook.schedule.registered", {"notebook_id": "nb-red", "cron": "0 * * * *",
                                                       "timezone": S["github"]}, time_=NOW),
        event("r-time", "platform.probe", {"target": "ui", "ok": True}, time_=S["aws"]),
        # accepted, with the secrets in free text redacted
        event("r-text", "notebook.run.failed", {
            "run_id": "x6", "notebook_id": "nb-red", "team": "red",
            "error_message": f"connect postgresql://etl:{S['url_password']}@db/x failed",
            "traceback": f"cfg = {{\"key\": \"{PEM_ESCAPED}\"}}\n  File \"a.py\"",
            "parameters": {"token": S["github"]}}, subject=f"with {S['aws']}", time_=NOW),
    ]
    r = server.request("POST", "/v1/events", "ingest", json=items, headers={"X-Request-ID": S["github"]})
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 1 and body["rejected"] == len(items) - 1
    kinds = {x["index"]: x["errors"][0]["type"] for x in body["results"] if x["status"] == "rejected"}
    assert kinds[0] == kinds[1] == kinds[4] == "secret_in_identifier"
    assert kinds[2] == kinds[3] == "control_character"
    assert body["request_id"] != S["github"] and r.headers["x-request-id"] == body["request_id"]
    _no_secret(r.text)
    dead = server.request("GET", "/v1/dead-letters", params={"request_id": body["request_id"]}).json()["items"]
    assert len(dead) == len(items) - 1
    assert any("[REDACTED:" in d["payload"] for d in dead)
    run = server.request("GET", "/v1/runs/x6").json()
    assert "[REDACTED:password_in_url]" in run["error_message"]
    _no_secret(str(run))


def test_native_formats(server):
    otlp = {"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": S["aws"]}}]}, "scopeLogs": [{"logRecords": [
            {"timeUnixNano": "1795176000000000000", "eventName": "notebook.run.started",
             "attributes": [{"key": "run_id", "value": {"stringValue": "o1"}},
                            {"key": "notebook_id", "value": {"stringValue": "nb-otlp"}}]},
            {"timeUnixNano": "1795176000000000000",
             "attributes": [{"key": "cicd.pipeline.result", "value": {"stringValue": S["github"]}}]},
        ]}]}]}
    r = server.request("POST", "/v1/logs", "ingest", json=otlp)
    assert r.status_code == 200 and r.json()["partialSuccess"]["rejectedLogRecords"] == "1"
    _no_secret(r.text)

    rec = {"__schema__": "https://events.jupyter.org/jupyter_server/kernel_actions/v1", "__schema_version__": 1,
           "__timestamp__": NOW, "action": S["github"], "status": "success", "kernel_id": "jk-red"}
    r = server.request("POST", f"/v1/jupyter/events?server={S['aws']}", "ingest",
                       json=[rec, {**rec, "action": "start"},
                             {**rec, "__schema__": "https://events.notebook-observatory.dev/jupyter/"
                                                   "kernel_lifecycle/v1", "action": S["slack"]}])
    assert r.status_code == 422 and r.json()["rejected"] == 2
    _no_secret(r.text)

    ol = {"eventType": "START", "eventTime": NOW, "producer": "https://x", "schemaURL": "https://y",
          "run": {"runId": "ol-red"}, "job": {"namespace": S["aws"], "name": "job"}}
    r = server.request("POST", "/api/v1/lineage/batch", "ingest",
                       json=[ol, {**ol, "eventType": S["github"], "job": {"namespace": "ns", "name": "j"}}])
    assert r.json()["summary"]["failed"] == 1
    _no_secret(r.text)

    am = {"version": "4", "status": "firing", "receiver": f"oncall {S['slack']}", "groupLabels": {},
          "alerts": [{"status": "firing", "startsAt": "2026-11-20T10:00:00Z", "fingerprint": "f-red",
                      "generatorURL": f"http://prom:{S['url_password']}@prometheus/graph",
                      "labels": {"alertname": "X", "severity": "page", "team": "red", f"k_{S['aws']}": "v",
                                 "note": S["github"]},
                      "annotations": {"summary": f"token={S['github']}", "runbook_url": "http://r"}}]}
    r = server.request("POST", "/v1/alertmanager", "ingest", json=am)
    assert r.status_code == 200 and r.json()["new"] == 1
    pages = server.request("GET", "/v1/alertmanager/pages",
                           params={"since": "2026-11-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"})
    assert any(p["fingerprint"] == "f-red" and "[REDACTED:" in p["receiver"] for p in pages.json()["pages"])
    _no_secret(pages.text)


@pytest.mark.parametrize("path, params", [
    ("/v1/runs", {"team": S["aws"]}), ("/v1/sli", {"team": S["aws"], "window": "1h"}),
    ("/v1/sli", {"notebook_id": S["github"], "window": "1h"}), ("/v1/alertmanager/pages", {"team": S["aws"]}),
    ("/v1/runs/" + S["github"], {}), ("/v1/cost/summary", {"team": S["slack"]}),
    ("/v1/schema", {"type": S["aws"]}), ("/v1/runs", {"state": S["aws"]}), ("/v1/runs", {"after": S["github"]}),
])
def test_query_values_are_never_echoed_unredacted(server, path, params):
    r = server.request("GET", path, params=params)
    _no_secret(r.text)


def test_label_values_are_safe(server):
    from tests.support import parse_metrics

    text = server.request("GET", "/metrics").text
    _no_secret(text)
    for (_, labels), _ in parse_metrics(text).items():
        for _, value in labels:
            assert len(value) <= 128 and "\x00" not in value and "\n" not in value and '"' not in value
