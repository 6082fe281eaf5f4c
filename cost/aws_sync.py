"""AWS CUR from S3 (thin boto3 wrapper around aws_cur + store).

Manifest-driven: list the prefix, read each *current* manifest (CUR 2.0 ``metadata/BILLING_PERIOD=YYYY-MM/`` or the
legacy date-range folder), and load exactly the data files it lists (never a glob: older assemblies sit beside
them). Each delivery replaces its (payer account, billing period) partitions in one transaction. A manifest whose id
was already applied is skipped (checkpoint in ``cost_partitions``/``cost_ingest_log``), so a sync after no new
delivery reads one small JSON per billing period and nothing else. Closed periods are re-read whenever their
manifest changes (late credits and refunds).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import duckdb

from cost import aws_cur, ingest, store
from cost.config import CostSettings, load_settings
from cost.errors import CostInputError

Progress = Callable[[str, int, int], None]


@dataclass
class PeriodResult:
    manifest: aws_cur.Manifest
    status: str  # applied | unchanged | would-apply
    changes: list[store.PartitionChange] = field(default_factory=list)
    rows: int = 0


@dataclass
class SyncResult:
    target: str
    periods: list[PeriodResult] = field(default_factory=list)
    files_downloaded: int = 0
    dry_run: bool = False

    @property
    def changes(self) -> list[store.PartitionChange]:
        return [c for p in self.periods for c in p.changes]


def list_keys(s3: Any, bucket: str, prefix: str) -> list[tuple[str, str]]:
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []) or []:
            out.append((obj["Key"], obj.get("ETag", "").strip('"')))
    return out


def applied_manifests(con: duckdb.DuckDBPyConnection, origin: str) -> set[str]:
    rows = con.execute("SELECT DISTINCT manifest_id FROM cost_ingest_log WHERE source = ? AND origin = ? "
                       "AND manifest_id IS NOT NULL", [aws_cur.SOURCE, origin]).fetchall()
    return {r[0] for r in rows}


def previous_partitions(con: duckdb.DuckDBPyConnection, period: str, origin: str) -> list[str]:
    """Partitions of this period that an earlier delivery from the same bucket/prefix wrote."""
    rows = con.execute(
        "SELECT DISTINCT partition FROM cost_ingest_log WHERE source = ? AND origin = ? AND partition LIKE ? "
        "AND partition IN (SELECT partition FROM cost_partitions)",
        [aws_cur.SOURCE, origin, f"{aws_cur.SOURCE}|%|{period}"]).fetchall()
    return [r[0] for r in rows]


def sync(con: duckdb.DuckDBPyConnection, s3: Any, bucket: str, prefix: str = "",
         settings: CostSettings | None = None, *, dry_run: bool = False, progress: Progress | None = None,
         periods: set[str] | None = None) -> SyncResult:
    settings = settings or load_settings()
    origin = f"s3://{bucket}/{prefix}"
    result = SyncResult(origin, dry_run=dry_run)
    keys = list_keys(s3, bucket, prefix)
    manifests_keys = [(k, e) for k, e in keys if aws_cur.is_current_manifest(k)]
    if not manifests_keys:
        raise CostInputError("no CUR manifest found (expected .../metadata/BILLING_PERIOD=YYYY-MM/*-Manifest.json "
                             "or .../yyyymmdd-yyyymmdd/*-Manifest.json)", source=origin)
    manifests = []
    for k, etag in manifests_keys:
        body = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
        manifests.append(aws_cur.parse_manifest(k, body, etag=etag, bucket=bucket))
    manifests.sort(key=lambda m: (m.billing_period, m.key))
    if periods:
        manifests = [m for m in manifests if m.billing_period in periods]
    done = applied_manifests(con, origin)
    existing = {k for k, _ in keys}
    for i, m in enumerate(manifests):
        if progress:
            progress(f"{m.billing_period} ({m.manifest_id})", i, len(manifests))
        if m.manifest_id in done:
            result.periods.append(PeriodResult(m, "unchanged"))
            continue
        missing = [k for k in m.data_keys if k not in existing]
        if missing:
            raise CostInputError(f"manifest lists data file(s) that are not in the bucket: {', '.join(missing)}",
                                 source=f"s3://{bucket}/{m.key}")
        with tempfile.TemporaryDirectory(prefix="observatory-cur-") as tmp:
            paths = []
            for j, k in enumerate(m.data_keys):
                name = Path(k).name
                local = Path(tmp) / f"{j:05d}-{name}"
                s3.download_file(m.bucket or bucket, k, str(local))
                result.files_downloaded += 1
                paths.append(str(local))
            ingest_id = f"{aws_cur.SOURCE}:{m.manifest_id}:{settings.fingerprint()}:{ingest.NORMALISER_VERSION}"
            rel = ingest.open_raw(con, paths)
            try:
                lines = ingest.normalise_relation(con, rel, aws_cur.SOURCE, settings, ingest_id,
                                                  f"s3://{bucket}/{m.key}", materialize=dry_run)
                try:
                    other = sorted(set(lines.distinct("x_billing_month")) - {m.billing_period})
                    if other:
                        raise CostInputError(f"delivery for billing period {m.billing_period} holds lines of "
                                             f"{', '.join(other)}", source=f"s3://{bucket}/{m.key}")
                    changes = ingest.import_table(con, lines, source=aws_cur.SOURCE, ingest_id=ingest_id,
                                                  origin=origin, manifest_id=m.manifest_id,
                                                  partitions=previous_partitions(con, m.billing_period, origin),
                                                  dry_run=dry_run)
                    n_rows = lines.num_rows if dry_run else sum(c.rows_after for c in changes)
                finally:
                    lines.drop()
            finally:
                ingest.drop_views(con, rel)
        result.periods.append(PeriodResult(m, "would-apply" if dry_run else "applied", changes, n_rows))
    if progress:
        progress("done", len(manifests), len(manifests))
    if not dry_run:
        store.record_sync(con, aws_cur.SOURCE, origin, "ok",
                          f"{sum(p.status == 'applied' for p in result.periods)} period(s) applied")
    return result


def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    import boto3
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region)


__all__ = ["sync", "s3_client", "SyncResult", "PeriodResult"]
