"""Read queries that parts outside storage need, with bound parameters (the routes and the SLI engine call these
instead of writing SQL against storage tables themselves)."""

from __future__ import annotations

from datetime import datetime

import duckdb

# The last batch up to which every batch's derived rows are committed: the one before the first batch not derived
# yet, else the last batch. The writer commits a request's events first and folds them into the derived tables in
# a later transaction (collector/ingest/writer.py); readers that keep state by batch (the SLI fold, the lake export)
# read events up to it, never past, so what they keep agrees with the derived tables of the same snapshot.
# One scan of the table (the SLI fold runs it every refresh: two subqueries cost 0.35 ms more at 10M events).
DERIVED_THROUGH_OF = "coalesce(min(batch_id) FILTER (WHERE NOT derived) - 1, max(batch_id), 0)"  # (an aggregate)
DERIVED_THROUGH = f"SELECT {DERIVED_THROUGH_OF} FROM ingest_batches"

# The events that make run attempts, and an event's attempt, as the deriver decides them (collector/storage/batch.py:
# `_RUN_FILTER`, the attempt defaulting to 1): what SQL that counts run attempts from stored events must agree with.
RUN_EVENT = "run_id IS NOT NULL AND type LIKE 'notebook.run.%'"
ATTEMPT = "coalesce(attempt, 1)"
# The events of the batches $batches (sorted; `batch_params`): the range between the first and the last lets the
# scan skip row groups by their statistics, the list keeps the batches between them out.
IN_BATCHES = "batch_id BETWEEN $lo AND $hi AND list_contains($batches, batch_id)"


# The run attempts of the batches $batches (IN_BATCHES), as the deriver would make them, each with its events' first
# and last time there and the team, notebook and trigger of its latest event ('unknown' for a missing team or
# trigger, as in every SLI). What the reads that say what they miss count, one definition for all of them
# (slo/sli/underived.py: the SLIs; collector/ingest/rederive.py: the cost reports, the listing of runs). `{where}`:
# more conditions on the events (` AND ...`).
HELD_ATTEMPTS = f"""
SELECT run_id, {ATTEMPT} AS attempt, min(time) AS first_t, max(time) AS last_t,
       arg_max(coalesce(team, 'unknown'), time) AS team, arg_max(notebook_id, time) AS notebook_id,
       arg_max(coalesce(trigger, 'unknown'), time) AS trigger
FROM events WHERE {IN_BATCHES} AND {RUN_EVENT}{{where}}
GROUP BY run_id, {ATTEMPT}
"""


def batch_params(batches: list[int]) -> dict[str, object]:
    """IN_BATCHES' parameters for a non-empty sorted list of batch ids."""
    return {"batches": batches, "lo": batches[0], "hi": batches[-1]}


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
