"""One place that maps the domain's exceptions to HTTP answers (datasette's `handle_exception`, FastAPI's
exception handlers). Routes raise; they never build an error response by hand.

| exception | status | headers |
|---|---|---|
| `BodyError(kind="invalid")` | 400 | |
| `BodyError(kind="too_large")` | 413 | |
| `BodyError(kind="unsupported")` | 415 | |
| `QueueFull` | 429 | `Retry-After` from the writer's recent commit times |
| `WriterStopped` | 503 | `Retry-After: 5` |
| `WriteFailed` | 503 | `Retry-After: 1` |
| `CostNotFound` (an unknown team) | 404 | |
| `rederive.NotOutstanding` (a batch not waiting to be derived again) | 404 | |
| `rederive.RetryFailed` (deriving batches again failed; nothing changed) | 500 | |
| `CostInputError` | 422 | |
| `duckdb.InterruptException` (a read interrupted at shutdown) | 503 | `Retry-After: 5` |
| `NotFound` | 404 | |
| `BadRequest` | 400 (or its own status) | |
| `ValidationFailed`, FastAPI's `RequestValidationError` | 422 | |

The body is `{"detail": "<message>"}`, or for validation errors `{"detail": [{"loc", "msg", "type"}]}` like
FastAPI's own, minus the `input` and `ctx` it would echo: an error never repeats the value it refuses, and
every message passes the secret redactor (a value a validator quoted cannot leave in a response).

OTLP answers with a `google.rpc.Status` instead, but takes the
status and headers from `http_error` so both agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import Any, Iterable, Sequence

import duckdb
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from collector.contract.body import BodyError
from collector.contract.redaction import redact_text
from collector.ingest.rederive import NotOutstanding, RetryFailed
from collector.ingest.writer import QueueFull, WriteFailed, WriterStopped
from cost.errors import CostInputError, CostNotFound

_BODY_STATUS = {"invalid": 400, "too_large": 413, "unsupported": 415}


class ApiError(Exception):
    """An answer decided by a route: a status and a message meant for the client."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400


class NotFound(ApiError):
    status = 404


class Forbidden(ApiError):
    status = 403


class ValidationFailed(ApiError):
    """A body (or parameter) that does not fit its model: 422 with one entry per failing field."""

    status = 422

    def __init__(self, errors: Iterable[dict[str, Any]], prefix: Sequence[str | int] = ()) -> None:
        self.errors = validation_detail(errors, prefix)
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in self.errors[:5]))


def safe_message(text: str, limit: int = 500) -> str:
    """A message for a client or a log: bounded, secrets redacted."""
    return redact_text(str(text)[:limit])[0]


def validation_detail(errors: Iterable[dict[str, Any]], prefix: Sequence[str | int] = ()) -> list[dict[str, Any]]:
    """pydantic/FastAPI errors without the echoed `input`/`ctx`, messages redacted, at most 50 entries."""
    out = []
    for e in errors:
        loc = [*prefix, *(p if isinstance(p, int) else safe_message(p, 128) for p in e.get("loc", ()))]
        out.append({"loc": loc, "msg": safe_message(e.get("msg", "")), "type": str(e.get("type", ""))[:64]})
        if len(out) == 50:
            break
    return out


@dataclass(frozen=True, slots=True)
class HttpError:
    status: int
    detail: str
    headers: dict[str, str] = field(default_factory=dict)


def http_error(exc: Exception) -> HttpError | None:
    """The HTTP answer for a domain exception, or None when it is not one of ours (a real 500)."""
    if isinstance(exc, BodyError):
        return HttpError(_BODY_STATUS[exc.kind], str(exc))
    if isinstance(exc, QueueFull):
        return HttpError(429, "ingest queue is full; retry later",
                         {"Retry-After": str(int(exc.retry_after + 0.999))})
    if isinstance(exc, WriterStopped):
        return HttpError(503, "collector is shutting down", {"Retry-After": "5"})
    if isinstance(exc, WriteFailed):
        return HttpError(503, str(exc), {"Retry-After": "1"})
    if isinstance(exc, ApiError):
        return HttpError(exc.status, str(exc))
    if isinstance(exc, (CostNotFound, NotOutstanding)):
        return HttpError(404, str(exc))
    if isinstance(exc, RetryFailed):
        return HttpError(500, str(exc))
    if isinstance(exc, CostInputError):
        return HttpError(422, str(exc))
    if isinstance(exc, duckdb.InterruptException):
        return HttpError(503, "the query was interrupted (the server is shutting down)", {"Retry-After": "5"})
    return None


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ValidationFailed):
        return JSONResponse({"detail": exc.errors}, status_code=422)
    err = http_error(exc)
    assert err is not None  # only registered for the types http_error knows
    return JSONResponse({"detail": safe_message(err.detail, 2000)}, status_code=err.status, headers=err.headers)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)


def install(app: FastAPI) -> None:
    """Register the handler for every domain exception the routes may raise."""
    for exc_type in (BodyError, QueueFull, WriterStopped, WriteFailed, ApiError, CostInputError, NotOutstanding,
                     RetryFailed, duckdb.InterruptException):
        app.add_exception_handler(exc_type, _handle)
    app.add_exception_handler(RequestValidationError, _request_validation)
