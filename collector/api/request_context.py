"""Every HTTP request's context: its id (X-Request-ID), its server span and its one log line.

A plain ASGI middleware rather than `@app.middleware("http")` (Starlette's BaseHTTPMiddleware): that one runs the
rest of the app in a task of its own and passes the response body through a memory stream, which cost ~0.7 ms of CPU
per request holding the GIL (0.76 against 0.09 ms, in process, on a 1,000-event ingest answer:
bench/bench_request_overhead.py), for nothing this middleware needs. Here the app runs in the request's own task, so
the request id and the span are in its context as they were.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any, Awaitable, Callable, MutableMapping

from opentelemetry import trace
from starlette.datastructures import Headers, MutableHeaders

from collector.contract.redaction import redact_text
from collector.telemetry import request_id_var

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]

log = logging.getLogger("collector.http")
# A client's X-Request-ID is kept only when it is a plain token (letters, digits, `._:-`, at most 64); anything
# else (a secret, a control character, a header injection attempt) is replaced by a fresh id.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}", re.ASCII)
tracer = trace.get_tracer("collector.http")


def request_id(sent: str | None) -> str:
    """The client's id when it is a plain token and no secret, else a fresh one: it is echoed into logs, dead
    letters and responses."""
    rid = sent or ""
    if not _REQUEST_ID.fullmatch(rid) or redact_text(rid)[1]:
        return uuid.uuid4().hex
    return rid


class RequestContext:
    """Sets `request_id_var`, opens the server span, adds `X-Request-ID` to the answer and logs one `request`
    line (method, redacted path, status, duration, client) once the answer is sent; 500 when the app raised."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(Headers(scope=scope).get("x-request-id"))
        token = request_id_var.set(rid)
        t0 = time.perf_counter()
        status = 500
        method = scope["method"]
        path = redact_text(scope["path"][:512])[0]  # a path parameter may carry anything, a secret included
        # The exception, if any, is not recorded on the span: its message may quote a request value.
        with tracer.start_as_current_span(f"{method} {path}", kind=trace.SpanKind.SERVER, record_exception=False,
                                          set_status_on_exception=False) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", path)
            span.set_attribute("request.id", rid)

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    MutableHeaders(scope=message)["X-Request-ID"] = rid
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            finally:
                client = scope.get("client")
                log.info("request", extra={
                    "method": method, "path": path, "status": status,
                    "duration_ms": round((time.perf_counter() - t0) * 1000, 2),
                    "client": client[0] if client else None,
                })
                request_id_var.reset(token)
