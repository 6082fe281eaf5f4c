"""`POST /v1/jupyter/events`: Jupyter Events records (mapping in collector/sources/jupyter.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from collector.api.auth import Principal, require_scope
from collector.api.deps import get_settings, return_minimal
from collector.api.ingest import check_item_count
from collector.api.native import json_response, read_native_body, submit_native
from collector.contract.body import split_items
from collector.settings import Settings
from collector.sources.jupyter import map_records

router = APIRouter(tags=["ingest"])


@router.post(
    "/v1/jupyter/events",
    summary="Ingest Jupyter Events (jupyter_events JSON: object, array or NDJSON event-log lines)",
    description=(
        "Maps `kernel_actions/v1` records (and the `kernel_lifecycle/v1` records of our server extension) onto "
        "`notebook.kernel.*` events; other schemas are counted and ignored. `__timestamp__` may carry the "
        "`+00:00Z` quirk of jupyter_events. The producer is `jupyter://<server>` (query parameter `server`, or "
        "`observatory.server` in the record). Same validation, redaction, dedup and dead-lettering as "
        "`POST /v1/events`; the response has the same shape plus `ignored`, and `Prefer: return=minimal` "
        "lists only the events not accepted."
    ),
)
async def post_jupyter_events(
    request: Request,
    server: str | None = Query(None, max_length=200, description="Name of the Jupyter server or hub (the source)"),
    principal: Principal = Depends(require_scope("ingest")),
    settings: Settings = Depends(get_settings),
    minimal: bool = Depends(return_minimal),
) -> Response:
    raw = await read_native_body(request)
    items = split_items(raw, request.headers.get("content-type"))
    check_item_count(len(items), settings.max_events_per_request, "records")
    batch = map_records(items, server or "default")
    outcome = await submit_native(request, batch, "jupyter", minimal=minimal)
    return json_response(outcome, ignored=sum(batch.ignored.values()), ignored_reasons=dict(batch.ignored))
