"""`run_attempts` and `notebooks` rebuilt whole from the (deduplicated) events of the lake, one statement each.

The collector maintains the same two tables incrementally, batch by batch, from the typed columns its validator
produces (collector/storage/batch.py aggregates a batch in polars, collector/storage/derive.py upserts it). Over
the lake there are no batches and no typed columns, only the stored events: the same definitions are written here
as set-based DuckDB SQL over `events` (JSON fields read with `->>`), which the engines transpile. The two are held
to each other by tests/engines (every SLI over the lake equals the collector's on the same events).
"""

from __future__ import annotations

TERMINAL_SQL = "('notebook.run.succeeded','notebook.run.failed','notebook.run.timed_out','notebook.run.cancelled')"
OUTCOME_SQL = "replace(type, 'notebook.run.', '')"

RUN_ATTEMPTS = f"""
WITH agg AS (
    SELECT
        run_id,
        coalesce(attempt, 1) AS attempt,
        arg_min(notebook_id, time) FILTER (WHERE notebook_id IS NOT NULL) AS notebook_id,
        arg_min(team, time) FILTER (WHERE team IS NOT NULL) AS team,
        arg_min(owner, time) FILTER (WHERE owner IS NOT NULL) AS owner,
        arg_min(trigger, time) FILTER (WHERE trigger IS NOT NULL) AS trigger,
        arg_min(environment, time) FILTER (WHERE environment IS NOT NULL) AS environment,
        min(time) FILTER (WHERE type = 'notebook.run.queued') AS queued_at,
        min(time) FILTER (WHERE type = 'notebook.run.started') AS started_at,
        min(TRY_CAST((data->>'scheduled_for') AS TIMESTAMPTZ)) AS scheduled_for,
        arg_max({{
            ended_at: time,
            event_id: id,
            state: {OUTCOME_SQL},
            duration_seconds: TRY_CAST((data->>'duration_seconds') AS DOUBLE),
            error_type: (data->>'error_type'),
            error_message: (data->>'error_message'),
            output_hash: (data->>'output_hash'),
            input_hash: (data->>'input_hash'),
            parameters_hash: (data->>'parameters_hash'),
            env_hash: (data->>'env_hash'),
            cpu_seconds: TRY_CAST((data->>'cpu_seconds') AS DOUBLE),
            max_memory_bytes: TRY_CAST((data->>'max_memory_bytes') AS BIGINT),
            cells: (data->'cells')
        }}, (time, id)) FILTER (WHERE type IN {TERMINAL_SQL}) AS term,
        count(*) FILTER (WHERE type IN {TERMINAL_SQL}) AS terminal_events,
        min(time) AS first_seen_at,
        max(time) AS last_event_at
    FROM events
    WHERE run_id IS NOT NULL AND type LIKE 'notebook.run.%'
    GROUP BY run_id, coalesce(attempt, 1)
)
SELECT
    run_id, attempt, notebook_id, team, owner, trigger, environment,
    coalesce(term.state, CASE WHEN started_at IS NOT NULL THEN 'started' ELSE 'queued' END) AS state,
    queued_at, started_at, scheduled_for,
    term.ended_at AS ended_at, term.duration_seconds AS duration_seconds,
    term.error_type AS error_type, term.error_message AS error_message,
    term.output_hash AS output_hash, term.input_hash AS input_hash,
    term.parameters_hash AS parameters_hash, term.env_hash AS env_hash,
    term.cpu_seconds AS cpu_seconds, term.max_memory_bytes AS max_memory_bytes, term.cells AS cells,
    terminal_events, term.event_id AS terminal_event_id, first_seen_at, last_event_at,
    CAST(NULL AS BIGINT) AS updated_batch, CAST(NULL AS BIGINT) AS first_batch
FROM agg
"""

# field -> SQL of its value in an event; each field keeps the value of the newest event (by time, then id) that set it.
_REGISTRY_FIELDS = {
    "owner": "owner",
    "team": "team",
    "notebook_path": "(data->>'notebook_path')",
    "tags": "(data->'tags')",
    "critical": "TRY_CAST((data->>'critical') AS BOOLEAN)",
    "has_tests": "TRY_CAST((data->>'has_tests') AS BOOLEAN)",
    "created_at": "TRY_CAST((data->>'created_at') AS TIMESTAMPTZ)",
}
_REGISTRY_TYPES = "('notebook.registered', 'notebook.updated')"
NOTEBOOKS = f"""
SELECT
    notebook_id,
    {", ".join(
        f"arg_max({expr}, (time, id)) FILTER (WHERE {expr} IS NOT NULL AND type IN {_REGISTRY_TYPES}) AS {f}, "
        f"max(time) FILTER (WHERE {expr} IS NOT NULL AND type IN {_REGISTRY_TYPES}) AS {f}_at"
        for f, expr in _REGISTRY_FIELDS.items())},
    min(time) FILTER (WHERE type = 'notebook.registered') AS registered_at,
    min(time) FILTER (WHERE type = 'notebook.promoted') AS promoted_at,
    max(time) AS updated_at
FROM events
WHERE notebook_id IS NOT NULL AND type IN ('notebook.registered', 'notebook.updated', 'notebook.promoted')
GROUP BY notebook_id
"""
