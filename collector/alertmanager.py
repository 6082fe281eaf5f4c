"""Alertmanager webhook receiver: `POST /v1/alertmanager` records the alerts Alertmanager delivers (SLI M13).

alerts/alertmanager.yml sends every page (the on-call and security receivers) here as well as to the humans. An
alert instance is (fingerprint, startsAt): Alertmanager repeats a firing alert every `repeat_interval`, resends it
with each group update and sends it once more when resolved; all of those are one row, whose `notifications`
counts the deliveries. `pages_count()` is the M13 query; `GET /v1/alertmanager/pages` serves the same numbers and
the pages themselves.

Payload (Alertmanager webhook_config, version "4"):
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import duckdb
import orjson
import pyarrow as pa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from collector.auth import Principal, require_scope
from collector.redaction import redact_value
from collector.writer import QueueFull, WriterStopped

router = APIRouter(tags=["alertmanager"])
TAG = {"name": "alertmanager", "description": "Alertmanager webhook (pages for SLI M13) and the pages received."}

MAX_ALERTS = 10_000
_ZERO_TIME = re.compile(r"^0001-01-01T00:00:00")
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def parse_time(value: str | None) -> datetime | None:
    """RFC 3339 with up to nanoseconds (Go's format) -> aware UTC datetime (microseconds); Go's zero time -> None."""
    if value is None or value == "" or _ZERO_TIME.match(value):
        return None
    m = _RFC3339.match(value)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    frac = (m.group(2) or ".0")[1:7].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}").astimezone(timezone.utc)


class AMAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: str
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str | None = None

    @field_validator("labels")
    @classmethod
    def _alertname(cls, v: dict[str, str]) -> dict[str, str]:
        if not v.get("alertname"):
            raise ValueError("an alert needs the label alertname")
        return v

    @field_validator("startsAt")
    @classmethod
    def _starts(cls, v: str) -> str:
        if parse_time(v) is None:
            raise ValueError(f"startsAt must be an RFC 3339 time, got {v!r}")
        return v

    @field_validator("endsAt")
    @classmethod
    def _ends(cls, v: str | None) -> str | None:
        parse_time(v)
        return v

    def key(self) -> str:
        """Alertmanager's fingerprint, or (older senders) a stable hash of the labels."""
        if self.fingerprint:
            return self.fingerprint
        return hashlib.sha256(orjson.dumps(self.labels, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class AMWebhook(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"example": {
        "version": "4", "groupKey": '{}/{severity="page"}:{alertname="ScheduledRunSuccessBudgetBurn"}',
        "truncatedAlerts": 0, "status": "firing", "receiver": "oncall",
        "groupLabels": {"alertname": "ScheduledRunSuccessBudgetBurn"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing", "fingerprint": "5e1a0c2f7d3b9a41", "startsAt": "2026-11-21T10:03:00.123Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
            "labels": {"alertname": "ScheduledRunSuccessBudgetBurn", "severity": "page", "team": "data",
                       "sloth_service": "notebooks", "sloth_slo": "scheduled-run-success"},
            "annotations": {"summary": "SLO scheduled-run-success (team data) is burning its error budget too fast",
                            "runbook_url": "https://.../alerts/runbooks/slo-scheduled-run-success.md"},
        }],
    }})

    version: Literal["4"] = Field(description="Alertmanager webhook payload version; only 4 exists")
    groupKey: str | None = None
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str | None = None
    alerts: list[AMAlert] = Field(max_length=MAX_ALERTS)


class WebhookResult(BaseModel):
    received: int = Field(description="alerts in the payload")
    new: int = Field(description="alert instances seen for the first time")
    new_pages: int = Field(description="of which pages (severity=page)")


_SCHEMA = pa.schema([
    ("fingerprint", pa.string()), ("starts_at", pa.timestamp("us", tz="UTC")), ("alertname", pa.string()),
    ("severity", pa.string()), ("category", pa.string()), ("team", pa.string()), ("notebook", pa.string()),
    ("owner", pa.string()), ("slo", pa.string()), ("service", pa.string()), ("status", pa.string()),
    ("ends_at", pa.timestamp("us", tz="UTC")), ("receiver", pa.string()), ("runbook_url", pa.string()),
    ("summary", pa.string()), ("generator_url", pa.string()), ("labels", pa.string()), ("annotations", pa.string()),
    ("received_at", pa.timestamp("us", tz="UTC")),
])


def alert_rows(payload: AMWebhook, received_at: datetime) -> pa.Table:
    """One row per alert instance in the payload (the last occurrence wins when a payload repeats one)."""
    rows: dict[tuple[str, datetime], dict[str, Any]] = {}
    for a in payload.alerts:
        labels, _ = redact_value(a.labels)
        annotations, _ = redact_value(a.annotations)
        starts = parse_time(a.startsAt)
        assert starts is not None
        rows[(a.key(), starts)] = {
            "fingerprint": a.key(), "starts_at": starts, "alertname": labels["alertname"],
            "severity": labels.get("severity") or labels.get("sloth_severity"),
            "category": labels.get("category"), "team": labels.get("team"), "notebook": labels.get("notebook"),
            "owner": labels.get("owner"), "slo": labels.get("sloth_slo"), "service": labels.get("sloth_service"),
            "status": a.status, "ends_at": parse_time(a.endsAt) if a.status == "resolved" else None,
            "receiver": payload.receiver, "runbook_url": annotations.get("runbook_url"),
            "summary": annotations.get("summary"), "generator_url": a.generatorURL,
            "labels": orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode(),
            "annotations": orjson.dumps(annotations, option=orjson.OPT_SORT_KEYS).decode(),
            "received_at": received_at,
        }
    return pa.Table.from_pylist(list(rows.values()), schema=_SCHEMA)


def upsert_alerts(con: duckdb.DuckDBPyConnection, table: pa.Table) -> tuple[int, int]:
    """Insert new alert instances, update known ones; returns (new instances, new pages). Runs in the writer."""
    if table.num_rows == 0:
        return 0, 0
    con.register("am_incoming", table)
    try:
        new, new_pages = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE i.severity = 'page') FROM am_incoming i "
            "ANTI JOIN alertmanager_alerts a USING (fingerprint, starts_at)"
        ).fetchone()
        con.execute("""
            INSERT INTO alertmanager_alerts
            SELECT fingerprint, starts_at, alertname, severity, category, team, notebook, owner, slo, service,
                   status, ends_at, receiver, runbook_url, summary, generator_url, labels::JSON, annotations::JSON,
                   received_at, received_at, 1
            FROM am_incoming
            ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
                status = EXCLUDED.status,
                ends_at = coalesce(EXCLUDED.ends_at, alertmanager_alerts.ends_at),
                annotations = EXCLUDED.annotations,
                runbook_url = EXCLUDED.runbook_url,
                summary = EXCLUDED.summary,
                last_received_at = EXCLUDED.last_received_at,
                notifications = alertmanager_alerts.notifications + 1
        """)
    finally:
        con.unregister("am_incoming")
    return int(new), int(new_pages)


def pages_count(cur: duckdb.DuckDBPyConnection, since: datetime, until: datetime, team: str | None = None) -> int:
    """SLI M13: on-call pages that started in [since, until), deduplicated by (fingerprint, start); optionally of
    one team. Resolutions and repeats of a page do not count again; a page that fires again later (new start) does."""
    sql = ("SELECT count(*) FROM alertmanager_alerts WHERE severity = 'page' AND starts_at >= ? AND starts_at < ?")
    params: list[Any] = [since, until]
    if team is not None:
        sql += " AND team = ?"
        params.append(team)
    return int(cur.execute(sql, params).fetchone()[0])


@router.post(
    "/v1/alertmanager", response_model=WebhookResult, summary="Alertmanager webhook: record pages (SLI M13)",
    description="Point an Alertmanager `webhook_configs` entry here (see alerts/alertmanager.yml) with a bearer token "
                "that has the `ingest` scope. Answers 2xx only once the alerts are committed, so Alertmanager "
                "retries anything not stored. Repeats and resolutions of an alert instance (fingerprint, startsAt) "
                "update its row; they are never counted twice.",
    responses={422: {"description": "not an Alertmanager v4 payload; the body says which field"},
               429: {"description": "the writer queue is full; Alertmanager retries"}},
)
async def receive(payload: AMWebhook, request: Request,
                  principal: Principal = Depends(require_scope("ingest"))) -> WebhookResult:
    table = alert_rows(payload, datetime.now(timezone.utc))
    store = request.app.state.store
    try:
        fut = store.writer.execute(lambda con: upsert_alerts(con, table))
    except QueueFull as exc:
        raise HTTPException(429, "ingest queue is full", headers={"Retry-After": str(int(exc.retry_after + 0.999))})
    except WriterStopped:
        raise HTTPException(503, "collector is shutting down", headers={"Retry-After": "5"})
    new, new_pages = await asyncio.wrap_future(fut)
    return WebhookResult(received=len(payload.alerts), new=new, new_pages=new_pages)


class Page(BaseModel):
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
    pages: list[Page] = Field(description="the most recent pages first, at most `limit`")


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


@router.get("/v1/alertmanager/pages", response_model=PagesResponse,
            summary="Pages received from Alertmanager (SLI M13), deduplicated")
async def pages(
    request: Request,
    since: datetime | None = Query(None, description="RFC 3339; default: `until` minus 30 days"),
    until: datetime | None = Query(None, description="RFC 3339; default: now"),
    team: str | None = Query(None),
    limit: int = Query(100, ge=0, le=1000),
    principal: Principal = Depends(require_scope("read")),
) -> PagesResponse:
    if principal.team is not None:
        if team is not None and team != principal.team:
            raise HTTPException(403, f"token {principal.name!r} may only read team {principal.team!r}")
        team = principal.team
    until = _utc(until) if until else datetime.now(timezone.utc)
    since = _utc(since) if since else until - timedelta(days=30)
    if since >= until:
        raise HTTPException(422, "since must be before until")
    store = request.app.state.store
    with store.read_cursor() as cur:
        count = pages_count(cur, since, until, team)
        sql = ("SELECT fingerprint, starts_at, ends_at, status, alertname, team, notebook, owner, slo, category, "
               "summary, runbook_url, receiver, notifications FROM alertmanager_alerts "
               "WHERE severity = 'page' AND starts_at >= ? AND starts_at < ?")
        params: list[Any] = [since, until]
        if team is not None:
            sql += " AND team = ?"
            params.append(team)
        rows = cur.execute(sql + " ORDER BY starts_at DESC, fingerprint LIMIT ?", [*params, limit]).fetchall()
    cols = list(Page.model_fields)
    return PagesResponse(since=since, until=until, team=team, count=count,
                         pages=[Page(**dict(zip(cols, r))) for r in rows])
