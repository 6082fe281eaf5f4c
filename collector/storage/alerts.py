"""The `alertmanager_alerts` table: alert instances (fingerprint, startsAt) as Alertmanager delivered them.

Written by the webhook route through the writer (`upsert_alerts`); read by the pages endpoint and by the SLI
engine for M13 (`pages_and_flaps`, `pages_and_flaps_by_team`), with bound parameters.
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


FLAP_WINDOW_SECONDS = 3600  # a page that fires again within this long after it resolved is a flap, not a new page

# Page instances up to $until with the end of the same alert's previous instance (NULL for its first); severity
# `critical` is a page too. The lag runs over the alert's whole history, so a flap is known whatever the window.
_PAGES_HEAD = """
WITH p AS (
    SELECT team, starts_at,
           lag(coalesce(ends_at, starts_at)) OVER (PARTITION BY fingerprint ORDER BY starts_at) AS prev_end
    FROM alertmanager_alerts
    WHERE severity IN ('page', 'critical') AND starts_at < $until
)
"""
# An instance that starts within the flap window after the same alert's previous instance ended
_FLAP = "(prev_end IS NOT NULL AND starts_at <= prev_end + to_seconds($flap))"


def pages_and_flaps(cur: duckdb.DuckDBPyConnection, since: datetime, until: datetime,
                    team: str | None = None) -> tuple[int, int]:
    """SLI M13: (pages, flaps) that started in [since, until), optionally of one team.

    A page is an alert instance (fingerprint, start) with severity page or critical: repeats and the resolution of
    one firing are one instance. An instance that starts within `FLAP_WINDOW_SECONDS` after the same alert's
    previous instance ended (or while it still fired) is a flap of that page: counted under flaps, not as a new
    page, so a flapping SLI wakes someone once."""
    params: dict[str, Any] = {"since": since, "until": until, "flap": float(FLAP_WINDOW_SECONDS)}
    if team is not None:
        params["team"] = team
    sql = _PAGES_HEAD + (f"SELECT count(*) FILTER (WHERE NOT {_FLAP}), count(*) FILTER (WHERE {_FLAP}) "
                         f"FROM p WHERE starts_at >= $since {'AND team = $team' if team is not None else ''}")
    row = cur.execute(sql, params).fetchone()
    return int(row[0]), int(row[1])


def pages_count(cur: duckdb.DuckDBPyConnection, since: datetime, until: datetime, team: str | None = None) -> int:
    """SLI M13: pages that started in [since, until), flaps of an earlier page not counted (`pages_and_flaps`)."""
    return pages_and_flaps(cur, since, until, team)[0]


def pages_and_flaps_by_team(cur: duckdb.DuckDBPyConnection,
                            ranges: list[tuple[datetime, datetime]]) -> list[dict[str | None, tuple[int, int]]]:
    """`pages_and_flaps` for several [since, until) ranges at once, of every team and of all teams (key None): one
    statement instead of one per team and range (the SLI refresh asks for every team over every window, and an
    engine with a per-statement cost, Spark or BigQuery, runs it once)."""
    if not ranges:
        return []
    params: dict[str, Any] = {"since": min(a for a, _ in ranges), "until": max(b for _, b in ranges),
                              "flap": float(FLAP_WINDOW_SECONDS)}
    measures = []
    for i, (a, b) in enumerate(ranges):
        params[f"s{i}"], params[f"e{i}"] = a, b
        inside = f"starts_at >= $s{i} AND starts_at < $e{i}"
        measures += [f"count(*) FILTER (WHERE {inside} AND NOT {_FLAP}) AS p{i}",
                     f"count(*) FILTER (WHERE {inside} AND {_FLAP}) AS f{i}"]
    sql = _PAGES_HEAD + (f"SELECT team, grouping(team) AS all_teams, {', '.join(measures)} "
                         "FROM p WHERE starts_at >= $since GROUP BY GROUPING SETS ((), (team))")
    out: list[dict[str | None, tuple[int, int]]] = [{None: (0, 0)} for _ in ranges]
    for team, all_teams, *ns in cur.execute(sql, params).fetchall():
        if all_teams or team is not None:
            for i in range(len(ranges)):
                out[i][None if all_teams else team] = (int(ns[2 * i]), int(ns[2 * i + 1]))
    return out


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
