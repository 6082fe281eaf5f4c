"""POST /v1/events: the ingest endpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import pyarrow as pa

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from opentelemetry import trace
from pydantic import BaseModel, Field

from collector.api.auth import Principal, require_scope
from collector.api.body import read_capped_body
from collector.api.teams import enforce_team
from collector.telemetry import request_id_var
from collector.api.deps import get_settings, get_store, return_minimal, validated_together
from collector.api.native import json_response
from collector.contract.body import BodyError, decode_body, is_ndjson, json_elements, split_items
from collector.contract.vectorized import BulkResult, BulkValidator, default_validator, split_lines, \
    validate_json_items
from collector.ingest.store import Store
from collector.ingest.submit import committed, enqueue
from collector.settings import Settings

router = APIRouter(tags=["ingest"])
tracer = trace.get_tracer("collector.api")
log = logging.getLogger(__name__)


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
    results: list[EventResult] = Field(description="One result per event, in request order; with "
                                       "`Prefer: return=minimal`, only the events not accepted")


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


# The largest JSON document split by msgspec (larger ones are parsed whole by orjson, as before). A body of many tiny
# items (`[1,1,1,...]`) costs more split than parsed: ~68 bytes and 65 ns per item held as msgspec.Raw, against
# ~25 bytes and 18 ns as an orjson int (33M items: 2.3 GB and 2.1 s against 0.8 GB and 0.6 s). At 16 MiB the split
# of such a body (~0.55 GB) stays under what the whole parse of the largest body allowed (max_inflated_bytes,
# 64 MiB by default), while 16 MiB of real events is ~50,000 of them, max_events_per_request's default.
SPLIT_MAX_BYTES = 16 << 20


def _prepare(body: bytes, ctype: str | None, cenc: str | None, max_inflated: int, max_events: int) -> BulkResult:
    """Bodies go to the validator as lines: NDJSON split column-wise, a JSON document split into its items'
    texts (`body.json_elements`), each parsed right before its checks, with the items, indexes and messages of
    `split_items`. A JSON document msgspec cannot split, or with an item orjson cannot read, is parsed whole and
    validated as items, or refused as one (400), as before."""
    if is_ndjson(ctype):
        return default_validator().validate_lines(_ndjson_lines(body, ctype, cenc, max_inflated, max_events)[1])
    with tracer.start_as_current_span("ingest.parse"):
        raw = decode_body(body, ctype, cenc, max_inflated)
        lines = json_elements(raw, ctype, max_events) if len(raw) <= SPLIT_MAX_BYTES else None
        if lines is not None:
            check_item_count(len(lines), max_events)
    if lines is not None:
        try:  # spans ingest.validate and ingest.redact
            return default_validator().validate_lines(lines, item_of=_unreadable)
        except _Unreadable:
            pass
    with tracer.start_as_current_span("ingest.parse"):
        items = split_items(raw, ctype)
    check_item_count(len(items), max_events)
    return validate_json_items(items)


def _ndjson_lines(body: bytes, ctype: str | None, cenc: str | None, max_inflated: int,
                  max_events: int) -> tuple[bytes, pa.Array]:
    """An NDJSON body decoded (its bytes, which count against `max_inflated` when bodies are validated together)
    and split column-wise into its lines, at most `max_events` of them."""
    with tracer.start_as_current_span("ingest.parse"):
        raw = decode_body(body, ctype, cenc, max_inflated)
        lines, _ = split_lines(raw)
        check_item_count(len(lines), max_events)
    return raw, lines


@dataclass(frozen=True, slots=True)
class Body:
    """A request's body and what `_prepare` reads it with."""

    raw: bytes
    ctype: str | None
    cenc: str | None
    max_inflated: int
    max_events: int


# The most lines of several bodies validated in one call: the validator's slice, past which a call's fixed cost is
# paid down and its working set only grows (calls of up to 16 requests at saturation held ~100 MiB more at the
# collector's peak; docs/performance.md, fifty-first round). A larger body is validated alone, as before.
COALESCED_LINES = BulkValidator.SLICE
# The most body bytes one thread call takes from the requests waiting (at least one request): about a slice of lines
# (8,192 bench events are ~3 MB), so that a request is answered about when its own call would have ended. Counted as
# received, so a gzip body weighs less than its lines; what a call decodes stays bounded by COALESCED_LINES and by
# `max_inflated` (`_prepare_many`).
COALESCED_BYTES = 4 << 20


def _body_bytes(body: Body) -> int:
    return len(body.raw)


def _prepare_many(bodies: list[Body]) -> list[BulkResult | Exception]:
    """Each body's `_prepare` outcome (its result, or the error it raised), the NDJSON bodies validated together in
    as few calls as the limits allow (api/coalesce.py): a call holds at most what one request may, `max_inflated`
    bytes of body, and `COALESCED_LINES` lines unless one body holds more. Their lines are numbered per body, so a
    rejection reads as it would alone, and a call that fails validates its bodies one by one, so no body's failure
    is another's. JSON documents take `_prepare` alone (an item orjson cannot read sends its whole document to the
    slower path)."""
    outcomes: list[BulkResult | Exception | None] = [None] * len(bodies)
    group: list[tuple[int, pa.Array]] = []
    held_bytes = held_lines = 0
    for k, body in enumerate(bodies):
        if not is_ndjson(body.ctype):
            outcomes[k] = _outcome(lambda b=body: _prepare(b.raw, b.ctype, b.cenc, b.max_inflated, b.max_events))
            continue
        try:
            raw, lines = _ndjson_lines(body.raw, body.ctype, body.cenc, body.max_inflated, body.max_events)
        except Exception as exc:  # noqa: BLE001 - this body's error (400, 413, 415), raised in its request
            outcomes[k] = exc
            continue
        if group and (held_bytes + len(raw) > body.max_inflated
                      or held_lines + len(lines) > min(body.max_events, COALESCED_LINES)):
            _validate_together(group, outcomes)
            group, held_bytes, held_lines = [], 0, 0
        group.append((k, lines))
        held_bytes, held_lines = held_bytes + len(raw), held_lines + len(lines)
    if group:
        _validate_together(group, outcomes)
    return outcomes  # type: ignore[return-value]  # every position is set


def _validate_together(group: list[tuple[int, pa.Array]], outcomes: list[BulkResult | Exception | None]) -> None:
    """The NDJSON lines of several bodies (position, lines) validated in one call, the result split per body."""
    validator = default_validator()
    if len(group) > 1:
        sizes = [len(lines) for _, lines in group]
        try:
            parts = validator.validate_lines(
                pa.chunked_array([lines for _, lines in group]),
                line_numbers=pa.chunked_array([pa.array(np.arange(1, n + 1, dtype=np.int64)) for n in sizes]),
            ).split(sizes)
        except Exception as exc:  # noqa: BLE001 - each body alone below: its own result or error
            # the type only: an exception's text may quote the input (a secret must never reach the log)
            log.warning("validating %d request bodies together failed (%s); validating them one by one",
                        len(group), type(exc).__name__)
        else:
            for (k, _), part in zip(group, parts):
                outcomes[k] = part
            return
    for k, lines in group:
        outcomes[k] = _outcome(lambda lines=lines: validator.validate_lines(lines))


def _outcome(fn: Callable[[], BulkResult]) -> BulkResult | Exception:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - raised in the body's own request
        return exc


class _Unreadable(Exception):
    """An item of a JSON document that orjson cannot read alone: the document is parsed whole instead."""


def _unreadable(i: int) -> Any:
    raise _Unreadable(i)


def check_item_count(n: int, max_events: int, what: str = "events") -> None:
    """No items is unreadable (400); more than the limit is too large (413)."""
    if not n:
        raise BodyError(f"no {what} in the request body")
    if n > max_events:
        raise BodyError(f"{n} {what} in one request; the limit is {max_events}", "too_large")


@router.post(
    "/v1/events",
    summary="Ingest events",
    description=(
        "Validates each event against its type's schema, redacts secrets, and commits the valid ones in the "
        "writer's next group commit; the answer comes **after** the commit. The derived tables (runs, kernel "
        "sessions, ...) and their counters follow in a transaction of their own, and every read waits for "
        "them, so a read after the answer sees the events. Events already stored "
        "(same `source` and `id`) are reported as `duplicate` and not stored twice. Invalid events are "
        "reported with the index and field path and written to the dead-letter table; the valid events of "
        "the same request are stored anyway. 200 when at least one event is stored or duplicate, 422 when "
        "every event was rejected. A client that acts only on duplicates and rejections sends "
        "`Prefer: return=minimal` (RFC 7240): the answer then lists only those, with the same counts, and "
        "carries `Preference-Applied: return=minimal` (a 1,000-event answer shrinks from ~90 KB to ~200 bytes)."
    ),
    response_model=IngestResponse,
    responses={
        200: {"description": "committed; one result per event, or with `Prefer: return=minimal` only the events "
                             "not accepted",
              "headers": {"Preference-Applied": {"description": "`return=minimal` when the minimal answer was "
                                                                "sent", "schema": {"type": "string"}}},
              "content": {"application/json": {"examples": {
                  "every event": {"value": {
                      "request_id": "5c0f2a", "accepted": 1, "duplicates": 1, "rejected": 0, "batch_id": 812,
                      "results": [
                          {"index": 0, "status": "accepted", "code": 201, "source": "papermill://batch-1",
                           "id": "e-1"},
                          {"index": 1, "status": "duplicate", "code": 200, "source": "papermill://batch-1",
                           "id": "e-0"}]}},
                  "Prefer: return=minimal": {"value": {
                      "request_id": "5c0f2a", "accepted": 1, "duplicates": 1, "rejected": 0, "batch_id": 812,
                      "results": [{"index": 1, "status": "duplicate", "code": 200,
                                   "source": "papermill://batch-1", "id": "e-0"}]}}}}}},
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
async def post_events(request: Request, principal: Principal = Depends(require_scope("ingest")),
                      store: Store = Depends(get_store), settings: Settings = Depends(get_settings),
                      minimal: bool = Depends(return_minimal)) -> Response:
    body = Body(await read_capped_body(request, settings.max_body_bytes), request.headers.get("content-type"),
                request.headers.get("content-encoding"), settings.max_inflated_bytes, settings.max_events_per_request)
    with store.writer.arriving():  # the writer's group commit may wait for this request
        validated = await validated_together(request, body, _prepare_many, _body_bytes, COALESCED_BYTES)
        validated = await enforce_team(store, principal, validated)
        fut = enqueue(store, validated, channel="http", request_id=request_id_var.get())
    return json_response(await committed(fut, validated, request_id_var.get(), minimal=minimal))
