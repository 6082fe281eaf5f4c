"""The request context middleware (collector/api/request_context.py): the id a request keeps, the header and the
one log line every answer gets, and a request whose handler raised still logged, as a 500."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from collector.api.request_context import RequestContext, request_id
from collector.telemetry import request_id_var

FRESH = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize("sent, kept", [
    ("abc-123", True),
    ("A.b:c_d-9", True),
    ("x" * 64, True),
    ("x" * 65, False),  # too long
    ("", False),
    (None, False),
    ("has space", False),
    ("new\nline", False),
    ("ghp_" + "a" * 36, False),  # a GitHub token: never echoed
])
def test_a_request_keeps_its_id_only_when_it_is_a_plain_token(sent, kept):
    got = request_id(sent)
    assert (got == sent) is kept
    if not kept:
        assert FRESH.fullmatch(got)


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestContext)

    @app.get("/ok")
    async def ok() -> dict:
        return {"rid": request_id_var.get()}

    @app.get("/boom/{secret}")
    async def boom(secret: str) -> dict:
        raise RuntimeError("handler failed")

    return app


def test_the_answer_carries_the_id_the_handler_saw_and_one_log_line(caplog):
    caplog.set_level(logging.INFO, logger="collector.http")
    with TestClient(_app()) as c:
        r = c.get("/ok", headers={"X-Request-ID": "rid-1"})
        fresh = c.get("/ok", headers={"X-Request-ID": "not ok"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "rid-1" == r.json()["rid"]
    assert FRESH.fullmatch(fresh.headers["x-request-id"]) and fresh.json()["rid"] == fresh.headers["x-request-id"]
    lines = [rec for rec in caplog.records if rec.getMessage() == "request"]
    assert [(rec.method, rec.path, rec.status) for rec in lines] == [("GET", "/ok", 200)] * 2
    assert all(rec.duration_ms >= 0 and rec.client for rec in lines)


def test_a_handler_that_raises_is_logged_as_a_500_with_its_path_redacted(caplog):
    caplog.set_level(logging.INFO, logger="collector.http")
    secret = "ghp_" + "b" * 36
    with TestClient(_app(), raise_server_exceptions=False) as c:
        r = c.get(f"/boom/{secret}")
    assert r.status_code == 500
    lines = [rec for rec in caplog.records if rec.getMessage() == "request"]
    assert len(lines) == 1 and lines[0].status == 500
    assert secret not in lines[0].path and lines[0].path.startswith("/boom/")
    assert request_id_var.get(None) is None  # reset after the request
