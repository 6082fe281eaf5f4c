"""GET /v1/sli: the platform SLIs (M1-M15) computed in DuckDB (slo/sli/), at any moment (`as_of`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from collector.api.auth import Principal, require_scope
from collector.api.deps import get_store, scoped_team
from collector.api.errors import BadRequest
from collector.ingest.store import Store

router = APIRouter(tags=["slis"])


class Provenance(BaseModel):
    definition_version: str = Field(description="`<sli>/<definition version>`: which formula of docs/sli.md")
    event_time_from: str | None = Field(description="Start of the event-time range counted (inclusive); "
                                                    "null for snapshots taken at as_of (M7, M9, M10, M15)")
    event_time_to: str = Field(description="End of the event-time range (exclusive) = as_of")
    mode: Literal["incremental", "direct"]
    folded_through_batch: int | None = Field(description="Last ingest batch reflected (incremental mode)")


class SliRow(BaseModel):
    sli: str = Field(description="SLI id, M1..M15")
    name: str
    window: str
    team: str | None = Field(description="null: all teams")
    notebook_id: str | None = Field(description="null: all notebooks")
    trigger: str | None = Field(description="M1 only; null: all triggers")
    stat: str = Field(description="ratio, mean/p50/p95/p99 (M3), per_run (M4), count (M5, M13), "
                                  "per_1000_sessions (M11), median (M14), mom_change (M10), max_age_seconds (M7)")
    value: float | None = Field(description="null when the SLI has no events in its window (absent), never NaN")
    good: int | None = Field(description="good items (ratios)")
    bad: int | None = Field(description="bad items (ratios; crashes for M11)")
    total: int | None = Field(description="items counted (denominator, or n behind a statistic)")
    unit: str
    absent_reason: str | None = None
    details: Any = Field(None, description="M7 per notebook: age of every artifact; M10: the two periods")
    provenance: Provenance


class SliResponse(BaseModel):
    as_of: str
    window: list[str]
    slis: list[SliRow]


EXAMPLE = {
    "as_of": "2026-11-21T09:00:00+00:00",
    "window": ["1d"],
    "slis": [
        {"sli": "M1", "name": "run_success_rate", "window": "1d", "team": "finance", "notebook_id": None,
         "trigger": None, "stat": "ratio", "value": 0.95, "good": 38, "bad": 2, "total": 40, "unit": "ratio",
         "provenance": {"definition_version": "M1/2026-11-21.1", "event_time_from": "2026-11-20T09:00:00+00:00",
                        "event_time_to": "2026-11-21T09:00:00+00:00", "mode": "incremental",
                        "folded_through_batch": 812}},
        {"sli": "M3", "name": "execution_time", "window": "1d", "team": "finance", "notebook_id": None,
         "trigger": None, "stat": "p95", "value": 412.7, "good": None, "bad": None, "total": 38, "unit": "seconds",
         "provenance": {"definition_version": "M3/2026-11-21.1", "event_time_from": "2026-11-20T09:00:00+00:00",
                        "event_time_to": "2026-11-21T09:00:00+00:00", "mode": "incremental",
                        "folded_through_batch": 812}},
        {"sli": "M4", "name": "cost_per_run", "window": "1d", "team": None, "notebook_id": None, "trigger": None,
         "stat": "per_run", "value": None, "good": None, "bad": None, "total": None, "unit": "USD",
         "absent_reason": "no billing data allocated to runs",
         "provenance": {"definition_version": "M4/2026-11-21.1", "event_time_from": "2026-11-20T09:00:00+00:00",
                        "event_time_to": "2026-11-21T09:00:00+00:00", "mode": "incremental",
                        "folded_through_batch": 812}},
    ],
}


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


@router.get(
    "/v1/sli",
    summary="Platform SLIs (M1-M15) per window, team, notebook and trigger",
    description=(
        "Computes the SLIs of docs/sli.md on **event time** over windows ending at `as_of` (default: now): "
        "window = [as_of - W, as_of). Late and out-of-order events count in the window they belong to, so asking "
        "again about a past `as_of` after late events arrived can give a different (more complete) answer.\n\n"
        "Rows: one per SLI, window and scope. Scopes: the platform (team, notebook_id and trigger null), each "
        "team, each notebook (`level=notebook` or a `notebook_id` filter), and each trigger for M1. Ratios carry "
        "`good`, `bad` and `total`; M3 gives four rows (`stat` mean, p50, p95, p99, seconds). An SLI with no "
        "events in its window is **absent**: no row for an unfiltered team, and a row with `value: null` and an "
        "`absent_reason` for the platform and for the scope the filters name. A team-scoped token sees only its "
        "team.\n\nExamples: `/v1/sli?sli=M1&window=7d&level=trigger`, "
        "`/v1/sli?sli=execution_time&team=finance&as_of=2026-11-01T00:00:00Z`, "
        "`/v1/sli?notebook_id=nb-revenue&window=1d,30d`."
    ),
    response_model=SliResponse,
    response_model_exclude_none=False,
    responses={
        200: {"content": {"application/json": {"example": EXAMPLE}}},
        400: {"description": "unknown SLI, malformed window or as_of without a time zone"},
        401: {"description": "missing or invalid token"},
        403: {"description": "token lacks the `read` scope, or is limited to another team"},
    },
)
async def get_sli(
    request: Request,
    principal: Principal = Depends(require_scope("read")),
    store: Store = Depends(get_store),
    sli: list[str] | None = Query(None, description="SLI ids or names, repeated or comma-separated "
                                                    "(`M1`, `run_success_rate`); default all"),
    window: list[str] | None = Query(None, description="Windows (`1h`, `1d`, `7d`, `30d`, any `<n><s|m|h|d|w>`); "
                                                       "default the configured windows"),
    team: str | None = Query(None, description="Only this team"),
    notebook_id: str | None = Query(None, description="Only this notebook (notebook-level rows)"),
    trigger: Literal["scheduled", "manual", "api", "ci", "unknown"] | None = Query(
        None, description="Only this trigger (M1 rows per trigger)"),
    as_of: datetime | None = Query(None, description="RFC 3339 moment the windows end at; default now",
                                   examples=["2026-11-21T09:00:00Z"]),
    level: list[str] | None = Query(None, description="Scopes to return: platform, team, notebook, trigger "
                                                      "(repeated or comma-separated); default platform,team,trigger"),
) -> SliResponse:
    from slo.sli import sql as Q
    from slo.sli.compute import compute
    from slo.sli.config import DEFAULT_LEVELS, LEVELS, SliConfig, SliQuery, parse_window, resolve_sli

    cfg = getattr(request.app.state, "sli_config", None) or SliConfig()
    team = scoped_team(principal, team)
    if as_of is None:
        as_of = datetime.now(timezone.utc)
    elif as_of.tzinfo is None:
        raise BadRequest("as_of needs a time zone (RFC 3339, e.g. 2026-11-21T09:00:00Z)")
    try:
        windows = _split(window) or list(cfg.windows)
        for w in windows:
            parse_window(w)
        slis = [resolve_sli(s) for s in _split(sli)] or list(Q.SLIS)
        levels = tuple(_split(level)) or DEFAULT_LEVELS
        bad = set(levels) - set(LEVELS)
        if bad:
            raise ValueError(f"unknown level(s) {sorted(bad)}; use {', '.join(LEVELS)}")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if principal.team is not None:
        levels = tuple(lv for lv in levels if lv != "platform") or ("team",)
    q = SliQuery(as_of=as_of, windows=windows, slis=slis, team=team, notebook_id=notebook_id,
                        trigger=trigger, levels=levels)
    def run() -> list[dict]:
        with store.read_cursor() as cur:
            return compute(cur, q, cfg)

    rows = await run_in_threadpool(run)
    return SliResponse(as_of=as_of.astimezone(timezone.utc).isoformat(), window=windows, slis=rows)
