"""Cost over HTTP (read scope): ``GET /v1/cost/...``. A team-scoped token sees only its team (other teams, their
unallocated share and the invoices are left out); asking for another team is 403."""
from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path

import duckdb
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from collector.api.auth import Principal, require_scope
from collector.api.deps import read_cursor, scoped_team
from cost import budget
from cost.config import CostSettings, load_settings
from cost.reports import data, export

router = APIRouter(prefix="/v1/cost", tags=["cost"])
TAG = {"name": "cost", "description": "Billing-based cost: monthly reports, cost per run, budgets and forecast, "
                                      "month-over-month variance, sync status."}
MEDIA = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet", "focus": "application/vnd.apache.parquet",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "html": "text/html"}
MONTH = Query(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="billing month YYYY-MM (default: current)")


def settings_of(request: Request) -> CostSettings:
    s = getattr(request.app.state, "cost_settings", None)
    return s if s is not None else load_settings()


def _month(month: str | None) -> str:
    return month or budget.current_month()


def _report(request: Request, month: str, by: str, team: str | None) -> data.CostReport:
    with request.app.state.store.read_cursor() as cur:
        return data.build(cur, month, by, settings=settings_of(request), team=team)


@router.get("/summary")
def summary(request: Request, month: str | None = MONTH, by: str = Query("team", pattern="^(team|notebook|service)$"),
            team: str | None = None, principal: Principal = Depends(require_scope("read"))) -> dict:
    """The whole monthly report as JSON: totals by the dimension, month-over-month change, budgets and forecast,
    top drivers, unallocated share, cost per run, invoice reconciliation."""
    return data.to_jsonable(_report(request, _month(month), by, scoped_team(principal, team)))


@router.get("/runs")
def runs(request: Request, month: str | None = MONTH, team: str | None = None, limit: int = Query(100, ge=1, le=10000),
         principal: Principal = Depends(require_scope("read"))) -> dict:
    """Cost per run (M4) for the billing month, most expensive first."""
    r = _report(request, _month(month), "team", scoped_team(principal, team))
    out = data.to_jsonable(r)
    return {"month": r.month, "runs": r.summary["runs"], "cost_per_run": out["summary"]["cost_per_run"],
            "items": out["cost_per_run"][:limit]}


@router.get("/variance")
def variance(request: Request, month: str | None = MONTH, team: str | None = None,
             principal: Principal = Depends(require_scope("read"))) -> dict:
    """Month-over-month change of cost per team (M10), with the top drivers."""
    r = _report(request, _month(month), "team", scoped_team(principal, team))
    out = data.to_jsonable(r)
    return {"month": r.month, "previous_month": r.previous_month, "teams": out["by_team"], "drivers": out["drivers"]}


@router.get("/budgets")
def budgets(request: Request, month: str | None = MONTH, team: str | None = None,
            principal: Principal = Depends(require_scope("read"))) -> dict:
    """Month to date, forecast to month end and budget per team."""
    r = _report(request, _month(month), "team", scoped_team(principal, team))
    return {"month": r.month, "budgets": data.to_jsonable(r)["budgets"]}


@router.get("/report")
def report(request: Request, month: str | None = MONTH, by: str = Query("team", pattern="^(team|notebook|service)$"),
           format: str = Query("html", pattern="^(csv|parquet|xlsx|html|focus)$"), team: str | None = None,
           principal: Principal = Depends(require_scope("read"))) -> Response:
    """The report as a file (CSV and Parquet: the main table; XLSX and HTML: everything; focus: FOCUS 1.2 lines)."""
    month = _month(month)
    team = scoped_team(principal, team)
    suffix = {"focus": ".parquet"}.get(format, "." + format)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"cost-{month}{suffix}"
        with request.app.state.store.read_cursor() as cur:
            paths = export.write_report(cur, month, by, format, out, settings=settings_of(request), team=team)
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
