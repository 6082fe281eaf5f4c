"""Operational endpoints: liveness, readiness, Prometheus exposition, event schemas, dead letters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from collector.api.auth import Principal, require_scope
from collector.api.deps import get_store, read_cursor
from collector.api.errors import Forbidden, NotFound
from collector.api.where import Where
from collector.ingest.store import Store
from collector.contract.events import EVENT_TYPES, json_schemas

router = APIRouter()


@router.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz", tags=["operations"], summary="Readiness: writer running, database answering, queue not full",
    responses={503: {"description": "not ready; the body says which check failed"}},
)
async def readyz(store: Store = Depends(get_store)) -> JSONResponse:
    checks: dict[str, Any] = {}
    thread = store.writer._thread
    checks["writer"] = bool(thread and thread.is_alive())
    try:
        with store.read_cursor(settled=False) as cur:  # answers at once, whatever the writer is deriving
            cur.execute("SELECT 1").fetchall()
        checks["database"] = True
    except Exception as exc:  # noqa: BLE001
        checks["database"] = False
        checks["database_error"] = type(exc).__name__
    depth, cap = store.writer.queue_depth, store.writer.max_queue_events
    checks["queue"] = depth < cap
    checks["queue_depth"] = depth
    ready = checks["writer"] and checks["database"] and checks["queue"]
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


@router.get(
    "/metrics", tags=["operations"], summary="Prometheus exposition (OpenMetrics when the Accept header asks)",
    description="Reads the in-memory snapshot only; never queries the event store. It waits until the counters "
                "of what was acknowledged before it are in that snapshot (the run counters are written with the "
                "derived tables, just after the acknowledgement). Requires the `read` scope "
                "unless `OBSERVATORY_METRICS_PUBLIC=true`. The exposition holds every team's series, so a token "
                "limited to one team is refused (403): scrapers use a platform token (docs/security.md).",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"example": "notebook_run_attempts_total{...} 42.0\n"}}},
               403: {"description": "the token lacks `read`, or is limited to one team"}},
)
async def metrics(request: Request, store: Store = Depends(get_store),
                  principal: Principal = Depends(require_scope("read", unless_setting="metrics_public"))) -> Response:
    if principal.team is not None:
        raise Forbidden(f"token {principal.name!r} is limited to team {principal.team!r}; /metrics holds every "
                        "team's series and needs a platform token")
    await run_in_threadpool(store.writer.wait_derived)
    body, content_type = store.exposition.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)


@router.get("/v1/schema", tags=["contract"], summary="JSON Schema of every event type")
async def schema_all(type: str | None = Query(None, description="only this event type", examples=["platform.probe"])
                     ) -> dict[str, Any]:
    schemas = json_schemas()
    if type is None:
        return {"specversion": "1.0", "types": list(EVENT_TYPES), "schemas": schemas}
    if type not in schemas:
        raise NotFound("unknown event type; see `types` in GET /v1/schema")
    return {"specversion": "1.0", "types": [type], "schemas": {type: schemas[type]}}


class DeadLetter(BaseModel):
    dl_id: int
    received_at: datetime
    channel: str
    request_id: str | None
    item_index: int
    source: str | None
    event_id: str | None
    type: str | None
    reason: str
    errors: list[dict[str, str]]
    payload: str = Field(description="The rejected item as received, with secrets redacted")


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    next_after: int | None = Field(None, description="Pass as `after` for the next page; null at the end")


@router.get("/v1/dead-letters", tags=["operations"], summary="Rejected events with the reason (admin)",
            response_model=DeadLetterPage)
def dead_letters(
    principal: Principal = Depends(require_scope("admin", platform=True)),
    db: duckdb.DuckDBPyConnection = Depends(read_cursor),
    after: int = Query(0, ge=0, le=2**63 - 1, description="return entries with dl_id greater than this"),
    limit: int = Query(100, ge=1, le=1000),
    reason: str | None = Query(None, examples=["missing"]),
    source: str | None = Query(None),
    request_id: str | None = Query(None),
) -> Response:
    w = Where().add("dl_id > ?", after).eq("reason", reason).eq("source", source).eq("request_id", request_id)
    rows = db.execute(
        "SELECT dl_id, strftime(received_at, '%Y-%m-%dT%H:%M:%S.%fZ'), channel, request_id, item_index, source,"
        f" event_id, type, reason, errors, payload FROM dead_letters{w.sql()} ORDER BY dl_id LIMIT ?",
        w.params + [limit + 1]).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    cols = ("dl_id", "received_at", "channel", "request_id", "item_index", "source", "event_id", "type", "reason",
            "errors", "payload")
    items = []
    for r in rows:
        d = dict(zip(cols, r))
        d["errors"] = orjson.loads(d["errors"])
        items.append(d)
    body = {"items": items, "next_after": items[-1]["dl_id"] if more else None}
    return Response(orjson.dumps(body), media_type="application/json")
