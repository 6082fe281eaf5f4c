"""GCP billing export from BigQuery (thin google-cloud-bigquery wrapper around gcp_export + store).

1. ``SELECT DATE(_PARTITIONTIME), MAX(export_time), COUNT(*) ... WHERE DATE(_PARTITIONTIME) >= @since`` where
   ``since`` trails the newest partition already seen by ``gcp_rescan_days`` (first sync: ``gcp_initial_days``).
2. A partition whose (max export_time, row count) differs from the stored watermark, or is new, is read whole
   (``WHERE DATE(_PARTITIONTIME) = @partition_date``, paged through the REST API) and replaces its rows; its
   watermark is written in the same transaction. Unchanged partitions are not read again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Callable

import duckdb
import pyarrow as pa

from cost import gcp_export, ingest, normalize, store
from cost.config import CostSettings, load_settings
from cost.errors import CostInputError

Progress = Callable[[str, int, int], None]


@dataclass
class PartitionResult:
    partition_date: date
    status: str  # replaced | would-replace
    rows: int
    changes: list[store.PartitionChange] = field(default_factory=list)


@dataclass
class SyncResult:
    table: str
    since: date
    scanned: int = 0
    partitions: list[PartitionResult] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changes(self) -> list[store.PartitionChange]:
        return [c for p in self.partitions for c in p.changes]


def parse_table(table: str) -> tuple[str, str, str]:
    parts = table.split(".")
    if len(parts) != 3 or not all(parts):
        raise CostInputError(f"expected PROJECT.DATASET.TABLE, got {table!r}")
    return parts[0], parts[1], parts[2]


def bigquery_client(project: str, endpoint: str | None = None) -> Any:
    """A real google-cloud-bigquery client; with ``endpoint`` it talks to that URL with anonymous credentials."""
    from google.cloud import bigquery
    if endpoint:
        from google.auth.credentials import AnonymousCredentials
        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": endpoint})
    return bigquery.Client(project=project)


def flatten(table: pa.Table) -> pa.Table:
    """Flatten RECORD columns to dotted names (``service.description``); REPEATED records stay lists."""
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


def _query(client: Any, sql: str, params: list[Any], page_size: int | None = None) -> pa.Table:
    from google.cloud import bigquery
    cfg = bigquery.QueryJobConfig(query_parameters=params)
    rows = client.query_and_wait(sql, job_config=cfg, page_size=page_size)
    return rows.to_arrow(create_bqstorage_client=False)


def stored_watermarks(con: duckdb.DuckDBPyConnection, table: str) -> dict[date, tuple[datetime | None, int]]:
    return {r[0]: (r[1], int(r[2] or 0)) for r in con.execute(
        "SELECT partition_date, max_export_time, row_count FROM cost_gcp_watermarks WHERE table_id = ?",
        [table]).fetchall()}


def sync(con: duckdb.DuckDBPyConnection, client: Any, table: str, settings: CostSettings | None = None, *,
         dry_run: bool = False, progress: Progress | None = None, today: date | None = None,
         page_size: int | None = None) -> SyncResult:
    from google.cloud import bigquery
    settings = settings or load_settings()
    parse_table(table)
    today = today or datetime.now(timezone.utc).date()
    stored = stored_watermarks(con, table)
    since = gcp_export.scan_since(today, max(stored) if stored else None, settings.gcp_rescan_days,
                                  settings.gcp_initial_days)
    marks = _query(client, gcp_export.watermark_query(table), [bigquery.ScalarQueryParameter("since", "DATE", since)])
    remote = [gcp_export.PartitionState(r["partition_date"], r["max_export_time"], int(r["row_count"]))
              for r in marks.to_pylist()]
    todo = gcp_export.changed_partitions(remote, stored, since)
    result = SyncResult(table, since, scanned=len(remote), dry_run=dry_run)
    origin = f"bq://{table}"
    for i, p in enumerate(todo):
        if progress:
            progress(p.partition_date.isoformat(), i, len(todo))
        data = flatten(_query(client, gcp_export.partition_query(table),
                              [bigquery.ScalarQueryParameter("partition_date", "DATE", p.partition_date)],
                              page_size=page_size))
        mid = f"{p.partition_date.isoformat()}|{p.max_export_time.isoformat() if p.max_export_time else ''}"
        ingest_id = f"{gcp_export.SOURCE}:{table}:{mid}:{p.row_count}:{settings.fingerprint()}"
        view = f"__bq_{p.partition_date.strftime('%Y%m%d')}"
        con.register(view, data)
        try:
            cols = ingest.columns_of(con, view)
            rel = gcp_export.prepare_relation(con, view, cols)
            plan = gcp_export.plan(ingest.columns_of(con, rel))
            lines = normalize.run(con, plan, rel, settings.tag_keys, ingest_id, f"{origin} {p.partition_date}")
        finally:
            con.execute(f"DROP VIEW IF EXISTS {view}_gcp")
            con.unregister(view)
        before = [r[0] for r in con.execute(
            "SELECT partition FROM cost_partitions WHERE source = ? AND partition LIKE ?",
            [gcp_export.SOURCE, f"{gcp_export.SOURCE}|%|{p.partition_date.isoformat()}"]).fetchall()]
        con.execute("BEGIN TRANSACTION")
        try:
            changes = store.apply(con, lines, ingest_id=ingest_id, source=gcp_export.SOURCE, manifest_id=mid,
                                  origin=origin, partitions=before, manage_transaction=False, dry_run=dry_run)
            if not dry_run:
                con.execute("INSERT OR REPLACE INTO cost_gcp_watermarks VALUES (?, ?, ?, ?, now())",
                            [table, p.partition_date, p.max_export_time, p.row_count])
            con.execute("ROLLBACK" if dry_run else "COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if not dry_run and any(c.changed for c in changes):
            from cost import allocation
            allocation.refresh(con, ingest.months_of(lines), manage_transaction=True)
        result.partitions.append(PartitionResult(p.partition_date, "would-replace" if dry_run else "replaced",
                                                 lines.num_rows, changes))
        lines.drop()
    if progress:
        progress("done", len(todo), len(todo))
    if not dry_run:
        store.record_sync(con, gcp_export.SOURCE, origin, "ok", f"{len(todo)} partition(s) replaced")
    return result
