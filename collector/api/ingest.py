"""POST /v1/events: the ingest endpoint."""

from __future__ import annotations

import asyncio
from typing import Literal

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from collector.auth import Principal, require_scope
from collector.telemetry import request_id_var
from collector.validation import BodyError, Validated, decode_body, split_items, validate_items
from collector.writer import QueueFull, WriterStopped, rows_to_table

router = APIRouter(tags=["ingest"])
tracer = trace.get_tracer("collector.api")


class FieldError(BaseModel):
    path: str = Field(description="Dotted path of the offending field inside the event, e.g. `data.run_id`")
    type: str = Field(description="Machine-readable error kind, e.g. `missing`, `literal_error`")
    message: str


class EventResult(BaseModel):
    index: int = Field(description="Position of the event in the request (array index or NDJSON line, from 0)")
    status: Literal["accepted", "duplicate", "rejected"]
    code: int = Field(description="Per-event HTTP-style code: 201 stored, 200 duplicate, 422 rejected")
    source: str | None = None
    id: str | None = None
    errors: list[FieldError] | None = None


class IngestResponse(BaseModel):
    request_id: str | None
    accepted: int
    duplicates: int
    rejected: int
    batch_id: int | None = Field(None, description="Writer transaction that committed the accepted events")
    results: list[EventResult]


class ErrorResponse(BaseModel):
    detail: str


EXAMPLE_EVENT = {
    "specversion": "1.0", "id": "7c1d0c8e-run-42-succeeded", "source": "papermill://batch-1",
    "type": "notebook.run.succeeded", "time": "2026-11-21T09:30:00Z",
    "data": {"run_id": "run-42", "notebook_id": "nb-revenue", "team": "finance", "trigger": "scheduled",
             "duration_seconds": 182.4, "output_hash": "sha256:9f2c…"},
}
NDJSON_EXAMPLE = (
    '{"specversion":"1.0","id":"k-1","source":"jupyter://hub-a","type":"notebook.kernel.started",'
    '"time":"2026-11-21T09:00:00Z","data":{"kernel_id":"k1","team":"ml"}}\n'
    '{"specversion":"1.0","id":"k-2","source":"jupyter://hub-a","type":"notebook.kernel.died",'
    '"time":"2026-11-21T09:05:00Z","data":{"kernel_id":"k1","team":"ml","reason":"oom"}}\n'
)
REQUEST_BODY = {
    "required": True,
    "description": "One CloudEvents-shaped event, a JSON array of them, or NDJSON (one per line). "
                   "`Content-Encoding: gzip` is accepted. Schemas per type: `GET /v1/schema`.",
    "content": {
        "application/json": {
            "schema": {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
            "examples": {
                "one": {"summary": "a single event", "value": EXAMPLE_EVENT},
                "batch": {"summary": "an array", "value": [EXAMPLE_EVENT]},
            },
        },
        "application/x-ndjson": {"schema": {"type": "string"}, "example": NDJSON_EXAMPLE},
    },
}


def _prepare(body: bytes, ctype: str | None, cenc: str | None, max_inflated: int, max_events: int) -> Validated:
    with tracer.start_as_current_span("ingest.parse"):
        raw = decode_body(body, ctype, cenc, max_inflated)
        items = split_items(raw, ctype)
    if not items:
        raise BodyError("no events in the request body")
    if len(items) > max_events:
        raise BodyError(f"{len(items)} events in one request; the limit is {max_events}", 413)
    return validate_items(items)


async def read_capped_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyError(f"body of {declared} bytes exceeds the limit of {limit}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(f"body exceeds the limit of {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/v1/events",
    summary="Ingest events",
    description=(
        "Validates each event against its type's schema, redacts secrets, and commits the valid ones in the "
        "writer's next group commit; the answer comes **after** the commit. Events already stored "
        "(same `source` and `id`) are reported as `duplicate` and not stored twice. Invalid events are "
        "reported with the index and field path and written to the dead-letter table; the valid events of "
        "the same request are stored anyway. 200 when at least one event is stored or duplicate, 422 when "
        "every event was rejected."
    ),
    response_model=IngestResponse,
    responses={
        400: {"model": ErrorResponse, "description": "unreadable body (not JSON, bad gzip, no events)"},
        401: {"model": ErrorResponse, "description": "missing or invalid token"},
        403: {"model": ErrorResponse, "description": "token lacks the `ingest` scope"},
        413: {"model": ErrorResponse, "description": "body or event count over the configured limits"},
        415: {"model": ErrorResponse, "description": "unsupported Content-Type or Content-Encoding"},
        422: {"model": IngestResponse, "description": "every event was rejected"},
        429: {"model": ErrorResponse, "description": "write queue full; retry after `Retry-After` seconds"},
        503: {"model": ErrorResponse, "description": "writer unavailable (shutting down or failing)"},
    },
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def post_events(request: Request, principal: Principal = Depends(require_scope("ingest"))) -> Response:
    settings = request.app.state.settings
    try:
        body = await read_capped_body(request, settings.max_body_bytes)
        validated = await run_in_threadpool(
            _prepare, body, request.headers.get("content-type"), request.headers.get("content-encoding"),
            settings.max_inflated_bytes, settings.max_events_per_request,
        )
    except BodyError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)
    return await submit_validated(request, validated, channel="http")


async def submit_validated(request: Request, validated: Validated, channel: str) -> Response:
    """Hand validated rows to the writer and answer once committed (shared by the native adapters)."""
    store = request.app.state.store
    rid = request_id_var.get()
    table = rows_to_table(validated.rows)
    try:
        fut = store.writer.submit(table, validated.rejections, channel=channel, request_id=rid)
    except QueueFull as exc:
        return JSONResponse({"detail": "ingest queue is full; retry later"}, status_code=429,
                            headers={"Retry-After": str(int(exc.retry_after + 0.999))})
    except WriterStopped:
        return JSONResponse({"detail": "collector is shutting down"}, status_code=503, headers={"Retry-After": "5"})
    with tracer.start_as_current_span("ingest.await_commit"):
        try:
            written = await asyncio.wrap_future(fut)
        except Exception:  # noqa: BLE001 - logged by the writer
            return JSONResponse({"detail": "the write failed and was rolled back; retry"}, status_code=503,
                                headers={"Retry-After": "1"})
    results: list[dict] = []
    for pos, (idx, status) in enumerate(zip(validated.row_index, written.statuses)):
        row = validated.rows[pos]
        results.append({"index": idx, "status": status, "code": 201 if status == "accepted" else 200,
                        "source": row["source"], "id": row["id"]})
    for r in validated.rejections:
        results.append({"index": r.index, "status": "rejected", "code": 422, "source": r.source, "id": r.id,
                        "errors": r.errors})
    results.sort(key=lambda r: r["index"])
    accepted = sum(1 for s in written.statuses if s == "accepted")
    body = {
        "request_id": rid, "accepted": accepted, "duplicates": len(written.statuses) - accepted,
        "rejected": len(validated.rejections), "batch_id": written.batch_id, "results": results,
    }
    return Response(orjson.dumps(body), status_code=200 if validated.rows else 422, media_type="application/json")
