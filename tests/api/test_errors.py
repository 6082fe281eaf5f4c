"""The one exception -> HTTP mapping (collector/api/errors.py): a table of domain exceptions and the answer each
gets, through a real FastAPI app so the registered handlers are what is tested."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from collector.api import errors
from collector.contract.body import BodyError
from collector.ingest.writer import QueueFull, WriteFailed, WriterStopped
from cost.errors import CostInputError


@pytest.mark.parametrize(("exc", "status", "headers"), [
    (BodyError("not JSON"), 400, {}),
    (BodyError("too big", "too_large"), 413, {}),
    (BodyError("text/csv", "unsupported"), 415, {}),
    (QueueFull(2.3), 429, {"retry-after": "3"}),
    (QueueFull(0.2), 429, {"retry-after": "1"}),
    (WriterStopped("bye"), 503, {"retry-after": "5"}),
    (WriteFailed("rolled back"), 503, {"retry-after": "1"}),
    (errors.BadRequest("bad window"), 400, {}),
    (errors.BadRequest("bad cursor", 422), 422, {}),
    (errors.NotFound("no such run"), 404, {}),
    (errors.Forbidden("other team"), 403, {}),
    (CostInputError("bad month"), 422, {}),
])
def test_domain_exception_maps_to_one_answer(exc: Exception, status: int, headers: dict[str, str]) -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    def boom() -> None:
        raise exc

    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert r.status_code == status
    assert r.json() == {"detail": errors.http_error(exc).detail}
    for k, v in headers.items():
        assert r.headers[k] == v


def test_unknown_exception_is_not_mapped() -> None:
    assert errors.http_error(RuntimeError("bug")) is None
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("bug")

    assert TestClient(app, raise_server_exceptions=False).get("/boom").status_code == 500
