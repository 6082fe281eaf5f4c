"""OpenLineage HTTP transport endpoints (mapping in collector/sources/openlineage.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from collector.api.auth import Principal, require_scope
from collector.api.body import parse_json
from collector.api.deps import get_settings, return_minimal
from collector.api.native import json_response, read_native_body, submit_native
from collector.contract.body import BodyError
from collector.settings import Settings
from collector.sources.openlineage import AttemptRegistry, map_events
from collector.storage.queries import openlineage_attempts

router = APIRouter(tags=["ingest"])


async def _read_events(request: Request) -> Any:
    return parse_json(await read_native_body(request))


def _registry(request: Request) -> AttemptRegistry:
    """One registry per app, loading attempt numbers from the stored events."""
    reg = getattr(request.app.state, "openlineage_attempts", None)
    if reg is None:
        store = request.app.state.store

        async def load(source: str, run_id: str) -> list[tuple[str, int, datetime | None]]:
            def read() -> list[tuple[str, int, datetime | None]]:
                with store.read_cursor() as cur:
                    return openlineage_attempts(cur, source, run_id)
            return await run_in_threadpool(read)

        reg = request.app.state.openlineage_attempts = AttemptRegistry(load)
    return reg


@router.post(
    "/api/v1/lineage",
    summary="OpenLineage: one RunEvent (spec 2-0-2)",
    description="OpenLineage HTTP transport endpoint. RunEvents map onto the run lifecycle (see docs/sources.md); "
                "DatasetEvents, JobEvents and OTHER are accepted and ignored. 200 when stored (or duplicate or "
                "ignored), 422 when the event cannot be mapped or breaks the contract (dead-lettered). The answer "
                "has the shape of `POST /v1/events`'s (`Prefer: return=minimal` honoured).",
)
async def post_lineage(request: Request, principal: Principal = Depends(require_scope("ingest")),
                       minimal: bool = Depends(return_minimal)) -> Response:
    doc = await _read_events(request)
    if isinstance(doc, list):
        raise BodyError("this endpoint takes one event; send arrays to /api/v1/lineage/batch")
    batch = await map_events(_registry(request), [doc])
    outcome = await submit_native(request, batch, "openlineage", minimal=minimal)
    return json_response(outcome, ignored=sum(batch.ignored.values()))


@router.post(
    "/api/v1/lineage/batch",
    summary="OpenLineage: a batch of events",
    description="A JSON array of OpenLineage events. Answer per the spec: `status` success|partial_success, "
                "`summary{received, successful, failed, retriable, non_retriable}` and `failed_events[{index, "
                "reason, retriable}]` (index into the array). Failed events are dead-lettered; the others are "
                "stored. 429/503 (whole batch retriable) when the write queue is full or the writer is down.",
)
async def post_lineage_batch(request: Request, principal: Principal = Depends(require_scope("ingest")),
                             settings: Settings = Depends(get_settings)) -> Response:
    doc = await _read_events(request)
    if not isinstance(doc, list):
        raise BodyError("the batch endpoint takes a JSON array of events")
    if len(doc) > settings.max_events_per_request:
        raise BodyError(f"{len(doc)} events in one request; the limit is {settings.max_events_per_request}",
                        "too_large")
    batch = await map_events(_registry(request), doc)
    body = (await submit_native(request, batch, "openlineage", minimal=True)).body  # only rejections are read
    failed: dict[int, list[str]] = {}
    for r in body.get("results", []):
        if r.get("status") == "rejected":
            msgs = [f"{e.get('path')}: {e.get('message')}" for e in r.get("errors") or []]
            failed.setdefault(r["index"], []).extend(msgs)
    failed_events = [{"index": i, "reason": "; ".join(m)[:1000] or "invalid event", "retriable": False}
                     for i, m in sorted(failed.items())]
    answer = {
        "status": "success" if not failed_events else "partial_success",
        "summary": {"received": len(doc), "successful": len(doc) - len(failed_events), "failed": len(failed_events),
                    "retriable": 0, "non_retriable": len(failed_events)},
        "failed_events": failed_events,
        "request_id": body.get("request_id"),
    }
    return Response(orjson.dumps(answer), status_code=200, media_type="application/json")
