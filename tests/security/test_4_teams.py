"""Issue 13, points 5 and 6: team-scoped ingest tokens write only their team's events and cannot change another
team's entities; team-scoped read tokens see only their team on every read path; /metrics refuses them."""

from __future__ import annotations

import pytest

from tests.support import event

pytestmark = pytest.mark.integration

NOW = "2026-11-20T11:00:00Z"


@pytest.fixture(scope="module")
def teams(server):
    """Team B's notebook, run and kernel, written by B's own ingest token."""
    b = [
        event("b-reg", "notebook.registered", {"notebook_id": "nb-b", "owner": "bob", "team": "team-b",
                                               "tags": {}, "notebook_path": "/b/secret-path.ipynb"},
              source="registry://b", time_=NOW),
        event("b-run", "notebook.run.succeeded", {"run_id": "run-b", "notebook_id": "nb-b", "team": "team-b"},
              source="papermill://b", time_=NOW),
        event("b-k", "notebook.kernel.started", {"kernel_id": "k-b", "team": "team-b"}, source="jupyter://b",
              time_=NOW),
        event("b-q", "notebook.quality.checked", {"notebook_id": "nb-b", "team": "team-b", "check": "c",
                                                  "result": "fail"}, source="ge://b", time_=NOW),
        event("b-a", "notebook.artifact.published", {"notebook_id": "nb-b", "team": "team-b", "artifact": "t.b",
                                                     "sla_seconds": 60}, source="papermill://b", time_=NOW),
    ]
    r = server.request("POST", "/v1/events", "b_ingest", json=b)
    assert r.json()["accepted"] == len(b)
    a = [event("a-run", "notebook.run.failed", {"run_id": "run-a", "notebook_id": "nb-a", "team": "team-a"},
               source="papermill://a", time_=NOW)]
    assert server.request("POST", "/v1/events", "a_ingest", json=a).json()["accepted"] == 1
    return b


def test_team_token_writes_only_its_team(server, teams):
    attacks = [
        # take over B's notebook by registering it for A
        event("a-take", "notebook.registered", {"notebook_id": "nb-b", "owner": "eve", "team": "team-a", "tags": {}},
              source="registry://a", time_=NOW),
        # change B's run outcome
        event("a-flip", "notebook.run.failed", {"run_id": "run-b", "notebook_id": "nb-x", "team": "team-a"},
              source="papermill://b", time_=NOW),
        # B's kernel
        event("a-kill", "notebook.kernel.died", {"kernel_id": "k-b", "team": "team-a", "reason": "crash"},
              source="jupyter://a", time_=NOW),
        # an event of another team, and one without a team
        event("a-other", "notebook.run.started", {"run_id": "r-o", "notebook_id": "nb-o", "team": "team-b"},
              source="papermill://a", time_=NOW),
        event("a-none", "notebook.run.started", {"run_id": "r-n", "notebook_id": "nb-n"}, source="papermill://a",
              time_=NOW),
        # fine: its own new notebook
        event("a-own", "notebook.registered", {"notebook_id": "nb-a", "owner": "ann", "team": "team-a", "tags": {}},
              source="registry://a", time_=NOW),
    ]
    r = server.request("POST", "/v1/events", "a_ingest", json=attacks)
    body = r.json()
    assert body["accepted"] == 1
    res = {x["index"]: x for x in body["results"]}
    for i in range(5):
        assert res[i]["status"] == "rejected" and res[i]["errors"][0]["type"] == "team_scope", res[i]
    assert [res[i]["errors"][0]["path"] for i in range(5)] == ["data.notebook_id", "data.run_id", "data.kernel_id",
                                                               "data.team", "data.team"]
    # the same through the native channels
    rec = {"__schema__": "https://events.jupyter.org/jupyter_server/kernel_actions/v1", "__timestamp__": NOW,
           "action": "shutdown", "status": "success", "kernel_id": "k-b", "observatory": {"team": "team-a"}}
    r = server.request("POST", "/v1/jupyter/events?server=a", "a_ingest", json=[rec])
    assert r.status_code == 422 and r.json()["results"][0]["errors"][0]["type"] == "team_scope"
    ol = {"eventType": "FAIL", "eventTime": NOW, "producer": "https://x", "schemaURL": "https://y",
          "run": {"runId": "run-b", "facets": {"tags": {"tags": [{"key": "team", "value": "team-a"},
                                                                 {"key": "notebook_id", "value": "nb-b"}]}}},
          "job": {"namespace": "a", "name": "j"}}
    assert server.request("POST", "/api/v1/lineage/batch", "a_ingest", json=[ol]).json()["summary"]["failed"] == 1

    # B's view is unchanged; A sees nothing of B
    nb = server.request("GET", "/v1/notebooks", "b_read", params={"notebook_id": "nb-b"}).json()["items"]
    assert nb[0]["team"] == "team-b" and nb[0]["owner"] == "bob"
    run = server.request("GET", "/v1/runs/run-b", "b_read").json()
    assert run["state"] == "succeeded"
    # a platform token may still write anything
    ok = event("p-any", "notebook.run.started", {"run_id": "r-p", "notebook_id": "nb-b", "team": "team-b"},
               source="papermill://p", time_=NOW)
    assert server.request("POST", "/v1/events", "ingest", json=[ok]).json()["accepted"] == 1


READS = ["/v1/runs", "/v1/notebooks", "/v1/artifacts", "/v1/quality", "/v1/security/events", "/v1/kernels/crashes",
         "/v1/alertmanager/pages", "/v1/cost/summary", "/v1/cost/runs", "/v1/cost/variance", "/v1/cost/budgets"]


@pytest.mark.parametrize("path", READS)
def test_team_token_reads_only_its_team(server, teams, path):
    r = server.request("GET", path, "a_read")
    assert r.status_code == 200
    assert "team-b" not in r.text and "nb-b" not in r.text and "secret-path" not in r.text
    assert server.request("GET", path, "a_read", params={"team": "team-b"}).status_code == 403


def test_team_token_on_sli_details_and_metrics(server, teams):
    r = server.request("GET", "/v1/sli", "a_read", params={"window": "30d", "level": "platform,team,notebook"})
    assert r.status_code == 200 and "team-b" not in r.text and "nb-b" not in r.text
    assert {row["team"] for row in r.json()["slis"]} <= {"team-a"}
    assert server.request("GET", "/v1/sli", "a_read", params={"team": "team-b"}).status_code == 403
    assert server.request("GET", "/v1/runs/run-b", "a_read").status_code == 404
    assert server.request("GET", "/v1/runs/latest", "a_read", params={"notebook_id": "nb-b"}).status_code == 404
    r = server.request("GET", "/metrics", "a_read")
    assert r.status_code == 403 and "platform token" in r.json()["detail"]
    assert server.request("GET", "/metrics", "read").status_code == 200
    assert server.request("GET", "/v1/dead-letters", "a_read").status_code == 403


def test_a_team_admin_token_is_refused_what_concerns_every_team(server, teams):
    """Dead letters hold every team's rejected payloads, and the deriver's failures every team's batches: an admin
    token limited to one team gets neither (before, it read team B's dead letters)."""
    bad = event("b-bad", "notebook.run.succeeded", {"run_id": "run-b2", "team": "team-b", "duration_seconds": -1,
                                                    "notebook_id": "nb-b-private"}, source="papermill://b", time_=NOW)
    assert server.request("POST", "/v1/events", "platform", json=[bad]).json()["rejected"] == 1
    assert "nb-b-private" in server.request("GET", "/v1/dead-letters", "platform").text  # (not vacuous)
    for method, path in (("GET", "/v1/dead-letters"), ("GET", "/v1/derive/failures"), ("POST", "/v1/derive/retry")):
        r = server.request(method, path, "a_admin")
        assert r.status_code == 403 and "platform token" in r.json()["detail"], (path, r.text)
        assert "nb-b-private" not in r.text
    assert server.request("GET", "/v1/runs", "a_admin").status_code == 200  # its team's reads stay open
