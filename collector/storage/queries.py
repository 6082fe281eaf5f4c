"""Read queries that parts outside storage need, with bound parameters (the routes and the SLI engine call these
instead of writing SQL against storage tables themselves)."""

from __future__ import annotations

from datetime import datetime

import duckdb


def openlineage_attempts(cur: duckdb.DuckDBPyConnection, source: str,
                         run_id: str) -> list[tuple[str, int, datetime | None]]:
    """(OpenLineage runId, attempt number, START time) of a logical run's stored attempts."""
    return cur.execute(
        "SELECT data->>'openlineage_run_id' AS ol, min(attempt), "
        "min(time) FILTER (WHERE type = 'notebook.run.started') "
        "FROM events WHERE source = ? AND run_id = ? AND type LIKE 'notebook.run.%' GROUP BY ALL",
        [source, run_id],
    ).fetchall()


def foreign_entities(cur: duckdb.DuckDBPyConnection, team: str, notebook_ids: list[str], run_ids: list[str],
                     kernel_ids: list[str]) -> dict[str, set[str]]:
    """Of the given notebooks, runs and kernels, those stored as belonging to a team other than `team`
    (what a team-scoped ingest token may not change), by kind: {"notebook_id": {...}, "run_id": ..., ...}."""
    out: dict[str, set[str]] = {"notebook_id": set(), "run_id": set(), "kernel_id": set()}
    for kind, table, ids in (("notebook_id", "notebooks", notebook_ids), ("run_id", "run_attempts", run_ids),
                             ("kernel_id", "kernel_sessions", kernel_ids)):
        if ids:
            rows = cur.execute(
                f"SELECT DISTINCT {kind} FROM {table} WHERE {kind} IN (SELECT unnest(?)) "
                "AND team IS NOT NULL AND team <> ?", [ids, team]).fetchall()
            out[kind] = {r[0] for r in rows}
    return out
