"""Read API for tables of individual runs, kernels, notebooks, artifacts, quality checks and security events.

These are the JSON endpoints the Grafana dashboards read through the Infinity datasource (tables of failing runs,
crash traces, a notebook's runs and cells, artifact ages and sizes, quality results). Every endpoint needs the
`read` scope; a token limited to one team (`team:` in the token file) sees only that team's rows.

Conventions shared by the list endpoints:
- multi-valued filters (`team`, `state`, `trigger`, ...) accept repeated parameters and comma-separated values
  (`team=a&team=b` or `team=a,b`), so Grafana's `${var:csv}` works;
- `since`/`until` are RFC 3339 times (Grafana's `${__from:date:iso}`) or epoch milliseconds (`${__from}`);
- paging is keyset: pass the `next_after` of a page as `after` to get the next one; `next_after` is null on the
  last page. Pages never skip or repeat rows while new rows arrive.

Texts (error messages, tracebacks, crash messages) are returned as stored: the secret scanner redacted them
before they were written, so a secret is never served here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Literal

import orjson
import duckdb
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from collector.api.auth import Principal, require_scope
from collector.api.deps import multi, parse_time, query, read_cursor, scoped_teams
from collector.api.errors import BadRequest, NotFound
from collector.api.where import Page, Where, decode_cursor, encode_cursor, page
from collector.ingest import rederive

router = APIRouter(tags=["runs"])

TAG = {"name": "runs", "description": "Tables of individual runs, cells, kernel crashes, notebooks, artifacts, "
                                      "quality checks and security events (what the Grafana tables read)."}

TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")
STATES = TERMINAL + ("queued", "started")
TRIGGERS = ("scheduled", "manual", "api", "ci")
MAX_LIMIT = 1000
ISO = "%Y-%m-%dT%H:%M:%S.%fZ"

# ---- response models ---------------------------------------------------------------------------------------------


class Cell(BaseModel):
    index: int = Field(description="0-based cell index in the notebook")
    status: str | None = Field(None, description="ok | error | skipped (as reported)")
    duration_seconds: float | None = Field(None, description="Execution time of the cell")
    start_offset_seconds: float = Field(description="Sum of the durations of the cells before it: where the cell "
                                                    "starts on the run's timeline")
    label: str = Field(description="`cell <index>` (for charts)")


class Run(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "run_id": "fin-revenue-daily@20261120T0600Z", "attempt": 2, "notebook_id": "fin-revenue-daily",
        "notebook_path": "/shared/finance/revenue_daily.ipynb", "team": "finance", "owner": "maria.garcia",
        "trigger": "scheduled", "environment": "prod", "state": "failed",
        "queued_at": "2026-11-20T06:00:03.120000Z", "started_at": "2026-11-20T06:00:05.004000Z",
        "scheduled_for": "2026-11-20T06:00:00.000000Z", "ended_at": "2026-11-20T06:03:12.440000Z",
        "time": "2026-11-20T06:03:12.440000Z", "duration_seconds": 187.4, "error_type": "KeyError",
        "error_message": "KeyError: 'region'", "cpu_seconds": 150.2, "max_memory_bytes": 2147483648,
        "cells_count": 14, "link": "/v1/runs/fin-revenue-daily@20261120T0600Z?attempt=2",
    }]})

    run_id: str
    attempt: int = Field(description="Attempt number, from 1")
    notebook_id: str | None
    notebook_path: str | None = Field(None, description="From the notebook registry")
    team: str | None
    owner: str | None
    trigger: str | None = Field(None, description="scheduled | manual | api | ci")
    environment: str | None
    state: str = Field(description="queued | started | succeeded | failed | timed_out | cancelled")
    queued_at: str | None
    started_at: str | None
    scheduled_for: str | None = Field(None, description="The cron slot of a scheduled run")
    ended_at: str | None
    time: str = Field(description="Latest lifecycle time (ended, else started, else queued): the sort key")
    duration_seconds: float | None
    error_type: str | None
    error_message: str | None = Field(None, description="As stored: secrets were redacted at ingest")
    cpu_seconds: float | None
    max_memory_bytes: int | None
    cells_count: int | None = Field(None, description="Number of cells reported with the terminal event")
    link: str = Field(description="This attempt's detail in this API")


class RunDetail(Run):
    output_hash: str | None = None
    input_hash: str | None = None
    parameters_hash: str | None = None
    env_hash: str | None = None
    attempts: int = Field(description="How many attempts this run has")
    cells: list[Cell] = Field(description="Per-cell durations in notebook order, with timeline offsets")


class RunPage(Page[Run]):
    underived_run_attempts: int = Field(0, description=(
        "Run attempts of the teams and notebooks asked for, with events in the time range asked for, that sit in "
        "ingest batches the collector stored but could not derive (`GET /v1/derive/failures`): the list misses "
        "them, or holds them incomplete, until they are derived again. 0 normally. The other filters are not "
        "applied to it (a state, for one, is what deriving decides), so it is an upper bound."))


class KernelCrash(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "time": "2026-11-19T10:52:12.590000Z", "type": "notebook.kernel.died", "reason": "crash",
        "kernel_id": "d09db264-a999-4c24-b923-4f77934186a6", "team": "product-analytics", "owner": "ana.souza",
        "notebook_id": "pa-experiments-explore", "notebook_path": "/shared/product-analytics/experiments_explore.ipynb",
        "environment": "dev", "exit_code": 139, "signal": "SIGSEGV", "message": "Kernel died: segmentation fault",
        "traceback": "Fatal Python error: Segmentation fault\n...", "source": "jupyter://hub-a",
        "event_id": "d09db264-a999-4c24-b923-4f77934186a6/2",
    }]})

    time: str
    type: str = Field(description="notebook.kernel.died, or notebook.kernel.restarted with reason crash/oom")
    reason: str | None = Field(None, description="crash | oom | signal | unknown")
    kernel_id: str | None
    team: str | None
    owner: str | None
    notebook_id: str | None
    notebook_path: str | None
    environment: str | None
    exit_code: int | None
    signal: str | None
    message: str | None = Field(None, description="`msg` of the event, redacted at ingest")
    traceback: str | None = Field(None, description="Crash trace as stored (redacted at ingest)")
    source: str
    event_id: str


KernelCrashPage = Page[KernelCrash]


class NotebookInfo(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "notebook_id": "fin-revenue-daily", "team": "finance", "owner": "maria.garcia",
        "notebook_path": "/shared/finance/revenue_daily.ipynb", "tags": {"tier": "production"}, "critical": True,
        "has_tests": True, "created_at": "2026-02-16T06:29:00.943000Z", "promoted_at": "2026-03-02T09:00:00.000000Z",
        "days_to_production": 14.1, "cron": "0 6 * * *", "timezone": "Europe/Berlin",
        "runs_7d": 7, "failed_runs_7d": 1, "last_run_state": "succeeded", "last_run_at": "2026-11-20T06:03:12.440000Z",
    }]})

    notebook_id: str
    team: str | None
    owner: str | None
    notebook_path: str | None
    tags: dict[str, Any] | None
    critical: bool | None
    has_tests: bool | None
    created_at: str | None
    registered_at: str | None
    promoted_at: str | None
    days_to_production: float | None = Field(None, description="Days from created_at to promoted_at (SLI M14)")
    cron: str | None = Field(None, description="Registered schedule, if any")
    timezone: str | None
    runs_7d: int = Field(description="Attempts ended in the last 7 days")
    failed_runs_7d: int = Field(description="Of those, failed or timed out")
    last_run_state: str | None
    last_run_at: str | None


NotebookPage = Page[NotebookInfo]


class Artifact(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "notebook_id": "risk-chargeback-monitor", "artifact": "warehouse.risk.chargebacks_hourly", "team": "risk",
        "owner": "jonas.meyer", "run_id": "risk-chargeback-monitor@20261118T0840Z",
        "published_at": "2026-11-18T08:40:55.805000Z", "age_seconds": 1530.2, "sla_seconds": 7200.0,
        "stale": False, "size_bytes": 6197340, "publications": 48,
    }]})

    notebook_id: str
    artifact: str
    team: str | None
    owner: str | None
    run_id: str | None
    published_at: str = Field(description="Event time of the latest publication")
    age_seconds: float = Field(description="Now minus published_at")
    sla_seconds: float | None = Field(None, description="Freshness SLA, when the artifact has one")
    stale: bool | None = Field(None, description="age > SLA; null without an SLA")
    size_bytes: int | None
    publications: int = Field(description="Publications seen for this artifact")


ArtifactPage = Page[Artifact]


class QualityCheck(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "time": "2026-11-18T08:52:17.404000Z", "notebook_id": "de-orders-dedup", "team": "data-eng",
        "owner": "sam.oconnor", "check": "no_duplicate_order_ids", "result": "pass",
        "run_id": "de-orders-dedup@20261118T0850Z", "attempt": 1, "failed": 0, "source": "quality://great-expectations",
        "event_id": "de-orders-dedup@20261118T0850Z/1/qc/no_duplicate_order_ids",
    }]})

    time: str
    notebook_id: str | None
    team: str | None
    owner: str | None
    check: str | None
    result: str | None = Field(None, description="pass | fail")
    failed: int = Field(description="1 when the check failed (handy for charts)")
    run_id: str | None
    attempt: int | None
    source: str
    event_id: str


QualityPage = Page[QualityCheck]


class SecurityEvent(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "time": "2026-11-19T06:10:56.759000Z", "kind": "secret_detected", "type": "notebook.security.secret_detected",
        "team": "product-analytics", "owner": "noah.kim", "notebook_id": "pa-dau-mau", "detector": "trufflehog",
        "location": "cell 11 (code), line 28", "principal": None, "resource": None, "action": None,
        "redactions": 0, "source": "scanner://pre-commit-secrets", "event_id": "secret/1795068656",
    }]})

    time: str
    kind: Literal["secret_detected", "redacted_at_ingest", "access_denied"]
    type: str = Field(description="The event type")
    team: str | None
    owner: str | None
    notebook_id: str | None
    detector: str | None = Field(None, description="Who found the secret (reported detections)")
    location: str | None
    principal: str | None = Field(None, description="Who was denied (access_denied)")
    resource: str | None
    action: str | None
    redactions: int = Field(description="Secrets replaced by [REDACTED:<kind>] in this event at ingest")
    source: str
    event_id: str


SecurityPage = Page[SecurityEvent]


# ---- helpers -----------------------------------------------------------------------------------------------------


_multi = multi  # collector/api/deps.py: the cost routes parse their team filter the same way


def _iso(dt: datetime | str | None) -> str | None:
    """A stored time as RFC 3339. DuckDB hands back a time Python cannot hold (a legacy row from before the
    contract bounded times, e.g. year 1 with an offset) as text: it is served as stored, never a 500."""
    if dt is None or isinstance(dt, str):
        return dt
    try:
        return dt.astimezone(timezone.utc).strftime(ISO)
    except (OverflowError, ValueError):
        return dt.isoformat()


def _check_values(name: str, values: list[str], allowed: Iterable[str]) -> None:
    bad = sorted(set(values) - set(allowed))
    if bad:
        raise BadRequest(f"`{name}`: unknown values {[b[:64] for b in bad[:20]]}; use {list(allowed)}", 422)


def _json(v: Any) -> Any:
    if v is None or isinstance(v, (dict, list)):
        return v
    try:
        return orjson.loads(v)
    except orjson.JSONDecodeError:
        return None


TeamQ = Query(None, description="Team(s); repeat or comma-separate", examples=["finance,risk"])
SinceQ = Query(None, description="From this time (RFC 3339 or epoch ms), inclusive", examples=["2026-11-20T00:00:00Z"])
UntilQ = Query(None, description="Up to this time (RFC 3339 or epoch ms), exclusive", examples=["2026-11-21T00:00:00Z"])
LimitQ = Query(100, ge=1, le=MAX_LIMIT, description="Page size")
AfterQ = Query(None, description="`next_after` of the previous page")
NotebookQ = Query(None, description="Notebook id(s)", examples=["fin-revenue-daily"])

_RUN_TIME = "coalesce(r.ended_at, r.started_at, r.queued_at, r.first_seen_at)"
_RUN_COLS = f"""
    r.run_id, r.attempt, r.notebook_id, n.notebook_path, r.team, r.owner, r.trigger, r.environment, r.state,
    r.queued_at, r.started_at, r.scheduled_for, r.ended_at, {_RUN_TIME} AS time, r.duration_seconds,
    r.error_type, r.error_message, r.cpu_seconds, r.max_memory_bytes,
    CASE WHEN r.cells IS NULL THEN NULL ELSE json_array_length(r.cells) END AS cells_count
"""


def _run_item(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for k in ("queued_at", "started_at", "scheduled_for", "ended_at", "time"):
        out[k] = _iso(out.get(k))
    out["link"] = f"/v1/runs/{out['run_id']}?attempt={out['attempt']}"
    return out


# ---- runs --------------------------------------------------------------------------------------------------------


@router.get(
    "/v1/runs", response_model=RunPage, summary="Run attempts, newest first, with filters and paging",
    description="One row per run attempt (a retry is a new attempt of the same `run_id`), ordered by its latest "
                "lifecycle time (`time`: ended, else started, else queued), newest first. `since`/`until` filter "
                "on that time. `latest_attempt=true` keeps only each run's latest attempt, so a run that failed "
                "and then succeeded on retry is not listed as failing.",
    responses={403: {"description": "the token lacks `read`, or is limited to another team"},
               422: {"description": "a filter value is invalid"}},
)
def list_runs(
    db: duckdb.DuckDBPyConnection = Depends(read_cursor),
    principal: Principal = Depends(require_scope("read")),
    team: list[str] | None = TeamQ,
    notebook_id: list[str] | None = NotebookQ,
    state: list[str] | None = Query(None, description=f"State(s): {', '.join(STATES)}", examples=["failed,timed_out"]),
    trigger: list[str] | None = Query(None, description=f"Trigger(s): {', '.join(TRIGGERS)}", examples=["scheduled"]),
    environment: list[str] | None = Query(None, description="Environment(s): prod, staging, dev", examples=["prod"]),
    owner: str | None = Query(None, description="Owner (exact)"),
    min_attempt: int | None = Query(None, ge=1, le=2**31 - 1,
                                    description="Only attempts numbered at least this (2 = retries)"),
    latest_attempt: bool = Query(False, description="Only the latest attempt of each run"),
    since: str | None = SinceQ,
    until: str | None = UntilQ,
    limit: int = LimitQ,
    after: str | None = AfterQ,
) -> RunPage:
    states, triggers = _multi(state), _multi(trigger)
    _check_values("state", states, STATES)
    _check_values("trigger", triggers, TRIGGERS)
    teams, notebooks = scoped_teams(principal, _multi(team)), _multi(notebook_id)
    w = Where()
    w.any_of("r.team", teams)
    w.any_of("r.notebook_id", notebooks)
    w.any_of("r.state", states)
    w.any_of("r.trigger", triggers)
    w.any_of("r.environment", _multi(environment))
    if owner:
        w.add("r.owner = ?", owner)
    if min_attempt:
        w.add("r.attempt >= ?", min_attempt)
    if latest_attempt:
        w.add("r.attempt = (SELECT max(x.attempt) FROM run_attempts x WHERE x.run_id = r.run_id)")
    rows, nxt = _newest(db, w, f"SELECT {_RUN_COLS} FROM run_attempts r LEFT JOIN notebooks n USING (notebook_id)",
                        _RUN_TIME, (("r.run_id", "run_id", str), ("r.attempt", "attempt", int)),
                        since, until, after, limit)
    held = rederive.attempts_held(db, parse_time(since, "since"), parse_time(until, "until"), notebooks or None)
    return RunPage(items=[Run(**_run_item(r)) for r in rows], next_after=nxt,
                   underived_run_attempts=sum(n for t, n in held.items() if not teams or t in teams))


@router.get(
    "/v1/runs/{run_id}", response_model=RunDetail, summary="One run attempt with its cells",
    description="The latest attempt unless `attempt` is given. `run_id=latest` with `notebook_id` picks that "
                "notebook's most recently finished attempt (what the debug dashboard's cell timeline shows by "
                "default; an attempt still running has no cells yet). "
                "`cells` carries each cell's duration and its offset on the run's timeline.",
    responses={404: {"description": "no such run (or attempt) visible to this token; when its events are stored in "
                                    "a batch the collector could not derive, the message names the batch"}},
)
def get_run(
    db: duckdb.DuckDBPyConnection = Depends(read_cursor),
    run_id: str = Path(description="Run id, or `latest` (needs `notebook_id`)",
                       examples=["fin-revenue-daily@20261120T0600Z"]),
    principal: Principal = Depends(require_scope("read")),
    attempt: int | None = Query(None, ge=1, le=2**31 - 1, description="Attempt number; default the latest"),
    notebook_id: str | None = Query(None, description="With `run_id=latest`: the notebook"),
) -> RunDetail:
    w = Where()
    if run_id == "latest":
        if not notebook_id:
            raise BadRequest("`run_id=latest` needs `notebook_id`", 422)
        w.add("r.notebook_id = ?", notebook_id)
    else:
        w.add("r.run_id = ?", run_id)
        if notebook_id:
            w.add("r.notebook_id = ?", notebook_id)
    if attempt is not None:
        w.add("r.attempt = ?", attempt)
    if principal.team is not None:
        w.add("r.team = ?", principal.team)
    sql = (f"SELECT {_RUN_COLS}, r.output_hash, r.input_hash, r.parameters_hash, r.env_hash, r.cells AS cells_json,"
           " (SELECT count(*) FROM run_attempts x WHERE x.run_id = r.run_id) AS attempts"
           f" FROM run_attempts r LEFT JOIN notebooks n USING (notebook_id){w.sql()}"
           f" ORDER BY {'r.ended_at IS NULL, ' if run_id == 'latest' else ''}{_RUN_TIME} DESC, r.attempt DESC"
           " LIMIT 1")
    rows = query(db, sql, w.params)
    if not rows:
        held = [] if run_id == "latest" else rederive.holding(db, run_id, principal.team)
        raise NotFound(f"run {run_id[:256]!r}" + (f" attempt {attempt}" if attempt else "") + " not found" + (
            f"; its events are stored in batch {', '.join(map(str, held))}, which the collector could not derive "
            "(the platform team's `observatory derive failures`; docs/reliability.md)" if held else ""))
    row = _run_item(rows[0])
    cells_raw = _json(row.pop("cells_json")) or []
    cells, offset = [], 0.0
    for i, c in enumerate(sorted((c for c in cells_raw if isinstance(c, dict)),
                                 key=lambda c: (c.get("index") if isinstance(c.get("index"), int) else 1 << 30))):
        idx = c.get("index") if isinstance(c.get("index"), int) else i
        dur = c.get("duration_seconds")
        dur = float(dur) if isinstance(dur, (int, float)) else None
        cells.append(Cell(index=idx, status=c.get("status"), duration_seconds=dur, start_offset_seconds=offset,
                          label=f"cell {idx}"))
        offset += dur or 0.0
    return RunDetail(**row, cells=cells)


def _newest(db: duckdb.DuckDBPyConnection, w: Where, select: str, time: str,
            keys: tuple[tuple[str, str, type], ...], since: str | None, until: str | None, after: str | None,
            limit: int) -> tuple[list[dict], str | None]:
    """One page, newest first, keyed by (`time`, *keys): the time range, the keyset cursor (the row's `time` and
    each key's field) and the order every listing shares. `keys` are (SQL expression, row field, cursor type)."""
    if (t := parse_time(since, "since")) is not None:
        w.add(f"{time} >= ?", t)
    if (t := parse_time(until, "until")) is not None:
        w.add(f"{time} < ?", t)
    cur = decode_cursor(after, (str, *(k[2] for k in keys)))
    if cur is not None:
        marks = ", ".join("?" for _ in cur)
        w.add(f"({time}, {', '.join(k[0] for k in keys)}) < ({marks})", parse_time(cur[0], "after"), *cur[1:])
    order = ", ".join(f"{x} DESC" for x in (time, *(k[0] for k in keys)))
    rows = query(db, f"{select}{w.sql()} ORDER BY {order} LIMIT ?", w.params + [limit + 1])
    return page(rows, limit, lambda r: encode_cursor(_iso(r["time"]), *(r[k[1]] for k in keys)))


def _newest_events(db: duckdb.DuckDBPyConnection, w: Where, columns: str, relation: str, since: str | None,
                   until: str | None, after: str | None, limit: int, alias: str = "") -> tuple[list[dict], str | None]:
    """One page of events keyed by (time, source, id), for the listings of kernel crashes, quality checks and
    security events: `columns` (plus source and event_id, added here) are read from `relation`, whose events table
    is `alias` when it joins others; times come back in ISO form."""
    e = f"{alias}." if alias else ""
    rows, nxt = _newest(db, w, f"SELECT {columns}, {e}source, {e}id AS event_id FROM {relation}", f"{e}time",
                        ((f"{e}source", "source", str), (f"{e}id", "event_id", str)), since, until, after, limit)
    for r in rows:
        r["time"] = _iso(r["time"])
    return rows, nxt


# ---- kernels -----------------------------------------------------------------------------------------------------

_CRASH_FILTER = ("(e.type = 'notebook.kernel.died' OR (e.type = 'notebook.kernel.restarted' "
                 "AND (e.data->>'reason') IN ('crash', 'oom')))")


@router.get(
    "/v1/kernels/crashes", response_model=KernelCrashPage, summary="Recent kernel crashes with their traces",
    description="Unexpected kernel deaths and crash/OOM restarts (what SLI M11 counts), newest first, with the "
                "message and trace as stored (redacted at ingest).",
)
def kernel_crashes(
    db: duckdb.DuckDBPyConnection = Depends(read_cursor),
    principal: Principal = Depends(require_scope("read")),
    team: list[str] | None = TeamQ,
    notebook_id: list[str] | None = NotebookQ,
    reason: list[str] | None = Query(None, description="Reason(s): crash, oom, signal, unknown", examples=["oom"]),
    since: str | None = SinceQ,
    until: str | None = UntilQ,
    limit: int = LimitQ,
    after: str | None = AfterQ,
) -> KernelCrashPage:
    w = Where()
    w.add(_CRASH_FILTER)
    w.any_of("e.team", scoped_teams(principal, _multi(team)))
    w.any_of("e.notebook_id", _multi(notebook_id))
    w.any_of("(e.data->>'reason')", _multi(reason))
    rows, nxt = _newest_events(
        db, w, "e.time, e.type, e.data->>'reason' AS reason, e.kernel_id, e.team, e.owner, e.notebook_id,"
        " coalesce(e.data->>'notebook_path', n.notebook_path) AS notebook_path, e.environment,"
        " TRY_CAST(e.data->>'exit_code' AS INTEGER) AS exit_code, e.data->>'signal' AS signal,"
        " e.data->>'msg' AS message, e.data->>'traceback' AS traceback",
        "events e LEFT JOIN notebooks n ON n.notebook_id = e.notebook_id", since, until, after, limit, alias="e")
    return KernelCrashPage(items=[KernelCrash(**r) for r in rows], next_after=nxt)


# ---- notebooks ---------------------------------------------------------------------------------------------------


@router.get(
    "/v1/notebooks", response_model=NotebookPage, summary="The notebook registry with schedules and recent runs",
    description="Registered notebooks ordered by id, with their schedule, promotion (time to productionize, SLI "
                "M14) and their attempts of the last 7 days. `promoted_since` lists notebooks promoted since a time "
                "(the executive dashboard's 'notebooks promoted').",
)
def list_notebooks(
    db: duckdb.DuckDBPyConnection = Depends(read_cursor),
    principal: Principal = Depends(require_scope("read")),
    team: list[str] | None = TeamQ,
    notebook_id: list[str] | None = NotebookQ,
    owner: str | None = Query(None, description="Owner (exact)"),
    critical: bool | None = Query(None, description="Only critical (true) or non-critical (false) notebooks"),
    promoted: bool | None = Query(None, description="Only promoted (true) or not promoted (false) notebooks"),
    promoted_since: str | None = Query(None, description="Promoted at or after this time (RFC 3339 or epoch ms)"),
    promoted_until: str | None = Query(None, description="Promoted before this time (RFC 3339 or epoch ms)"),
    limit: int = LimitQ,
    after: str | None = AfterQ,
) -> NotebookPage:
    w = Where()
    w.any_of("n.team", scoped_teams(principal, _multi(team)))
    w.any_of("n.notebook_id", _multi(notebook_id))
    if owner:
        w.add("n.owner = ?", owner)
    if critical is not None:
        w.add("coalesce(n.critical, false) = ?", critical)
    if promoted is not None:
        w.add("n.promoted_at IS NOT NULL" if promoted else "n.promoted_at IS NULL")
    if (t := parse_time(promoted_since, "promoted_since")) is not None:
        w.add("n.promoted_at >= ?", t)
    if (t := parse_time(promoted_until, "promoted_until")) is not None:
        w.add("n.promoted_at < ?", t)
    cur = decode_cursor(after, (str,))
    if cur is not None:
        w.add("n.notebook_id > ?", cur[0])
    sql = f"""
        WITH page AS (
            SELECT n.* FROM notebooks n{w.sql()} ORDER BY n.notebook_id LIMIT ?
        ), recent AS (
            SELECT r.notebook_id,
                   count(*) FILTER (WHERE r.ended_at >= now() - INTERVAL 7 DAY) AS runs_7d,
                   count(*) FILTER (WHERE r.ended_at >= now() - INTERVAL 7 DAY
                                    AND r.state IN ('failed', 'timed_out')) AS failed_runs_7d,
                   arg_max(r.state, {_RUN_TIME}) AS last_run_state,
                   max({_RUN_TIME}) AS last_run_at
            FROM run_attempts r WHERE r.notebook_id IN (SELECT notebook_id FROM page) GROUP BY r.notebook_id
        )
        SELECT p.notebook_id, p.team, p.owner, p.notebook_path, p.tags, p.critical, p.has_tests, p.created_at,
               p.registered_at, p.promoted_at,
               CASE WHEN p.promoted_at IS NOT NULL AND p.created_at IS NOT NULL
                    THEN round(epoch(p.promoted_at - p.created_at) / 86400.0, 2) END AS days_to_production,
               s.cron, s.timezone, coalesce(rc.runs_7d, 0) AS runs_7d, coalesce(rc.failed_runs_7d, 0) AS failed_runs_7d,
               rc.last_run_state, rc.last_run_at
        FROM page p LEFT JOIN schedules s USING (notebook_id) LEFT JOIN recent rc USING (notebook_id)
        ORDER BY p.notebook_id
    """
    rows = query(db, sql, w.params + [limit + 1])
    rows, nxt = page(rows, limit, lambda r: encode_cursor(r["notebook_id"]))
    for r in rows:
        r["tags"] = _json(r["tags"])
        for k in ("created_at", "registered_at", "promoted_at", "last_run_at"):
            r[k] = _iso(r[k])
    return NotebookPage(items=[NotebookInfo(**r) for r in rows], next_after=nxt)


# ---- artifacts ---------------------------------------------------------------------------------------------------


@router.get(
    "/v1/artifacts", response_model=ArtifactPage, summary="Published artifacts: latest publication, age, size, SLA",
    description="One row per (notebook, artifact) with its latest `notebook.artifact.published` event: age now, "
                "freshness SLA and whether it is stale (SLI M7), and its size. Ordered by notebook and artifact.",
)
def list_artifacts(
    db: duckdb.DuckDBPyConnection = Depends(read_cursor),
    principal: Principal = Depends(require_scope("read")),
    team: list[str] | None = TeamQ,
    notebook_id: list[str] | None = NotebookQ,
    stale: bool | None = Query(None, description="Only stale (true) or fresh (false) artifacts with an SLA"),
    limit: int = LimitQ,
    after: str | None = AfterQ,
) -> ArtifactPage:
    inner = Where()
    inner.add("type = 'notebook.artifact.published'")
    inner.add("notebook_id IS NOT NULL AND (data->>'artifact') IS NOT NULL")
    inner.any_of("team", scoped_teams(principal, _multi(team)))
    inner.any_of("notebook_id", _multi(notebook_id))
    outer = Where()
    if stale is not None:
        outer.add("sla_seconds IS NOT NULL")
        outer.add("(age_seconds > sla_seconds) = ?", stale)
    cur = decode_cursor(after, (str, str))
    if cur is not None:
        outer.add("(notebook_id, artifact) > (?, ?)", cur[0], cur[1])
    sql = f"""
        WITH latest AS (
            SELECT notebook_id, data->>'artifact' AS artifact,
                   arg_max(team, (time, id)) AS team, arg_max(owner, (time, id)) AS owner,
                   arg_max(run_id, (time, id)) AS run_id, max(time) AS published_at,
                   arg_max(TRY_CAST(data->>'sla_seconds' AS DOUBLE), (time, id)) AS sla_seconds,
                   arg_max(TRY_CAST(data->>'size_bytes' AS BIGINT), (time, id)) AS size_bytes,
                   count(*) AS publications
            FROM events{inner.sql()} GROUP BY ALL
        ), aged AS (
            SELECT *, greatest(epoch(now() - published_at), 0) AS age_seconds FROM latest
        )
        SELECT *, CASE WHEN sla_seconds IS NULL THEN NULL ELSE age_seconds > sla_seconds END AS stale
        FROM aged{outer.sql()} ORDER BY notebook_id, artifact LIMIT ?
    """
    rows = query(db, sql, inner.params + outer.params + [limit + 1])
    rows, nxt = page(rows, limit, lambda r: encode_cursor(r["notebook_id"], r["artifact"]))
    for r in rows:
        r["published_at"] = _iso(r["published_at"])
        r["age_seconds"] = round(float(r["age_seconds"]), 3)
    return ArtifactPage(items=[Artifact(**r) for r in rows], next_after=nxt)


# ---- quality -----------------------------------------------------------------------------------------------------


@router.get(
    "/v1/quality", response_model=QualityPage, summary="Data quality check results, newest first",
    description="`notebook.quality.checked` events (SLI M12): check name, result, the run that ran it.",
)
def list_quality(
    db: duckdb.DuckDBPyConnection = Depends(read_cursor),
    principal: Principal = Depends(require_scope("read")),
    team: list[str] | None = TeamQ,
    notebook_id: list[str] | None = NotebookQ,
    result: list[str] | None = Query(None, description="pass and/or fail", examples=["fail"]),
    check: list[str] | None = Query(None, description="Check name(s)"),
    since: str | None = SinceQ,
    until: str | None = UntilQ,
    limit: int = LimitQ,
    after: str | None = AfterQ,
) -> QualityPage:
    results = _multi(result)
    _check_values("result", results, ("pass", "fail"))
    w = Where()
    w.add("type = 'notebook.quality.checked'")
    w.any_of("team", scoped_teams(principal, _multi(team)))
    w.any_of("notebook_id", _multi(notebook_id))
    w.any_of("(data->>'result')", results)
    w.any_of("(data->>'check')", _multi(check))
    rows, nxt = _newest_events(
        db, w, "time, notebook_id, team, owner, data->>'check' AS \"check\", data->>'result' AS result,"
        " CASE WHEN (data->>'result') = 'fail' THEN 1 ELSE 0 END AS failed, run_id, attempt",
        "events", since, until, after, limit)
    return QualityPage(items=[QualityCheck(**r) for r in rows], next_after=nxt)


# ---- security ----------------------------------------------------------------------------------------------------

_SECURITY_KIND = ("CASE WHEN type = 'notebook.security.secret_detected' THEN 'secret_detected'"
                  " WHEN type = 'notebook.security.access_denied' THEN 'access_denied'"
                  " ELSE 'redacted_at_ingest' END")
KINDS = ("secret_detected", "redacted_at_ingest", "access_denied")


@router.get(
    "/v1/security/events", response_model=SecurityPage, summary="Security events: secrets found, access denied",
    description="Reported secret detections, events in which the ingest scanner redacted a secret (both count as "
                "secret exposure incidents, SLI M5), and access-denied audit events; newest first. The secrets "
                "themselves are never stored.",
)
def security_events(
    db: duckdb.DuckDBPyConnection = Depends(read_cursor),
    principal: Principal = Depends(require_scope("read")),
    team: list[str] | None = TeamQ,
    notebook_id: list[str] | None = NotebookQ,
    kind: list[str] | None = Query(None, description=f"Kind(s): {', '.join(KINDS)}", examples=["secret_detected"]),
    since: str | None = SinceQ,
    until: str | None = UntilQ,
    limit: int = LimitQ,
    after: str | None = AfterQ,
) -> SecurityPage:
    kinds = _multi(kind)
    _check_values("kind", kinds, KINDS)
    w = Where()
    w.add("(type IN ('notebook.security.secret_detected', 'notebook.security.access_denied') OR redactions > 0)")
    w.any_of("team", scoped_teams(principal, _multi(team)))
    w.any_of("notebook_id", _multi(notebook_id))
    w.any_of(_SECURITY_KIND, kinds)
    rows, nxt = _newest_events(
        db, w, f"time, {_SECURITY_KIND} AS kind, type, team, owner, notebook_id, data->>'detector' AS detector,"
        " data->>'location' AS location, data->>'principal' AS principal, data->>'resource' AS resource,"
        " data->>'action' AS action, redactions", "events", since, until, after, limit)
    return SecurityPage(items=[SecurityEvent(**r) for r in rows], next_after=nxt)
