"""Every metric, recording-rule and label name the product exports or queries, in one place (as Sloth's
`pkg/common/conventions`). The exporter, the SLI and cost gauge sources, the rule generator (slo/rules/) and the
dashboards (dashboards/) import these names instead of spelling them out, so a rename is one edit and a typo is
an ImportError, not a silent empty panel.
"""

from __future__ import annotations

import functools
import re

# ---- counters persisted with the events (collector/metrics/counters.py) ---------------------------------------
RUN_ATTEMPTS_TOTAL = "notebook_run_attempts_total"
RUN_DURATION_SECONDS = "notebook_run_duration_seconds"  # histogram
KERNEL_SESSIONS_TOTAL = "notebook_kernel_sessions_total"
KERNEL_CRASHES_TOTAL = "notebook_kernel_crashes_total"
REPRODUCIBILITY_CHECKS_TOTAL = "notebook_reproducibility_checks_total"
QUALITY_CHECKS_TOTAL = "notebook_quality_checks_total"
SECRET_EXPOSURES_TOTAL = "notebook_secret_exposures_total"
PLATFORM_PROBES_TOTAL = "notebook_platform_probes_total"
EVENTS_INGESTED_TOTAL = "observatory_events_ingested_total"
EVENTS_REJECTED_TOTAL = "observatory_events_rejected_total"
EVENTS_DUPLICATE_TOTAL = "observatory_events_duplicate_total"

# ---- live process values (collector/ingest/store.py, collector/api/native.py) ---------------------------------
INGEST_QUEUE_DEPTH = "observatory_ingest_queue_depth"
LAST_EVENT_TIMESTAMP = "observatory_last_event_timestamp_seconds"
WRITER_LAST_COMMIT_SECONDS = "observatory_writer_last_commit_seconds"
# counter family name (exposed with _total): writer transactions that took the slower way, by reason (stored_key: a
# group read back for a key whose hash the dedup index holds; before_lookback: a derive done again exhaustively)
WRITER_TRANSACTIONS_REDONE = "observatory_writer_transactions_redone"
REDONE_REASONS = ("stored_key", "before_lookback")
WRITER_DERIVE_LAG_EVENTS = "observatory_writer_derive_lag_events"
# gauges: the writer's index of the stored events' keys, its dedup since migration 0217 (collector/ingest/keys.py)
WRITER_KEY_INDEX_KEYS = "observatory_writer_key_index_keys"
WRITER_KEY_INDEX_BYTES = "observatory_writer_key_index_bytes"
WRITER_DERIVE_FAILURES = "observatory_writer_derive_failures"  # counter family name (exposed with _total)
# gauge: batches given up on (their derived rows missing) and not derived again since (collector/ingest/rederive.py)
WRITER_UNDERIVED_BATCHES = "observatory_writer_underived_batches"
WRITER_DERIVER_WAIT_SECONDS = "observatory_writer_deriver_wait_seconds"  # counter family name (exposed with _total)
WRITER_TRANSACTION_SECONDS = "observatory_writer_transaction_duration_seconds"  # histogram, label stage
# from a 1,000-event commit (~5 ms) to a checkpoint's stall (~1 s) and a large derive pass (a few seconds)
WRITER_TRANSACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SQL_REFRESH_TIMESTAMP = "observatory_sql_refresh_timestamp_seconds"
# by `gauge_source` (collector/metrics/refresher.py): as Prometheus reports its rule groups
SQL_REFRESH_LAST_SUCCESS = "observatory_sql_refresh_last_success_timestamp_seconds"
SQL_REFRESH_LAST_DURATION = "observatory_sql_refresh_last_duration_seconds"
SQL_REFRESH_FAILURES = "observatory_sql_refresh_failures"  # counter family name (exposed with _total)
START_TIME = "observatory_start_time_seconds"
NATIVE_RECORDS_IGNORED = "observatory_native_records_ignored"  # counter family name (exposed with _total)
DUCKDB_MEMORY_BYTES = "observatory_duckdb_memory_bytes"  # by `tag`: what DuckDB holds it for (duckdb_memory())
DUCKDB_TEMPORARY_BYTES = "observatory_duckdb_temporary_bytes"  # spilled to the temp directory, by `tag`
DUCKDB_MEMORY_LIMIT_BYTES = "observatory_duckdb_memory_limit_bytes"
# the rest of the process's memory, read per scrape (collector/metrics/process_memory.py)
RESIDENT_MEMORY_BYTES = "observatory_resident_memory_bytes"  # by `kind`: anonymous, file, shared
MALLOC_BYTES = "observatory_malloc_bytes"  # glibc's heap by `state`: in_use, free
DUCKDB_ALLOCATOR_BYTES = "observatory_duckdb_allocator_bytes"  # DuckDB's jemalloc by `state`: in_use, free
ARROW_ALLOCATED_BYTES = "observatory_arrow_allocated_bytes"

# ---- SQL-backed gauges of the SLO area (slo/sli/gauges.py) ----------------------------------------------------
SLI_RATIO = "notebook_sli_ratio"
SLI_VALUE = "notebook_sli_value"
SLI_SNAPSHOT_TIMESTAMP = "notebook_sli_snapshot_timestamp_seconds"
SLI_UNDERIVED_RUN_ATTEMPTS = "notebook_sli_underived_run_attempts"  # what M1-M4 and M8 miss (slo/sli/underived.py)
ARTIFACT_AGE_SECONDS = "notebook_artifact_age_seconds"
ARTIFACTS_STALE = "notebook_artifacts_stale"
ARTIFACTS = "notebook_artifacts"
SCHEDULED_RUNS_MISSED = "notebook_scheduled_runs_missed"  # counter family name (exposed with _total)
SCHEDULED_SLOTS = "notebook_scheduled_slots"  # counter family name (exposed with _total): due cron slots by outcome
KERNEL_SESSIONS_ACTIVE = "notebook_kernel_sessions_active"
CONSECUTIVE_FAILURES = "notebook_consecutive_failures"

# ---- SQL-backed gauges of the cost area (cost/metrics.py) -------------------------------------------------------
COST_USD = "notebook_cost_usd"
COST_PER_RUN_USD = "notebook_cost_per_run_usd"
COST_MOM_RATIO = "notebook_cost_month_over_month_ratio"
COST_BUDGET_USD = "notebook_cost_budget_usd"
COST_FORECAST_USD = "notebook_cost_forecast_usd"
BILLING_LAST_SYNC = "observatory_billing_last_sync_timestamp_seconds"
COST_SPIKE_ACTUAL_USD = "notebook_cost_spike_actual_usd"  # month to date, once the spike check applies
COST_SPIKE_EXPECTED_USD = "notebook_cost_spike_expected_usd"  # the same weekdays of the previous month

# ---- label names and reserved values ------------------------------------------------------------------------------
TEAM = "team"
TRIGGER = "trigger"
ENVIRONMENT = "environment"
OUTCOME = "outcome"
REASON = "reason"
RESULT = "result"
SOURCE = "source"
TARGET = "target"
SLI = "sli"
WINDOW = "window"
STAT = "stat"
NOTEBOOK = "notebook"
OWNER = "owner"
CRITICAL = "critical"  # "true" | "false"
BILLING_PERIOD = "billing_period"
ALLOCATION = "allocation"  # direct | proportional | unallocated
LE = "le"  # histogram bucket bound
STAGE = "stage"  # a writer transaction's stage: commit, derive (WRITER_TRANSACTION_SECONDS)
TAG = "tag"  # what DuckDB holds memory for (duckdb_memory(), lower case)
MEMORY_KIND = "kind"  # resident pages: anonymous, file, shared
MEMORY_STATE = "state"  # an allocator's bytes (glibc's, DuckDB's): in_use, free
GAUGE_SOURCE = "gauge_source"  # a SQL-backed gauge source of the refresher: slo.sli, cost, duckdb
JOB = "job"
JOB_NAME = "observatory"  # the scrape job of the collector (deploy/prometheus.yml, alert rules, dashboards)
ALL_TEAMS = "__all__"  # the platform row of the SLI gauges
UNALLOCATED = "__unallocated__"  # the team of cost no tag could allocate
OTHER = "__other__"  # label values past a label's cap

# Label values that come from input (team, source, owner, notebook, reasons) are passed through the secret
# redactor, then limited to letters, digits, space and `_-.:/@+[]` (anything else becomes `_`) and to
# LABEL_VALUE_MAX characters: no NUL, quote, newline or credential can reach an exposition.
LABEL_VALUE_MAX = 128
_UNSAFE_LABEL_CHARS = re.compile(r"[^\w .:/@+\[\]-]")


@functools.lru_cache(maxsize=8192)
def safe_label_value(value: str) -> str:
    """The label value exported for `value` (idempotent)."""
    from collector.contract.redaction import redact_text

    return _UNSAFE_LABEL_CHARS.sub("_", redact_text(value[:4 * LABEL_VALUE_MAX])[0])[:LABEL_VALUE_MAX]

# ---- Sloth-compatible SLO recording rules and labels (slo/rules/) -------------------------------------------------
SLI_ERROR_RATIO_PREFIX = "slo:sli_error:ratio_rate"  # + window, e.g. slo:sli_error:ratio_rate5m
SLI_ERROR_EVENTS_PREFIX = "slo:sli_error_events:rate"  # + window: error events per second (traffic-weighted period)
SLI_TOTAL_EVENTS_PREFIX = "slo:sli_total_events:rate"  # + window: events per second
OBJECTIVE_RATIO = "slo:objective:ratio"
ERROR_BUDGET_RATIO = "slo:error_budget:ratio"
TIME_PERIOD_DAYS = "slo:time_period:days"
CURRENT_BURN_RATE = "slo:current_burn_rate:ratio"
PERIOD_BURN_RATE = "slo:period_burn_rate:ratio"
PERIOD_ERROR_BUDGET_REMAINING = "slo:period_error_budget_remaining:ratio"
SLO_INFO = "sloth_slo_info"
SLOTH_ID = "sloth_id"
SLOTH_SERVICE = "sloth_service"
SLOTH_SLO = "sloth_slo"
SLOTH_WINDOW = "sloth_window"
SLOTH_SEVERITY = "sloth_severity"
SLOTH_MODE = "sloth_mode"
SLOTH_OBJECTIVE = "sloth_objective"
SLOTH_SPEC = "sloth_spec"
SLOTH_VERSION = "sloth_version"
# rule group name prefixes (+ sloth_id), in promtool's evaluation order
SLI_RECORDINGS_GROUP = "sloth-slo-sli-recordings-"
META_RECORDINGS_GROUP = "sloth-slo-meta-recordings-"
SLO_ALERTS_GROUP = "sloth-slo-alerts-"

# ---- alert labels (slo/rules/, alerts/alertmanager.yml) --------------------------------------------------------
SEVERITY = "severity"  # page | ticket
CATEGORY = "category"  # slo, notebook, security, cost, platform, meta
CAUSE = "cause"  # infra (pages the platform on-call) | user (the owning team)
ALERTNAME = "alertname"
ALERTSTATE = "alertstate"
ALERTS = "ALERTS"  # Prometheus' synthetic series of pending/firing alerts


def sli_error_ratio(window: str) -> str:
    """`slo:sli_error:ratio_rate<window>`, the recording rule of an SLO's error ratio over one window."""
    return f"{SLI_ERROR_RATIO_PREFIX}{window}"


def sli_error_events(window: str) -> str:
    """`slo:sli_error_events:rate<window>`."""
    return f"{SLI_ERROR_EVENTS_PREFIX}{window}"


def sli_total_events(window: str) -> str:
    """`slo:sli_total_events:rate<window>`."""
    return f"{SLI_TOTAL_EVENTS_PREFIX}{window}"
