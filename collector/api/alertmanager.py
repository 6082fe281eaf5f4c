"""Alertmanager webhook receiver: `POST /v1/alertmanager` records the alerts Alertmanager delivers (SLI M13), and
`GET /v1/alertmanager/pages` serves the pages and their M13 count.

alerts/alertmanager.yml sends every page (the on-call and security receivers) here as well as to the humans.
Mapping in collector/sources/alertmanager.py; SQL in collector/storage/alerts.py.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import duckdb
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from collector.api.auth import Principal, require_scope
from collector.api.body import parse_json, read_capped_body, validated
from collector.api.deps import bounded_time, get_settings, get_store, read_cursor, scoped_team
from collector.api.errors import BadRequest, Forbidden
from collector.contract.body import decode_body
from collector.settings import Settings
from collector.ingest.store import Store
from collector.sources.alertmanager import AMWebhook, alert_rows
from collector.storage.alerts import list_pages, pages_count, upsert_alerts

router = APIRouter(tags=["alertmanager"])
TAG = {"name": "alertmanager", "description": "Alertmanager webhook (pages for SLI M13) and the pages received."}


class WebhookResult(BaseModel):
    received: int = Field(description="alerts in the payload")
    new: int = Field(description="alert instances seen for the first time")
    new_pages: int = Field(description="of which pages (severity=page)")


@router.post(
    "/v1/alertmanager", response_model=WebhookResult, summary="Alertmanager webhook: record pages (SLI M13)",
    description="Point an Alertmanager `webhook_configs` entry here (see alerts/alertmanager.yml) with a bearer token "
                "that has the `ingest` scope and no team limit (alerts concern every team). Answers 2xx only once "
                "the alerts are committed, so Alertmanager retries anything not stored. Repeats and resolutions of "
                "an alert instance (fingerprint, startsAt) update its row; they are never counted twice. The token "
                "is checked before the body is read, and the body is read under the same byte caps as "
                "`POST /v1/events` (413 early).",
    responses={401: {"description": "missing or invalid token (the body is not read)"},
               403: {"description": "token lacks `ingest`, or is limited to one team"},
               413: {"description": "body over the configured byte limits"},
               422: {"description": "not an Alertmanager v4 payload; the body says which field"},
               429: {"description": "the writer queue is full; Alertmanager retries"}},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": AMWebhook.model_json_schema(ref_template="#/components/schemas/{model}")}}}},
)
async def receive(request: Request, principal: Principal = Depends(require_scope("ingest")),
                  store: Store = Depends(get_store), settings: Settings = Depends(get_settings)) -> WebhookResult:
    # No body parameter: FastAPI would read and parse the whole body before the token check. The dependency
    # above authenticates first; the body is then streamed under the cap and validated here.
    if principal.team is not None:
        raise Forbidden(f"token {principal.name!r} is limited to team {principal.team!r}; the Alertmanager "
                        "webhook needs a platform token")
    raw = decode_body(await read_capped_body(request, settings.max_body_bytes), None,
                      request.headers.get("content-encoding"), settings.max_inflated_bytes)
    payload = validated(AMWebhook, parse_json(raw))
    table = alert_rows(payload, datetime.now(timezone.utc))
    new, new_pages = await asyncio.wrap_future(store.writer.execute(lambda con: upsert_alerts(con, table)))
    return WebhookResult(received=len(payload.alerts), new=new, new_pages=new_pages)


class AlertPage(BaseModel):
    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None
    status: str
    alertname: str
    team: str | None
    notebook: str | None
    owner: str | None
    slo: str | None
    category: str | None
    summary: str | None
    runbook_url: str | None
    receiver: str
    notifications: int


class PagesResponse(BaseModel):
    since: datetime
    until: datetime
    team: str | None
    count: int = Field(description="SLI M13: pages started in [since, until), deduplicated")
    pages: list[AlertPage] = Field(description="the most recent pages first, at most `limit`")


@router.get("/v1/alertmanager/pages", response_model=PagesResponse,
            summary="Pages received from Alertmanager (SLI M13), deduplicated")
async def pages(
    since: datetime | None = Query(None, description="RFC 3339; default: `until` minus 30 days"),
    until: datetime | None = Query(None, description="RFC 3339; default: now"),
    team: str | None = Query(None),
    limit: int = Query(100, ge=0, le=1000),
    principal: Principal = Depends(require_scope("read")),
    db: duckdb.DuckDBPyConnection = Depends(read_cursor),
) -> PagesResponse:
    team = scoped_team(principal, team)
    until = bounded_time(until, "until") if until else datetime.now(timezone.utc)
    since = bounded_time(since, "since") if since else until - timedelta(days=30)
    if since >= until:
        raise BadRequest("since must be before until", 422)
    count = pages_count(db, since, until, team)
    return PagesResponse(since=since, until=until, team=team, count=count,
                         pages=[AlertPage(**row) for row in list_pages(db, since, until, team, limit)])
