"""Property-based fuzzing of every POST body and every query parameter of the app's own OpenAPI document (hypothesis,
bounded examples): no answer is a 5xx and no answer carries the planted credential."""

from __future__ import annotations

import gzip
import json
import random
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from collector.contract.examples import EXAMPLES, example_event
from tests.conftest import auth

SECRET = "ghp_Fuzz3dT0k3nXq8Lw3Rt6Yu1Io4Pa7Sd0Fg2Zz"
EDGE = ["", " ", "\x00", "a\x00b", "\n", "９", "１h", "²", "-1", "0", "1", str(2**31), str(2**63), str(2**70),
        "1e308", "-1e308", "nan", "inf", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+01:00",
        "2026-11-20T10:00:00Z", "2026-11-20T10:00:00", "1795176000000", "x" * 5000, "'; DROP TABLE events; --",
        "../../etc/passwd", "%00", "é😀", "true", "null", "[]", "{}", "latest", "M1", "1h", "3650000d",
        "9999-12", "２０２６-01", "finance", "platform,team,notebook,trigger", SECRET, f"team={SECRET}"]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))

values = st.one_of(st.sampled_from(EDGE), st.text(max_size=40), st.integers(-2**70, 2**70).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(str))


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from collector.app import create_app
    from collector.settings import Settings
    from tests.conftest import token_store

    settings_ = Settings(db=tmp_path_factory.mktemp("fuzz") / "fuzz.duckdb", gauge_refresh_seconds=3600,
                         read_timeout_seconds=30)
    with TestClient(create_app(settings_, tokens=token_store()), raise_server_exceptions=False) as c:
        yield c


def _check(r) -> None:
    assert r.status_code < 500, (r.request.method, str(r.request.url)[:300], r.status_code, r.text[:500])
    assert SECRET not in r.text


def _gets(app) -> list[tuple[str, list[str], list[str]]]:
    out = []
    for path, ops in app.openapi()["paths"].items():
        if "get" in ops and path not in ("/openapi.json", "/docs", "/redoc"):
            params = ops["get"].get("parameters", [])
            out.append((path, [p["name"] for p in params if p["in"] == "query"],
                        [p["name"] for p in params if p["in"] == "path"]))
    return out


def test_openapi_lists_the_endpoints_fuzzed(app_client):
    gets = {p for p, _, _ in _gets(app_client.app)}
    assert {"/v1/runs", "/v1/sli", "/v1/cost/summary", "/v1/alertmanager/pages", "/v1/dead-letters"} <= gets
    posts = {p for p, ops in app_client.app.openapi()["paths"].items() if "post" in ops}
    assert posts == set(POSTS)


@pytest.mark.parametrize("path", [
    "/v1/runs", "/v1/runs/{run_id}", "/v1/kernels/crashes", "/v1/notebooks", "/v1/artifacts", "/v1/quality",
    "/v1/security/events", "/v1/sli", "/v1/alertmanager/pages", "/v1/cost/summary", "/v1/cost/runs",
    "/v1/cost/variance", "/v1/cost/budgets", "/v1/cost/report", "/v1/cost/sync", "/v1/dead-letters",
    "/v1/derive/failures", "/v1/schema", "/metrics"])
def test_every_query_parameter(app_client, path):
    spec = {p: (q, pp) for p, q, pp in _gets(app_client.app)}
    query, path_params = spec[path]

    @SETTINGS
    @given(params=st.dictionaries(st.sampled_from(query or ["x"]), st.one_of(values, st.lists(values, max_size=3)),
                                  max_size=4),
           path_values=st.fixed_dictionaries({p: values.filter(lambda v: v not in ("", ".", ".."))
                                              for p in path_params}),
           who=st.sampled_from(["admin", "team_read"]))
    def run(params: dict[str, Any], path_values: dict[str, str], who: str) -> None:
        url = path
        for k, v in path_values.items():
            url = url.replace("{" + k + "}", quote(v, safe=""))
        _check(app_client.get(url, params=params, headers=auth(who)))

    run()


# ---- POST bodies --------------------------------------------------------------------------------------------------

POSTS = ["/v1/events", "/v1/jupyter/events", "/api/v1/lineage", "/api/v1/lineage/batch", "/v1/logs",
         "/v1/alertmanager", "/v1/derive/retry", "/v1/derive/dismiss"]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
              st.sampled_from(EDGE), st.text(max_size=20)),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=20)


def _mutate(doc: Any, rnd: random.Random, value: Any) -> Any:
    """Replace one random leaf (or add a key) of a JSON document."""
    if isinstance(doc, dict) and doc:
        k = rnd.choice(list(doc) + ["__new__"])
        doc = dict(doc)
        doc[k] = value if k == "__new__" or rnd.random() < 0.4 else _mutate(doc[k], rnd, value)
        return doc
    if isinstance(doc, list) and doc:
        i = rnd.randrange(len(doc))
        return doc[:i] + [_mutate(doc[i], rnd, value)] + doc[i + 1:]
    return value


def _native(path: str) -> Any:
    if path == "/v1/jupyter/events":
        return {"__schema__": "https://events.jupyter.org/jupyter_server/kernel_actions/v1", "__schema_version__": 1,
                "__timestamp__": "2026-11-20T10:00:00Z", "action": "start", "status": "success", "kernel_id": "k"}
    if path.startswith("/api/v1/lineage"):
        ev = {"eventType": "COMPLETE", "eventTime": "2026-11-20T10:00:00Z", "producer": "https://x",
              "schemaURL": "https://y", "run": {"runId": "r"}, "job": {"namespace": "ns", "name": "j"}}
        return [ev] if path.endswith("batch") else ev
    if path == "/v1/logs":
        return {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name",
                                                               "value": {"stringValue": "s"}}]},
                                  "scopeLogs": [{"logRecords": [{"timeUnixNano": "1795176000000000000",
                                                                 "eventName": "notebook.run.started", "attributes": [
                                                                     {"key": "run_id", "value": {"stringValue": "r"}},
                                                                     {"key": "notebook_id",
                                                                      "value": {"stringValue": "n"}}]}]}]}]}
    if path == "/v1/derive/retry":
        return {"batch_ids": [1, 2]}
    if path == "/v1/derive/dismiss":
        return {"batch_ids": [1, 2], "reason": "lost"}
    if path == "/v1/alertmanager":
        return {"version": "4", "status": "firing", "receiver": "r", "alerts": [
            {"status": "firing", "labels": {"alertname": "A"}, "startsAt": "2026-11-20T10:00:00Z"}]}
    return [example_event(t) for t in list(EXAMPLES)[:5]]


@pytest.mark.parametrize("path", POSTS)
def test_every_post_body(app_client, path):
    @SETTINGS
    @given(value=json_values, seed=st.integers(0, 2**32), shape=st.sampled_from(["mutated", "random", "bytes"]),
           encoding=st.sampled_from(["identity", "gzip", "gzip-broken"]),
           ctype=st.sampled_from(["application/json", "application/x-ndjson", "application/x-protobuf", "text/plain"]),
           who=st.sampled_from(["ingest", "admin"]))
    def run(value, seed, shape, encoding, ctype, who):
        rnd = random.Random(seed)
        if shape == "mutated":
            doc = _mutate(_native(path), rnd, value)
            body = (json.dumps(doc) if ctype != "application/x-ndjson" or not isinstance(doc, list)
                    else "\n".join(json.dumps(d) for d in doc)).encode()
        elif shape == "random":
            body = json.dumps(value).encode()
        else:
            body = rnd.randbytes(rnd.randrange(0, 300))
        if encoding != "identity":
            body = gzip.compress(body)
            if encoding == "gzip-broken":
                body = body[:-4] + b"junk"
        headers = {**auth(who), "Content-Type": ctype,
                   **({"Content-Encoding": "gzip"} if encoding != "identity" else {})}
        _check(app_client.post(path, content=body, headers=headers))

    run()
