"""Cost over HTTP (read scope): ``GET /v1/cost/...``. A team-scoped token sees only its team (other teams, their
unallocated share and the invoices are left out); asking for another team is 403."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from collector.api.auth import Principal, require_scope
from collector.api.deps import multi, parse_time, read_cursor, scoped_teams
from collector.engines import select as engine_select
from cost import budget
from cost.config import CostSettings
from cost.errors import CostInputError
from cost.reports import data, export

router = APIRouter(prefix="/v1/cost", tags=["cost"])
TAG = {"name": "cost", "description": "Billing-based cost: monthly reports, cost per run, budgets and forecast, "
                                      "month-over-month variance, sync status."}
MEDIA = {"html": "text/html", "csv": "text/csv", "parquet": "application/vnd.apache.parquet",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "focus": "application/vnd.apache.parquet"}
# month, by and format are checked by cost/reports (a sentence naming the field and an example, not a regex)
MONTH = Query(None, description="billing month YYYY-MM (default: the current month, compared like for like with "
                                "the same days of the previous month)", examples=["2026-11"])
BY = Query("team", description="team | notebook | service")


def settings_of(request: Request) -> CostSettings:
    """The cost section of the collector's settings (a test may set app.state.cost_settings instead)."""
    s = getattr(request.app.state, "cost_settings", None)
    return s if s is not None else request.app.state.settings.cost


TEAM = Query(None, description="only these teams: repeated or comma-separated (`team=a,b`, Grafana's "
                                "`${team:csv}`); `__unallocated__` is the cost no tag attributes")
AS_OF = Query(None, description="the moment to answer for (RFC 3339 or epoch ms; default now): the running month "
                                "is month to date at it, the previous month is cut at the same day and time",
              examples=["2026-11-21T09:00:00Z"])


@dataclass(frozen=True)
class Ask:
    """What every cost read takes: the moment, the teams (narrowed to a team-scoped token's), the settings."""

    as_of: datetime
    teams: list[str]
    settings: CostSettings


def ask(request: Request, team: list[str] | None = TEAM, as_of: str | None = AS_OF,
        principal: Principal = Depends(require_scope("read"))) -> Ask:
    return Ask(parse_time(as_of, "as_of") or datetime.now(timezone.utc), scoped_teams(principal, multi(team)),
               settings_of(request))


def _month(month: str | None, a: Ask) -> str:
    return data.check_month(month) if month is not None else budget.current_month(a.as_of)


def _report(request: Request, month: str, by: str, a: Ask) -> data.CostReport:
    """CostNotFound (unknown team) answers 404 and CostInputError 422, through collector/api/errors.py."""
    with engine_select.reading(request.app.state.store) as cur:  # OBSERVATORY_ENGINE / OBSERVATORY_LAKE
        return data.build(cur, month, by, settings=a.settings, team=a.teams, as_of=a.as_of)


@router.get("/summary")
def summary(request: Request, month: str | None = MONTH, by: str = BY, a: Ask = Depends(ask)) -> dict:
    """The whole monthly report as JSON: totals by the dimension, month-over-month change (with the periods
    compared), budgets and forecast, top drivers, unallocated share, cost per run, invoice reconciliation."""
    return data.to_jsonable(_report(request, _month(month, a), by, a))


RUNS_EXAMPLE = {
    "month": "2026-11", "runs": 2, "cost_per_run": "5", "underived_run_attempts": 0,
    "items": [{"run_id": "r-2", "team": "ml", "notebook_id": "nb-m", "direct": "0", "proportional": "6", "cost": "6"},
              {"run_id": "r-1", "team": "finance", "notebook_id": "nb-f", "direct": "4", "proportional": "0",
               "cost": "4"}],
    "notes": ["No billing data for 2026-10, so there is no month-over-month change."],
}


@router.get("/runs", responses={200: {"content": {"application/json": {"example": RUNS_EXAMPLE}}}})
def runs(request: Request, month: str | None = MONTH, limit: int = Query(100, ge=1, le=10000),
         a: Ask = Depends(ask)) -> dict:
    """Cost per run for the billing month, most expensive first: a run's whole allocated cost (direct lines plus
    its proportional share of notebook- and team-tagged lines); SLI M4 is the mean of these over the runs that
    ended in its window.

    `underived_run_attempts` counts the month's run attempts (of the token's team, for a team token) held in
    ingest batches the collector stored but could not derive (`GET /v1/derive/failures`): normally 0. While it is
    not, those runs get no share of the notebook- and team-tagged lines, which the other runs get instead, and
    `notes` says so, as every report of the month does."""
    r = _report(request, _month(month, a), "team", a)
    out = data.to_jsonable(r)
    return {"month": r.month, "runs": r.summary["runs"], "cost_per_run": out["summary"]["cost_per_run"],
            "underived_run_attempts": r.summary["underived_run_attempts"], "items": out["cost_per_run"][:limit],
            "notes": r.notes}


@router.get("/variance")
def variance(request: Request, month: str | None = MONTH, a: Ask = Depends(ask)) -> dict:
    """Month-over-month change of cost per allocated team (the definition of cost/variance.py, the same figure as
    SLI M10 and the gauge `notebook_cost_month_over_month_ratio` - 1), with the periods compared and the top
    drivers."""
    r = _report(request, _month(month, a), "team", a)
    out = data.to_jsonable(r)
    return {"month": r.month, "previous_month": r.previous_month, "current_period": out["periods"]["current"],
            "previous_period": out["periods"]["previous"], "teams": out["by_team"], "drivers": out["drivers"],
            "notes": out["notes"]}


@router.get("/budgets")
def budgets(request: Request, month: str | None = MONTH, a: Ask = Depends(ask)) -> dict:
    """Month to date, forecast to month end and budget per team."""
    r = _report(request, _month(month, a), "team", a)
    return {"month": r.month, "budgets": data.to_jsonable(r)["budgets"]}


@router.get("/trend")
def trend(request: Request, months: int = Query(12, ge=1, le=36, description="how many billing months, the "
                                                                           "running one included"),
          a: Ask = Depends(ask)) -> dict:
    """Allocated cost per billing month and team over the last `months` months (the running month is month to
    date and says how many days it covers): the cost trend of the executive dashboard."""
    with request.app.state.store.read_cursor() as cur:
        data.check_teams(cur, a.teams, a.settings)
        return data.trend(cur, months, a.as_of, a.teams)


@router.get("/report")
def report(request: Request, month: str | None = Query(None, description="billing month YYYY-MM (default: the "
                                                                       "last closed month)", examples=["2026-11"]),
           by: str = BY, format: str = Query("html", description="csv | parquet | xlsx | html | focus"),
           a: Ask = Depends(ask)) -> Response:
    """The report as a file (CSV and Parquet: the main table; XLSX and HTML: everything; focus: FOCUS 1.2 lines).
    Like `observatory report cost`, it defaults to the last closed month."""
    month = data.check_month(month) if month is not None else data.last_closed_month(a.as_of)
    data.check_by(by)
    if format not in MEDIA:
        raise CostInputError(f"format must be one of {', '.join(MEDIA)}; got {format!r}")
    suffix = {"focus": ".parquet"}.get(format, "." + format)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"cost-{month}{suffix}"
        with request.app.state.store.read_cursor() as cur:
            paths = export.write_report(cur, month, by, format, out, settings=a.settings, team=a.teams,
                                        as_of=a.as_of)
        body = paths[0].read_bytes()
    name = f"cost-{month}-by-{by}{suffix}" if format != "focus" else f"focus-{month}.parquet"
    return Response(body, media_type=MEDIA[format], headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/sync")
def sync_state(principal: Principal = Depends(require_scope("read")),
               cur: duckdb.DuckDBPyConnection = Depends(read_cursor)) -> dict:
    """Last import/sync per billing source and the partitions loaded."""
    syncs = cur.execute("SELECT source, target, last_sync_at, last_status, detail FROM cost_sync_state "
                        "ORDER BY source, target").fetchall()
    parts = cur.execute("SELECT source, count(*), sum(row_count), max(updated_at) FROM cost_partitions "
                        "GROUP BY 1 ORDER BY 1").fetchall()
    now = datetime.now(timezone.utc)
    return {"sources": [{"source": s, "target": t if principal.team is None else None,
                         "last_sync_at": a.isoformat(), "age_seconds": (now - a).total_seconds(), "status": st,
                         "detail": d if principal.team is None else None} for s, t, a, st, d in syncs],
            "partitions": [{"source": s, "partitions": n, "lines": int(rows or 0),
                            "updated_at": u.isoformat() if u else None} for s, n, rows, u in parts]}


__all__ = ["router", "TAG"]
