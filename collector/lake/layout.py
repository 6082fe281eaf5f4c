"""The lake's layout, written once: which collector tables are exported, how each is partitioned, how a
partition's rows are selected, how a changed partition is found, and what identifies a row across collectors.

    <lake>/events/event_date=2026-11-01/<collector>.parquet          raw events by event date (UTC)
    <lake>/run_attempts/first_seen_date=2026-11-01/<collector>.parquet run attempts by the date first seen
    <lake>/alertmanager_alerts/start_date=2026-11-01/<collector>.parquet alert instances by start date (M13)
    <lake>/cost_line_items/billing_period=2026-11/<collector>.parquet FOCUS lines by billing period
    <lake>/_manifests/<collector>.json                                what one collector has exported

Each collector writes only files named after itself, so several collectors share one lake without coordination;
a partition file is always the collector's whole partition (rewritten, never appended), so an export can be
repeated or interrupted at any point. Engines reading the lake deduplicate rows on `identity` (views.py).

Partition keys are strings (engines read them with type inference off). Events find their changed partitions by
writer batch (`batch_id` > the manifest's cursor): events are append-only. The other tables are updated in place,
so their partitions carry a fingerprint (row count plus a hash or the newest change marker) compared with the
manifest's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FORMAT = "observatory-lake/1"
MANIFESTS = "_manifests"
_COLLECTOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class LakeTable:
    name: str          # the directory in the lake = the relation engines see = the collector's table
    partition: str     # Hive partition key
    key: str           # SQL (DuckDB, on the collector's table, UTC session) of the partition value, VARCHAR
    rows: str          # SELECT of one partition's rows; `$part` = partition value, `$collector` = collector id
    identity: tuple[str, ...]  # what identifies one row across collectors
    newest: str        # ORDER BY (descending) that picks the row engines keep among duplicates of one identity
    changed: str       # "batch": partitions of rows with batch_id in ($lo, $hi]; "fingerprint": `fingerprint`
    fingerprint: str = ""  # SELECT key, fingerprint (VARCHAR) per partition, for `changed = "fingerprint"`


EVENT_COLUMNS = ("source, id, type, time, subject, team, owner, notebook_id, run_id, attempt, kernel_id, trigger, "
                 "environment, CAST(data AS VARCHAR) AS data, redactions, ingested_at, batch_id")

EVENTS = LakeTable(
    name="events", partition="event_date",
    key="strftime(time, '%Y-%m-%d')",
    rows=f"""SELECT {EVENT_COLUMNS}, $collector AS collector_id FROM events
             WHERE time >= CAST($part AS DATE) AND time < CAST($part AS DATE) + INTERVAL 1 DAY AND batch_id <= $hi
             ORDER BY time, source, id""",
    identity=("source", "id"), newest="ingested_at, collector_id",
    changed="batch",
)

_RUN_COLUMNS = ("run_id, attempt, notebook_id, team, owner, trigger, environment, state, queued_at, started_at, "
                "scheduled_for, ended_at, duration_seconds, error_type, error_message, output_hash, input_hash, "
                "parameters_hash, env_hash, cpu_seconds, max_memory_bytes, CAST(cells AS VARCHAR) AS cells, "
                "terminal_events, terminal_event_id, first_seen_at, last_event_at, updated_batch")
RUN_ATTEMPTS = LakeTable(
    name="run_attempts", partition="first_seen_date",
    key="strftime(first_seen_at, '%Y-%m-%d')",
    rows=f"""SELECT {_RUN_COLUMNS}, $collector AS collector_id FROM run_attempts
             WHERE first_seen_at >= CAST($part AS DATE) AND first_seen_at < CAST($part AS DATE) + INTERVAL 1 DAY
             ORDER BY first_seen_at, run_id, attempt""",
    identity=("run_id", "attempt"), newest="last_event_at, collector_id",
    changed="fingerprint",
    # updated_batch only grows, so any change to a partition raises its max or changes its count
    fingerprint="""SELECT strftime(first_seen_at, '%Y-%m-%d') AS k,
                          count(*) || ':' || coalesce(max(updated_batch), 0) AS fp
                   FROM run_attempts GROUP BY k""",
)

_ALERT_COLUMNS = ("fingerprint, starts_at, alertname, severity, category, team, notebook, owner, slo, service, "
                  "status, ends_at, receiver, runbook_url, summary, generator_url, CAST(labels AS VARCHAR) AS labels, "
                  "CAST(annotations AS VARCHAR) AS annotations, first_received_at, last_received_at, notifications")
ALERTS = LakeTable(
    name="alertmanager_alerts", partition="start_date",
    key="strftime(starts_at, '%Y-%m-%d')",
    rows=f"""SELECT {_ALERT_COLUMNS}, $collector AS collector_id FROM alertmanager_alerts
             WHERE starts_at >= CAST($part AS DATE) AND starts_at < CAST($part AS DATE) + INTERVAL 1 DAY
             ORDER BY starts_at, fingerprint""",
    identity=("fingerprint", "starts_at"), newest="last_received_at, collector_id",
    changed="fingerprint",
    fingerprint="""SELECT strftime(starts_at, '%Y-%m-%d') AS k,
                          count(*) || ':' || CAST(max(last_received_at) AS VARCHAR) AS fp
                   FROM alertmanager_alerts GROUP BY k""",
)

COSTS = LakeTable(
    name="cost_line_items", partition="billing_period",
    key="x_billing_month",
    # x_partition_updated_at: when the collector last replaced the line's billing partition; among collectors
    # that ingested the same billing partition, engines keep the most recent delivery's lines
    rows="""SELECT c.*, coalesce(p.updated_at, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS x_partition_updated_at,
                   $collector AS collector_id
            FROM cost_line_items c LEFT JOIN cost_partitions p ON p.partition = c.x_partition
            WHERE c.x_billing_month = $part
            ORDER BY c.x_partition, c."ChargePeriodStart", c."ResourceId", c."EffectiveCost\"""",
    identity=("x_partition",), newest="x_partition_updated_at, collector_id",
    changed="fingerprint",
    fingerprint="""SELECT x_billing_month AS k,
                          count(*) || ':' || CAST(bit_xor(hash(x_ingest_id, x_partition, x_team, x_notebook_id,
                              x_run_id, "EffectiveCost", "BilledCost", "ChargePeriodStart")) AS VARCHAR) AS fp
                   FROM cost_line_items WHERE x_billing_month IS NOT NULL GROUP BY k""",
)

TABLES: tuple[LakeTable, ...] = (EVENTS, RUN_ATTEMPTS, ALERTS, COSTS)
BY_NAME = {t.name: t for t in TABLES}


def check_collector_id(cid: str) -> str:
    if not _COLLECTOR_ID.match(cid):
        raise ValueError(f"collector id {cid!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter "
                         "or digit")
    return cid


def partition_dir(table: LakeTable, value: str) -> str:
    return f"{table.name}/{table.partition}={value}"


def file_key(table: LakeTable, value: str, collector_id: str) -> str:
    return f"{partition_dir(table, value)}/{collector_id}.parquet"


def manifest_key(collector_id: str) -> str:
    return f"{MANIFESTS}/{collector_id}.json"
