"""BigQuery through google-cloud-bigquery, over the lake on GCS.

The lake's tables become external tables (`CREATE OR REPLACE EXTERNAL TABLE ... WITH PARTITION COLUMNS`, Hive
partitioning on `gs://bucket/prefix/<table>`), the relations of collector/lake/views.py are materialised as tables
of the working dataset (or views), and every statement runs with that dataset as the default dataset, values bound
as BigQuery query parameters (`@name`). The caller needs `bigquery.jobs.create` on the project and
`bigquery.tables.create/getData` on the dataset, and read access to the bucket (docs/scale.md).

`dry_run=True` runs no query: the external tables and views are created (free), then every statement is sent as a
dry-run job and BigQuery's own estimate of the bytes it
would scan is recorded (`estimates`), which is what `--dry-run` prints. What was not verified against the real
service is listed in docs/scale.md.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from collector.engines.base import RowsCursor
from collector.engines.dialect import transpile
from collector.lake import layout, views


def _param(name: str | None, v: Any):
    from google.cloud import bigquery as bq

    if isinstance(v, (list, tuple)):
        return bq.ArrayQueryParameter(name, "STRING", [str(x) for x in v])
    kind = ("BOOL" if isinstance(v, bool) else "INT64" if isinstance(v, int) else "FLOAT64" if isinstance(v, float)
            else "TIMESTAMP" if isinstance(v, datetime) else "DATE" if isinstance(v, date)
            else "BIGNUMERIC" if isinstance(v, Decimal) else "STRING")
    return bq.ScalarQueryParameter(name, kind, v)


class BigQueryCursor(RowsCursor):
    dialect = "bigquery"

    def __init__(self, engine: "BigQueryEngine") -> None:
        super().__init__()
        self.engine = engine

    def _run(self, sql: str, params: dict[str, Any] | Sequence[Any] | None):
        return self.engine.query(sql, params)

    def _rows_of(self, job) -> list[tuple]:
        if job is None:  # dry run: no rows; a scalar probe (count of lines, ...) reads as "there is data"
            return []
        return [tuple(r.values()) for r in job.result()]

    def fetchone(self) -> tuple | None:
        if self._handle is None:
            return (1,)
        return super().fetchone()

    def _arrow_of(self, job) -> pa.Table:
        if job is None:
            return pa.table({})
        return job.to_arrow(create_bqstorage_client=False)

    def has_table(self, name: str) -> bool:
        return self.engine.has_table(name)


class BigQueryEngine:
    name = "bigquery"

    def __init__(self, lake: str, *, project: str | None, dataset: str, location: str | None = None,
                 client=None, dry_run: bool = False, materialise: bool = True) -> None:
        from google.cloud import bigquery as bq

        self.client = client or bq.Client(project=project, location=location)
        self.project = project or self.client.project
        self.dataset = dataset
        # the set-up DDL scans nothing and is run for real even in a dry run (external tables and views cost
        # nothing), so that the estimates of the statements include what the views read underneath
        self.dry_run = False
        self.estimates: list[tuple[str, int]] = []  # (statement, bytes BigQuery estimates it would process)
        materialise = materialise and not dry_run
        base = lake.rstrip("/")
        for t in layout.TABLES:
            self.query(f"CREATE OR REPLACE EXTERNAL TABLE {self._fq(views.raw_name(t))} WITH PARTITION COLUMNS "
                       f"OPTIONS (format = 'PARQUET', uris = ['{base}/{t.name}/*'], "
                       f"hive_partition_uri_prefix = '{base}/{t.name}', require_hive_partition_filter = false)", None)
        for name, sql, mat in views.RELATIONS:
            kind = "TABLE" if mat and materialise else "VIEW"
            self.query(f"CREATE OR REPLACE {kind} {self._fq(name)} AS {transpile(sql, 'bigquery')}", None)
        self.dry_run = dry_run

    def _fq(self, name: str) -> str:
        return f"`{self.project}.{self.dataset}.{name}`"

    def query(self, sql: str, params: dict[str, Any] | Sequence[Any] | None):
        from google.cloud import bigquery as bq

        if isinstance(params, dict):
            qp = [_param(k, v) for k, v in params.items()]
        else:
            qp = [_param(None, v) for v in (params or [])]
        cfg = bq.QueryJobConfig(query_parameters=qp, default_dataset=f"{self.project}.{self.dataset}",
                                dry_run=self.dry_run, use_query_cache=not self.dry_run)
        job = self.client.query(sql, job_config=cfg)
        if self.dry_run:
            self.estimates.append((sql, int(job.total_bytes_processed or 0)))
            return None
        job.result()
        return job

    def cursor(self) -> BigQueryCursor:
        return BigQueryCursor(self)

    def register_arrow(self, name: str, table: pa.Table) -> None:
        """A small table (missed slots) loaded as a load job (WRITE_TRUNCATE)."""
        from google.cloud import bigquery as bq

        if self.dry_run:
            return
        buf = io.BytesIO()
        pq.write_table(table, buf)
        buf.seek(0)
        cfg = bq.LoadJobConfig(source_format=bq.SourceFormat.PARQUET, write_disposition="WRITE_TRUNCATE")
        self.client.load_table_from_file(buf, f"{self.project}.{self.dataset}.{name}", job_config=cfg).result()

    def has_table(self, name: str) -> bool:
        if self.dry_run:
            return True
        from google.api_core.exceptions import NotFound

        try:
            self.client.get_table(f"{self.project}.{self.dataset}.{name}")
            return True
        except NotFound:
            return False

    def close(self) -> None:
        self.client.close()
