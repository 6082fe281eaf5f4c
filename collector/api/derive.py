"""The batches the deriver gave up on, deriving them again, or recording that they will not be
(collector/ingest/rederive.py): what `observatory derive failures|retry|dismiss --url` ask a running collector."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import duckdb
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from collector.api.auth import Principal, require_scope
from collector.api.body import parse_json, read_capped_body, validated
from collector.api.deps import get_store, read_cursor
from collector.ingest import rederive
from collector.ingest.store import Store

router = APIRouter()

# A stored batch id (BIGINT): anything else is refused (422) before it reaches SQL.
BatchId = Annotated[int, Field(ge=0, le=2**63 - 1)]


class DeriveFailure(BaseModel):
    batch_id: int = Field(description="The batch whose derived rows are missing (its events are stored)")
    failed_at: datetime
    events: int = Field(description="Events the batch stored")
    error: str = Field(description="The class of the error the deriver met (never its message: it may quote an "
                                   "event's values)")
    rederived_at: datetime | None = Field(None, description="When it was derived again; null while it waits")
    rederived_batch: int | None = Field(None, description="The batch it was derived again under")
    dismissed_at: datetime | None = Field(None, description="When an operator decided it will not be derived again "
                                                            "(`POST /v1/derive/dismiss`); null otherwise")
    dismissed_reason: str | None = Field(None, description="The operator's reason, secrets redacted")
    run_attempts: int = Field(0, description="Run attempts with events in the batch: missing from `run_attempts`, "
                                             "the run counters and the SLIs over run attempts while it is not "
                                             "derived (an attempt whose other events were derived is incomplete)")
    teams: list[str] = Field(default_factory=list, description="Those attempts' teams (at most 100)")
    event_time_from: datetime | None = Field(None, description="The batch's earliest event time: with "
                                                               "`event_time_to`, the SLI windows it falls in")
    event_time_to: datetime | None = Field(None, description="The batch's latest event time")


class DeriveFailures(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "outstanding": 1,
        "items": [{"batch_id": 4182, "failed_at": "2026-12-06T09:14:02.511000Z", "events": 3912,
                   "error": "ConstraintException", "rederived_at": None, "rederived_batch": None,
                   "dismissed_at": None, "dismissed_reason": None, "run_attempts": 1240,
                   "teams": ["data-eng", "finance"], "event_time_from": "2026-12-06T09:12:40.100000Z",
                   "event_time_to": "2026-12-06T09:13:58.870000Z"}],
    }]})

    outstanding: int = Field(description="Batches waiting to be derived again, not dismissed (the "
                                         "`observatory_writer_underived_batches` gauge)")
    items: list[DeriveFailure]


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_ids: list[BatchId] | None = Field(
        None, max_length=10_000, description="Only these batches; all that wait when absent")


class DismissRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_ids: list[BatchId] = Field(
        min_length=1, max_length=10_000, description="The batches that will not be derived again (never implied)")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=rederive.MAX_REASON_CHARS)] = Field(
        description="Why: stored, listed and answered, with any secret redacted first")


class Dismissed(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"dismissed": [4182]}]})

    dismissed: list[int] = Field(description="The batches dismissed: they no longer count as waiting")


class RetryResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"batches": [4182], "events": 3912, "batch_id": 4391}]})

    batches: list[int] = Field(description="The batches derived again (empty: none waited)")
    events: int = Field(description="Their stored events, folded into the derived tables")
    batch_id: int | None = Field(description="The new, empty batch they were derived under: the SLI fold refolds "
                                             "their run attempts once it reaches it")


@router.get(
    "/v1/derive/failures", tags=["operations"], response_model=DeriveFailures,
    summary="Batches whose derived rows are missing (admin)",
    description="Batches whose events are stored and acknowledged but whose derived rows (run attempts, kernel "
                "sessions, notebooks, schedules, reproducibility baselines) the deriver could not write: run "
                "counters and the SLIs over run attempts undercount them until `POST /v1/derive/retry`. Oldest "
                "first, each with what it keeps out of the derived tables: its run attempts, their teams, its "
                "events' time range. `all=true` lists those derived again or dismissed too (`observatory derive "
                "failures --url`).",
)
def derive_failures(
    principal: Principal = Depends(require_scope("admin", platform=True)),
    db: duckdb.DuckDBPyConnection = Depends(read_cursor),
    all: bool = Query(False, description="also the batches derived again or dismissed since"),
    limit: int = Query(1000, ge=1, le=10_000),
) -> dict:
    return rederive.document(db, include_retried=all, limit=limit)


# A retry's or a dismissal's body is a list of batch ids (and a reason): a few KiB at most, whatever the byte cap of
# event bodies.
MAX_RETRY_BODY_BYTES = 256 * 1024


@router.post(
    "/v1/derive/retry", tags=["operations"], response_model=RetryResult,
    summary="Derive the batches the deriver gave up on again (admin)",
    description="Folds the stored events of the waiting batches (all, or `batch_ids`, which may name dismissed ones) "
                "into the derived tables, once what made the deriver fail is fixed: the result is what those events "
                "arriving now would give. One transaction: a retry that fails again changes nothing (500, naming "
                "the error's class) and the batches stay listed. 404 for a batch that does not wait. Run counters "
                "count the batches' attempts now; the SLIs once the next refresh folds them (`observatory derive "
                "retry --url`). The body is optional (none, `{}` or `null`: every batch waiting).",
    responses={404: {"description": "a batch asked for does not wait to be derived again"},
               500: {"description": "deriving the batches failed again; nothing changed"}},
    openapi_extra={"requestBody": {"required": False, "content": {"application/json": {
        "schema": RetryRequest.model_json_schema(ref_template="#/components/schemas/{model}"),
        "examples": {"all": {"value": {}}, "one": {"value": {"batch_ids": [4182]}}}}}}},
)
async def derive_retry(request: Request, principal: Principal = Depends(require_scope("admin", platform=True)),
                       store: Store = Depends(get_store)) -> dict:
    # No body parameter: FastAPI would read and parse the whole body before the token check (collector/api/body.py).
    raw = await read_capped_body(request, MAX_RETRY_BODY_BYTES)
    doc = parse_json(raw) if raw.strip() else None
    body = validated(RetryRequest, {} if doc is None else doc)
    result = await asyncio.wrap_future(store.writer.retry_derive(body.batch_ids))
    return result.as_dict()


@router.post(
    "/v1/derive/dismiss", tags=["operations"], response_model=Dismissed,
    summary="Record that batches will not be derived again (admin)",
    description="For batches whose cause cannot be fixed: their derived rows stay missing, knowingly (run counters "
                "and the SLIs over run attempts keep undercounting them), and they no longer count as waiting "
                "(`observatory_writer_underived_batches`, the ObservatoryDeriveFailures ticket). The reason is "
                "stored with secrets redacted. Naming a dismissed batch in `POST /v1/derive/retry` still derives it. "
                "404 for a batch that does not wait (`observatory derive dismiss --url`).",
    responses={404: {"description": "a batch named does not wait to be derived again"}},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": DismissRequest.model_json_schema(ref_template="#/components/schemas/{model}"),
        "example": {"batch_ids": [4182],
                    "reason": "rows from the 2026-11 importer bug; runs re-sent as batch 4391"}}}}},
)
async def derive_dismiss(request: Request, principal: Principal = Depends(require_scope("admin", platform=True)),
                         store: Store = Depends(get_store)) -> dict:
    body = validated(DismissRequest, parse_json(await read_capped_body(request, MAX_RETRY_BODY_BYTES)))
    dismissed = await asyncio.wrap_future(store.writer.dismiss_derive(body.batch_ids, body.reason))
    return {"dismissed": dismissed}
