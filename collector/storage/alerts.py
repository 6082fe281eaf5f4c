"""The `alertmanager_alerts` table: alert instances (fingerprint, startsAt) as Alertmanager delivered them.

Written by the webhook route through the writer (`upsert_alerts`); read by the pages endpoint and by the SLI
engine for M13 (`pages_count`), with bound parameters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

PAGE_COLUMNS = ("fingerprint", "starts_at", "ends_at", "status", "alertname", "team", "notebook", "owner", "slo",
                "category", "summary", "runbook_url", "receiver", "notifications")


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


def pages_by_team(cur: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> dict[str | None, int]:
    """`pages_count` for every team at once (key None: all teams): one statement per window, which is what an
    engine with a per-statement cost (Spark, BigQuery) needs."""
    rows = cur.execute(
        "SELECT team, GROUPING(team) AS g, count(*) FROM alertmanager_alerts "
        "WHERE severity = 'page' AND starts_at >= ? AND starts_at < ? GROUP BY GROUPING SETS ((), (team))",
        [since, until]).fetchall()
    return {(None if g else team): int(n) for team, g, n in rows if g or team is not None}


def list_pages(cur: duckdb.DuckDBPyConnection, since: datetime, until: datetime, team: str | None,
               limit: int) -> list[dict[str, Any]]:
    """The pages that started in [since, until), most recent first."""
    sql = (f"SELECT {', '.join(PAGE_COLUMNS)} FROM alertmanager_alerts "
           "WHERE severity = 'page' AND starts_at >= ? AND starts_at < ?")
    params: list[Any] = [since, until]
    if team is not None:
        sql += " AND team = ?"
        params.append(team)
    rows = cur.execute(sql + " ORDER BY starts_at DESC, fingerprint LIMIT ?", [*params, limit]).fetchall()
    return [dict(zip(PAGE_COLUMNS, r)) for r in rows]
