"""Spark through PySpark: a real SparkSession over the lake.

`local[*]` by default (tests, one machine); `--spark-master URL` (or `SPARK_MASTER`) for a standalone/YARN/k8s
cluster; `SPARK_REMOTE=sc://host:15002` (or `--spark-remote`) for Spark Connect (Databricks, Dataproc, EMR
Serverless), which needs `pip install 'pyspark[connect]'`. One session per process (SparkSession.getOrCreate):
tests share it.

The lake's tables are read as Parquet with partition type inference off (partition values stay strings), the
relations of collector/lake/views.py are created from their DuckDB text through dialect.transpile, and the
expensive ones are cached (`CACHE TABLE`). Statements run with `spark.sql(text, args=...)`: values are bound as
Spark named (`:name`) or positional (`?`) parameters, never formatted into the text.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import pyarrow as pa

from collector.engines.base import RowsCursor
from collector.engines.dialect import transpile
from collector.lake import layout, views

DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.shuffle.partitions": os.environ.get("OBSERVATORY_SPARK_SHUFFLE_PARTITIONS", "4"),
    "spark.sql.ansi.enabled": "false",
}


def session(master: str | None = None, remote: str | None = None, conf: dict[str, str] | None = None):
    """The process's SparkSession (created on first use)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:  # one session per process: later engines share it (their settings were the first's)
        return active
    remote = remote or os.environ.get("SPARK_REMOTE")
    b = SparkSession.builder.appName("notebook-observatory")
    if remote:
        b = b.remote(remote)
    else:
        master = master or os.environ.get("SPARK_MASTER") or "local[*]"
        b = b.master(master)
        if master.startswith("local"):  # a local session listens on loopback only
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            b = b.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
        b = b.config("spark.driver.memory", os.environ.get("OBSERVATORY_SPARK_DRIVER_MEMORY", "2g"))
    for k, v in {**DEFAULT_CONF, **(conf or {})}.items():
        b = b.config(k, v)
    s = b.getOrCreate()
    if not remote:
        s.sparkContext.setLogLevel("ERROR")
    return s


def spark_path(lake: str) -> str:
    """The lake location as Spark's Hadoop filesystems name it (s3:// -> s3a://, a directory -> file://)."""
    if lake.startswith("s3://"):
        return "s3a://" + lake[len("s3://"):]
    if "://" in lake:
        return lake
    return "file://" + os.path.abspath(lake)


def _plain(v: Any) -> Any:
    """Spark's Row (a struct value) as the tuple DuckDB gives for a STRUCT/tuple value."""
    from pyspark.sql import Row

    if isinstance(v, Row):
        return tuple(_plain(x) for x in v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


class SparkCursor(RowsCursor):
    dialect = "spark"

    def __init__(self, engine: "SparkEngine") -> None:
        super().__init__()
        self.engine = engine

    def _run(self, sql: str, params: dict[str, Any] | Sequence[Any] | None):
        args = dict(params) if isinstance(params, dict) else (list(params) if params else None)
        return self.engine.spark.sql(sql, args=args)

    def _rows_of(self, df) -> list[tuple]:
        return [tuple(_plain(v) for v in r) for r in df.collect()]

    def _arrow_of(self, df) -> pa.Table:
        return df.toArrow()

    def has_table(self, name: str) -> bool:
        return self.engine.has_table(name)


class SparkEngine:
    name = "spark"

    def __init__(self, lake: str, *, master: str | None = None, remote: str | None = None,
                 conf: dict[str, str] | None = None) -> None:
        self.lake = lake
        self.spark = session(master, remote, conf)
        self._views: list[str] = []
        self._cached: list[str] = []
        base = spark_path(lake).rstrip("/")
        for t in layout.TABLES:
            df = self._read(f"{base}/{t.name}", t)
            df.createOrReplaceTempView(views.raw_name(t))
            self._views.append(views.raw_name(t))
        for name, sql, materialise in views.RELATIONS:
            text = transpile(sql, "spark")
            self.spark.sql(f"CACHE TABLE {name} AS {text}" if materialise else f"CREATE OR REPLACE TEMP VIEW {name} AS {text}")
            (self._cached if materialise else self._views).append(name)

    def _read(self, path: str, t: layout.LakeTable):
        from pyspark.errors import AnalysisException

        try:
            if path.startswith("file://") and not any(os.scandir(path[len("file://"):])):
                raise FileNotFoundError(path)
            return self.spark.read.option("basePath", path).parquet(path)
        except (AnalysisException, FileNotFoundError):
            return self._empty(views.raw_schema(t.name))

    def _empty(self, schema: pa.Schema):
        from pyspark.sql.pandas.types import from_arrow_schema

        return self.spark.createDataFrame([], schema=from_arrow_schema(schema))

    def cursor(self) -> SparkCursor:
        return SparkCursor(self)

    def register_arrow(self, name: str, table: pa.Table) -> None:
        schema = self._empty(table.schema).schema
        rows = [tuple(r.values()) for r in table.to_pylist()]
        df = self.spark.createDataFrame(rows, schema=schema)
        df.createOrReplaceTempView(name)
        if name not in self._views:
            self._views.append(name)

    def has_table(self, name: str) -> bool:
        return bool(self.spark.catalog.tableExists(name))

    def close(self) -> None:
        """Drop this engine's views and cached tables; the session stays for the next engine in the process."""
        for name in self._cached:
            self.spark.sql(f"UNCACHE TABLE IF EXISTS {name}")
        for name in set(self._views + self._cached):
            self.spark.catalog.dropTempView(name)
