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
| `CostInputError` | 422 | |
| `NotFound` | 404 | |
| `BadRequest` | 400 (or its own status) | |

The body is always `{"detail": "<message>"}`. OTLP answers with a `google.rpc.Status` instead, but takes the
status and headers from `http_error` so both agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from collector.contract.body import BodyError
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
    if isinstance(exc, CostNotFound):
        return HttpError(404, str(exc))
    if isinstance(exc, CostInputError):
        return HttpError(422, str(exc))
    return None


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    err = http_error(exc)
    assert err is not None  # only registered for the types http_error knows
    return JSONResponse({"detail": err.detail}, status_code=err.status, headers=err.headers)


def install(app: FastAPI) -> None:
    """Register the handler for every domain exception the routes may raise."""
    for exc_type in (BodyError, QueueFull, WriterStopped, WriteFailed, ApiError, CostInputError):
        app.add_exception_handler(exc_type, _handle)
