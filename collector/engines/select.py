"""Which engine a command or the API uses: settings (environment `OBSERVATORY_ENGINE`, `OBSERVATORY_LAKE`, ...,
overridden by CLI flags) and the one function that opens it."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Literal

import typer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from collector.engines.base import Engine


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OBSERVATORY_", extra="ignore")

    engine: Literal["duckdb", "spark", "bigquery"] = Field(
        "duckdb", description="Where SLIs and cost reports are computed: the collector's DuckDB, or an engine over "
                              "the lake")
    lake: str | None = Field(None, description="Lake location the engines read (DIR, s3://, gs://)")
    spark_master: str | None = Field(None, description="Spark master URL (default local[*]; SPARK_REMOTE for "
                                                       "Spark Connect)")
    bq_project: str | None = Field(None, description="BigQuery project that runs the jobs")
    bq_dataset: str = Field("observatory", description="BigQuery dataset for the lake's tables")
    bq_location: str | None = Field(None, description="BigQuery location (US, EU, ...)")
    bq_api_endpoint: str | None = Field(None, description="Another BigQuery REST endpoint (an emulator; anonymous "
                                                          "credentials)")


# The CLI options of the commands that compute on an engine (`observatory sli`, `observatory report cost`).
ENGINE_OPT = typer.Option(None, "--engine", help="duckdb | spark | bigquery (env OBSERVATORY_ENGINE); spark and "
                                                 "bigquery read the lake (docs/scale.md)")
LAKE_OPT = typer.Option(None, "--lake", help="Lake the engine reads: DIR, s3://..., gs://... (env OBSERVATORY_LAKE)")
SPARK_MASTER_OPT = typer.Option(None, "--spark-master", help="Spark master URL (default local[*])")
BQ_PROJECT_OPT = typer.Option(None, "--bq-project", help="BigQuery project")
BQ_DATASET_OPT = typer.Option(None, "--bq-dataset", help="BigQuery dataset for the lake's tables")


def open_engine(s: EngineSettings, *, dry_run: bool = False, bq_client=None) -> Engine | None:
    """The engine `s` names over `s.lake`; None for DuckDB without a lake (the collector's own database)."""
    if s.engine == "duckdb":
        if s.lake is None:
            return None
        from collector.engines.lakeduck import LakeDuckDB

        if "://" in s.lake:
            raise ValueError("the DuckDB lake engine reads a local lake directory; use Spark or BigQuery for "
                             f"{s.lake}")
        return LakeDuckDB(s.lake)
    if not s.lake:
        raise ValueError(f"--engine {s.engine} reads the lake: give --lake (OBSERVATORY_LAKE)")
    if s.engine == "spark":
        from collector.engines.spark import SparkEngine

        return SparkEngine(s.lake, master=s.spark_master)
    from collector.engines.bigquery import BigQueryEngine

    if not s.lake.startswith("gs://"):
        raise ValueError("BigQuery reads the lake from GCS: --lake gs://bucket/prefix")
    if bq_client is None and s.bq_api_endpoint:
        from cost.gcp_sync import bigquery_client

        bq_client = bigquery_client(s.bq_project or "observatory", s.bq_api_endpoint)
    return BigQueryEngine(s.lake, project=s.bq_project, dataset=s.bq_dataset, location=s.bq_location,
                          dry_run=dry_run, client=bq_client)


def settings_from(engine: str | None = None, lake: str | None = None, **flags: str | None) -> EngineSettings:
    """The environment's engine settings with the CLI flags that were given on top."""
    given = {k: v for k, v in dict(engine=engine, lake=lake, **flags).items() if v is not None}
    return EngineSettings(**given)


def print_estimates(estimates: list[tuple[str, int]], echo) -> None:
    """`--dry-run`: the bytes BigQuery estimates each statement would process, and the total."""
    for i, (sql, n) in enumerate(estimates, 1):
        echo(f"{i:3d}  {n:>16,d} bytes  {' '.join(sql.split())[:120]}")
    echo(f"total {sum(n for _, n in estimates):,d} bytes in {len(estimates)} statements")


# ---- the API's engine: one per process, opened again when the lake's manifests change ---------------------------

class _Shared:
    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.engine: Engine | None = None

    def get(self, s: EngineSettings) -> Engine:
        from collector.lake.export import manifests
        from collector.lake.stores import open_store

        assert s.lake is not None
        marks = tuple(sorted((m.get("collector_id"), m.get("exported_through_batch"), m.get("exported_at"))
                             for m in manifests(open_store(s.lake))))
        key = (s.model_dump_json(), marks)
        with self.lock:
            if key != self.key or self.engine is None:
                if self.engine is not None:
                    self.engine.close()
                self.engine, self.key = None, None
                self.engine = open_engine(s)
                self.key = key
            return self.engine


_SHARED = _Shared()


def uses_lake(s: EngineSettings) -> bool:
    return s.engine != "duckdb" or s.lake is not None


@contextmanager
def reading(store, s: EngineSettings | None = None) -> Iterator[Any]:
    """A cursor for the API's reads: the collector's database, or the configured engine over the lake
    (`OBSERVATORY_ENGINE`, `OBSERVATORY_LAKE`)."""
    s = s or EngineSettings()
    if not uses_lake(s):
        with store.read_cursor() as cur:
            yield cur
        return
    yield _SHARED.get(s).cursor()


def sli_rows(store, q, cfg, s: EngineSettings | None = None) -> list[dict]:
    """GET /v1/sli's rows: computed incrementally in the collector's database, or directly on the engine."""
    s = s or EngineSettings()
    if not uses_lake(s):
        from slo.sli.compute import compute

        with store.read_cursor() as cur:
            return compute(cur, q, cfg)
    from collector.engines.sli import compute as compute_on

    eng = _SHARED.get(s)
    with _SHARED.lock:  # the missed-slot relation is per computation
        return compute_on(eng, q, cfg)
