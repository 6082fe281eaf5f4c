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
