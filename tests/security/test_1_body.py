"""Issue 13, points 1 and 8: every POST authenticates before it reads its body, streams it under a byte cap with an
early 413, and reads gzip whole (every member) or refuses it."""

from __future__ import annotations

import gzip

import orjson
import pytest

from tests.security.rawhttp import declared_only, stream_until_answer
from tests.support import event

pytestmark = pytest.mark.integration

POSTS = ["/v1/events", "/v1/alertmanager", "/v1/jupyter/events", "/api/v1/lineage", "/api/v1/lineage/batch",
         "/v1/logs"]
CAP = 2 * 1024 * 1024  # OBSERVATORY_MAX_BODY_BYTES of the security server


@pytest.mark.parametrize("path", POSTS)
def test_no_token_is_refused_before_the_body_is_read(server, path):
    rss0 = server.rss()
    # 300 MB declared, nothing sent: the answer comes from the headers alone.
    assert declared_only(server.col.port, path, 300 * 1024 * 1024, {"Content-Type": "application/json"}) == 401
    # Streamed without a length: the server answers 401 at once; what it let through is far below the body.
    status, sent = stream_until_answer(server.col.port, path, {"Content-Type": "application/json"},
                                       limit=64 * 1024 * 1024)
    assert status == 401 and sent < 64 * 1024 * 1024
    bad = stream_until_answer(server.col.port, path, {"Content-Type": "application/json",
                                                      "Authorization": "Bearer not-a-token"}, limit=16 * 1024 * 1024)
    assert bad[0] == 401
    assert server.rss() - rss0 < 64 * 1024 * 1024


@pytest.mark.parametrize("path", POSTS)
def test_oversized_bodies_get_413_early(server, path):
    auth = {"Authorization": f"Bearer {server.tokens['platform']}", "Content-Type": "application/json"}
    assert declared_only(server.col.port, path, 300 * 1024 * 1024, auth) == 413
    status, sent = stream_until_answer(server.col.port, path, auth, limit=64 * 1024 * 1024)
    assert status == 413
    assert sent < 64 * 1024 * 1024  # the server stopped reading near its cap, not at the end of the stream


def test_a_team_token_is_refused_by_the_alertmanager_webhook(server):
    r = server.request("POST", "/v1/alertmanager", "a_ingest", json={"version": "4"})
    assert r.status_code == 403 and "platform token" in r.json()["detail"]


def test_webhook_validates_after_reading(server):
    r = server.request("POST", "/v1/alertmanager", "ingest", json={"version": "3", "alerts": []})
    assert r.status_code == 422
    assert any(e["loc"][:2] == ["body", "version"] for e in r.json()["detail"])
    assert all("input" not in e for e in r.json()["detail"])
    assert server.request("POST", "/v1/alertmanager", "ingest", content=b"{not json",
                          headers={"Content-Type": "application/json"}).status_code == 400


def _nd(*events) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events) + b"\n"


def _count(server, source: str) -> int:
    r = server.request("GET", "/v1/dead-letters", params={"source": source})
    assert r.status_code == 200
    runs = server.request("GET", "/v1/runs", params={"notebook_id": f"gz-{source[-1]}", "limit": 1000}).json()
    return len(runs["items"])


def test_gzip_members_truncation_and_trailing_garbage(server):
    def ev(i, src):
        return event(f"gz{i}", "notebook.run.succeeded", {"run_id": f"gz-{src}-{i}", "notebook_id": f"gz-{src}",
                                                           "team": "gz"}, source=f"gz://{src}")
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    two_members = gzip.compress(_nd(ev(1, "m"), ev(2, "m"))) + gzip.compress(_nd(ev(3, "m")))
    r = server.request("POST", "/v1/events", "ingest", content=two_members, headers=headers)
    assert r.status_code == 200 and r.json()["accepted"] == 3  # every member read

    whole = gzip.compress(_nd(ev(1, "t"), ev(2, "t")))
    for body, what in ((whole[:-6], "truncated"), (whole + b"trailing garbage", "trailing")):
        r = server.request("POST", "/v1/events", "ingest", content=body, headers=headers)
        assert r.status_code == 400, what
        assert what in r.json()["detail"]
    runs = server.request("GET", "/v1/runs", params={"notebook_id": "gz-t"}).json()["items"]
    assert runs == []  # never a silent partial ingest

    bomb = gzip.compress(b" " * (9 * 1024 * 1024))  # inflates past OBSERVATORY_MAX_INFLATED_BYTES
    assert server.request("POST", "/v1/events", "ingest", content=bomb, headers=headers).status_code == 413
    for path in ("/v1/jupyter/events", "/api/v1/lineage/batch"):
        assert server.request("POST", path, "ingest", content=whole + b"x", headers=headers).status_code == 400
