"""GET /v1/sli: the platform SLIs (M1-M15) computed in DuckDB (slo/sli/), at any moment (`as_of`)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from collector.api.auth import Principal, require_scope
from collector.api.deps import get_settings, identifier_param, parse_time, scoped_team
from collector.api.errors import BadRequest
from collector.api.reads import run_read
from collector.settings import Settings

router = APIRouter(tags=["slis"])
_WINDOW = re.compile(r"[0-9]{1,7}[smhdw]", re.ASCII)  # ASCII digits: `\d` and isdigit() admit other scripts


class Provenance(BaseModel):
    definition_version: str = Field(description="`<sli>/<definition version>`: which formula of docs/sli.md")
    event_time_from: str | None = Field(description="Start of the event-time range counted (inclusive); "
                                                    "null for snapshots taken at as_of (M7, M9, M10, M15)")
    event_time_to: str = Field(description="End of the event-time range (exclusive) = as_of")
    mode: Literal["incremental", "direct"]
    folded_through_batch: int | None = Field(description="Last ingest batch reflected (incremental mode)")
    underived_run_attempts: int | None = Field(
        None, description="SLIs over run attempts (M1-M4, M8): run attempts of this scope with an event in this "
                          "window in a batch the deriver gave up on and that was not derived again (waiting or "
                          "dismissed: `GET /v1/derive/failures`). 0 normally; more means the row misses at most "
                          "that many attempts. Always 0 on a lake engine, which rebuilds the run attempts from the "
                          "stored events. null for the other SLIs")


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
         "provenance": {"definition_version": "M1/2026-12-02.1", "event_time_from": "2026-11-20T09:00:00+00:00",
                        "event_time_to": "2026-11-21T09:00:00+00:00", "mode": "incremental",
                        "folded_through_batch": 812, "underived_run_attempts": 0}},
        {"sli": "M3", "name": "execution_time", "window": "1d", "team": "finance", "notebook_id": None,
         "trigger": None, "stat": "p95", "value": 412.7, "good": None, "bad": None, "total": 38, "unit": "seconds",
         "provenance": {"definition_version": "M3/2026-12-02.1", "event_time_from": "2026-11-20T09:00:00+00:00",
                        "event_time_to": "2026-11-21T09:00:00+00:00", "mode": "incremental",
                        "folded_through_batch": 812, "underived_run_attempts": 0}},
        {"sli": "M4", "name": "cost_per_run", "window": "1d", "team": None, "notebook_id": None, "trigger": None,
         "stat": "per_run", "value": None, "good": None, "bad": None, "total": None, "unit": "USD",
         "absent_reason": "no billing data allocated to runs",
         "provenance": {"definition_version": "M4/2026-12-02.1", "event_time_from": "2026-11-20T09:00:00+00:00",
                        "event_time_to": "2026-11-21T09:00:00+00:00", "mode": "incremental",
                        "folded_through_batch": 812, "underived_run_attempts": 0}},
    ],
}


def _split(values: list[str] | None, name: str, most: int) -> list[str]:
    """Repeated and comma-separated values; more than `most` (or an absurdly long one) is a 400 naming `name`."""
    out: list[str] = []
    for v in values or []:
        out += [p.strip() for p in v.split(",") if p.strip()]
        if len(out) > most:
            raise BadRequest(f"`{name}`: at most {most} values per request")
    if any(len(p) > 64 for p in out):
        raise BadRequest(f"`{name}`: a value is longer than 64 characters")
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
        "team.\n\nRows of the SLIs over run attempts (M1-M4, M8) say in `provenance.underived_run_attempts` how "
        "many of their scope's run attempts sit in batches the deriver gave up on (docs/reliability.md): 0 "
        "normally.\n\nExamples: `/v1/sli?sli=M1&window=7d&level=trigger`, "
        "`/v1/sli?sli=execution_time&team=finance&as_of=2026-11-01T00:00:00Z`, "
        "`/v1/sli?notebook_id=nb-revenue&window=1d,30d`."
    ),
    response_model=SliResponse,
    response_model_exclude_none=False,
    responses={
        200: {"content": {"application/json": {"example": EXAMPLE}}},
        400: {"description": "unknown SLI or level, malformed window, too many or too long windows, as_of "
                             "without a time zone or out of range; the message names the parameter"},
        503: {"description": "the computation ran past `OBSERVATORY_READ_TIMEOUT_SECONDS` and was interrupted"},
        401: {"description": "missing or invalid token"},
        403: {"description": "token lacks the `read` scope, or is limited to another team"},
    },
)
async def get_sli(
    request: Request,
    principal: Principal = Depends(require_scope("read")),
    settings: Settings = Depends(get_settings),
    sli: list[str] | None = Query(None, description="SLI ids or names, repeated or comma-separated "
                                                    "(`M1`, `run_success_rate`); default all"),
    window: list[str] | None = Query(None, description="Windows (`1h`, `1d`, `7d`, `30d`, any `<n><s|m|h|d|w>`); "
                                                       "default the configured windows; at most "
                                                       "`OBSERVATORY_SLI_MAX_WINDOWS` (8) of at most "
                                                       "`OBSERVATORY_SLI_MAX_WINDOW_DAYS` (400) days"),
    team: str | None = Query(None, max_length=128, description="Only this team"),
    notebook_id: str | None = Query(None, max_length=256, description="Only this notebook (notebook-level rows)"),
    trigger: Literal["scheduled", "manual", "api", "ci", "unknown"] | None = Query(
        None, description="Only this trigger (M1 rows per trigger)"),
    as_of: str | None = Query(None, description="RFC 3339 moment the windows end at (with a time zone), "
                                                "1970-01-01 to 2200-01-01; default now",
                              examples=["2026-11-21T09:00:00Z"]),
    level: list[str] | None = Query(None, description="Scopes to return: platform, team, notebook, trigger "
                                                      "(repeated or comma-separated); default platform,team,trigger"),
) -> SliResponse:
    from slo.sli import sql as Q
    from collector.engines import select as engine_select
    from slo.sli.compute import compute
    from slo.sli.config import DEFAULT_LEVELS, LEVELS, SliQuery, parse_window, resolve_sli

    cfg = getattr(request.app.state, "sli_config", None) or request.app.state.settings.sli
    team = scoped_team(principal, team)
    notebook_id = identifier_param(notebook_id, "notebook_id")
    moment = _as_of(as_of)
    windows = _split(window, "window", settings.sli_max_windows) or list(cfg.windows)
    if len(windows) > settings.sli_max_windows:
        raise BadRequest(f"`window`: at most {settings.sli_max_windows} windows per request")
    max_seconds = settings.sli_max_window_days * 86400
    try:
        for w in windows:
            if not _WINDOW.fullmatch(w):
                raise ValueError(f"not a window: {w!r} (use e.g. 1h, 1d, 7d, 30d)")
            if parse_window(w) > max_seconds:
                raise ValueError(f"at most {settings.sli_max_window_days:g} days")
    except ValueError as exc:
        raise BadRequest(f"`window`: {exc}") from None
    try:
        slis = [resolve_sli(s) for s in _split(sli, "sli", 64)] or list(Q.SLIS)
    except ValueError as exc:
        raise BadRequest(f"`sli`: {exc}") from None
    levels = tuple(_split(level, "level", 16)) or DEFAULT_LEVELS
    bad = set(levels) - set(LEVELS)
    if bad:
        raise BadRequest(f"`level`: unknown level(s); use {', '.join(LEVELS)}")
    if principal.team is not None:
        levels = tuple(lv for lv in levels if lv != "platform") or ("team",)
    q = SliQuery(as_of=moment, windows=list(dict.fromkeys(windows)), slis=slis, team=team,
                        notebook_id=notebook_id, trigger=trigger, levels=tuple(dict.fromkeys(levels)))
    engine = engine_select.EngineSettings()
    if engine_select.uses_lake(engine):  # OBSERVATORY_ENGINE / OBSERVATORY_LAKE: computed on the lake (docs/scale.md)
        from starlette.concurrency import run_in_threadpool

        rows = await run_in_threadpool(engine_select.sli_rows, None, q, cfg, engine)
    else:
        rows = await run_read(request, lambda cur: compute(cur, q, cfg), timeout=settings.read_timeout_seconds)
    return SliResponse(as_of=moment.isoformat(), window=windows, slis=rows)


def _as_of(value: str | None) -> datetime:
    if value is None or value == "":
        return datetime.now(timezone.utc)
    try:
        moment = parse_time(value, "as_of")
    except BadRequest as exc:
        raise BadRequest(str(exc)) from None  # this endpoint answers 400 for every bad parameter
    assert moment is not None
    v = value.strip()
    if not (v.lstrip("-").isdigit() or v[-1:] in "Zz" or "+" in v[10:] or "-" in v[10:]):
        raise BadRequest("`as_of`: needs a time zone (RFC 3339, e.g. 2026-11-21T09:00:00Z)")
    return moment
