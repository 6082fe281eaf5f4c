"""The event contract: documented examples are accepted, each required field and constraint is enforced with
the field named, and the published schemas cover every type."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from collector.contract.events import DATA_MODELS, EVENT_TYPES
from collector.contract.examples import example_event
from tests.conftest import auth
from tests.support import OBSERVATORY, ROOT

DOC = ROOT / "docs" / "events.md"


def documented_examples() -> dict[str, dict]:
    """Every ```json block of docs/events.md that is an event, keyed by its type."""
    out = {}
    for block in re.findall(r"```json\n(.*?)\n```", DOC.read_text(), flags=re.S):
        try:
            doc = json.loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "specversion" in doc:
            out[doc["type"]] = doc
    return out


def test_every_type_is_documented_with_an_example():
    assert sorted(documented_examples()) == sorted(EVENT_TYPES)
    assert len(EVENT_TYPES) == 21


def test_every_documented_example_is_accepted_and_stored(client, db_path):
    examples = list(documented_examples().values())
    r = client.post("/v1/events", json=examples, headers=auth("ingest"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == len(examples) and body["rejected"] == 0
    assert [x["status"] for x in body["results"]] == ["accepted"] * len(examples)
    with client.app.state.store.read_cursor() as cur:
        stored = {t for (t,) in cur.execute("SELECT type FROM events").fetchall()}
    assert stored == set(EVENT_TYPES)


def _required_data_fields(type_name: str) -> list[str]:
    return DATA_MODELS[type_name].model_json_schema().get("required", [])


INVALID_CASES = [
    # (type, mutation of data, expected path, expected error type)
    (t, {"__drop__": f}, f"data.{f}", "missing") for t in EVENT_TYPES for f in _required_data_fields(t)
] + [
    ("notebook.kernel.restarted", {"reason": "bored"}, "data.reason", "literal_error"),
    ("notebook.kernel.died", {"exit_code": "9"}, "data.exit_code", "int_type"),
    ("notebook.run.succeeded", {"duration_seconds": -1}, "data.duration_seconds", "greater_than_equal"),
    ("notebook.run.succeeded", {"attempt": 0}, "data.attempt", "greater_than_equal"),
    ("notebook.run.succeeded", {"attempt": 2**31}, "data.attempt", "less_than_equal"),  # the column is INTEGER
    ("notebook.run.succeeded", {"trigger": "cron"}, "data.trigger", "literal_error"),
    ("notebook.run.failed", {"cells": [{"index": 0, "duration_seconds": 1, "status": "weird"}]},
     "data.cells[0].status", "literal_error"),
    ("notebook.run.succeeded", {"max_memory_bytes": 1.5}, "data.max_memory_bytes", "int_type"),
    ("notebook.schedule.registered", {"cron": "every day at noon"}, "data.cron", "value_error"),
    ("notebook.schedule.registered", {"timezone": "Mars/Olympus"}, "data.timezone", "value_error"),
    ("notebook.quality.checked", {"result": "ok"}, "data.result", "literal_error"),
    ("notebook.reproducibility.checked", {"result": True}, "data.result", "literal_error"),
    ("notebook.artifact.published", {"sla_seconds": 0}, "data.sla_seconds", "greater_than"),
    ("notebook.registered", {"critical": "yes"}, "data.critical", "bool_type"),
    ("platform.probe", {"ok": 1}, "data.ok", "bool_type"),
    ("notebook.run.started", {"environment": "qa"}, "data.environment", "literal_error"),
    ("notebook.run.started", {"run_id": ""}, "data.run_id", "string_too_short"),
]


@pytest.mark.parametrize("type_name,mutation,path,err_type", INVALID_CASES,
                         ids=[f"{c[0]}:{c[2]}:{c[3]}" for c in INVALID_CASES])
def test_invalid_data_is_rejected_with_the_field_named(client, type_name, mutation, path, err_type):
    ev = example_event(type_name)
    data = dict(ev["data"])
    if "__drop__" in mutation:
        data.pop(mutation["__drop__"])
    else:
        data.update(mutation)
    ev["data"] = data
    r = client.post("/v1/events", json=ev, headers=auth("ingest"))
    assert r.status_code == 422, r.text
    res = r.json()["results"][0]
    assert res["status"] == "rejected"
    assert (path, err_type) in [(e["path"], e["type"]) for e in res["errors"]], res["errors"]


ENVELOPE_CASES = [
    ({"specversion": "0.3"}, "specversion", "literal_error"),
    ({"__drop__": "id"}, "id", "missing"),
    ({"__drop__": "source"}, "source", "missing"),
    ({"__drop__": "time"}, "time", "missing"),
    ({"time": "2026-11-20T10:00:00"}, "time", "timezone_aware"),
    ({"time": "yesterday"}, "time", "datetime_from_date_parsing"),
    ({"time": "2999-01-01T00:00:00Z"}, "time", "value_error"),
    ({"type": "notebook.run.exploded"}, "type", "unknown_type"),
    ({"__drop__": "type"}, "type", "missing"),
    ({"data": "not an object"}, "data", "model_type"),
    ({"id": "x" * 300}, "id", "string_too_long"),
]


@pytest.mark.parametrize("mutation,path,err_type", ENVELOPE_CASES, ids=[f"{c[1]}:{c[2]}" for c in ENVELOPE_CASES])
def test_invalid_envelope_is_rejected_with_the_attribute_named(client, mutation, path, err_type):
    ev = example_event("platform.probe")
    if "__drop__" in mutation:
        ev.pop(mutation["__drop__"])
    else:
        ev.update(mutation)
    r = client.post("/v1/events", json=[ev], headers=auth("ingest"))
    assert r.status_code == 422
    errors = r.json()["results"][0]["errors"]
    assert (path, err_type) in [(e["path"], e["type"]) for e in errors], errors


def test_non_object_items_are_rejected_alone(client):
    good = example_event("platform.probe")
    r = client.post("/v1/events", json=[good, 42, "x", None], headers=auth("ingest"))
    assert r.status_code == 200
    statuses = [x["status"] for x in r.json()["results"]]
    assert statuses == ["accepted", "rejected", "rejected", "rejected"]


def test_schema_endpoint_serves_every_type(client):
    r = client.get("/v1/schema")
    assert r.status_code == 200
    body = r.json()
    assert body["types"] == list(EVENT_TYPES)
    for t in EVENT_TYPES:
        s = body["schemas"][t]
        assert s["properties"]["type"]["const"] == t
        assert set(s["required"]) >= {"specversion", "id", "source", "type", "time", "data"}
    one = client.get("/v1/schema", params={"type": "platform.probe"}).json()
    assert list(one["schemas"]) == ["platform.probe"]
    assert client.get("/v1/schema", params={"type": "nope"}).status_code == 404


def test_schema_cli_matches_api(client):
    out = subprocess.run([OBSERVATORY, "schema"], check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == client.get("/v1/schema").json()["schemas"]


def test_events_doc_is_fresh():
    r = subprocess.run([sys.executable, "-m", "collector.contract.docs_gen", "--check"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_openapi_documents_every_endpoint_with_examples(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/events"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert post["requestBody"]["content"]["application/json"]["examples"]
    for code in ("200", "400", "401", "403", "413", "422", "429"):
        assert code in post["responses"], code
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary"
