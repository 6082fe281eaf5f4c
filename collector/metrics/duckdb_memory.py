"""DuckDB's own memory as gauges: what fills it, and how close it runs to its limit (OBSERVATORY_DUCKDB_MEMORY_LIMIT).

DuckDB keeps the blocks it read or wrote cached until its memory limit (80% of the host's memory unless set), so
the collector's RSS follows the stored history; `duckdb_memory()` says how much of it is DuckDB's and what for
(cached table blocks, the events' key, hash tables...). A SQL-backed gauge source like the areas' (computed by the
refresher, off the scrape path, which never queries the database).
"""

from __future__ import annotations

from typing import Iterable

import duckdb
from prometheus_client.core import GaugeMetricFamily, Metric

from collector import conventions as C
from collector.metrics.refresher import GaugeSource
from collector.settings import size_bytes

SQL = "SELECT lower(tag), memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory() ORDER BY 1"


def duckdb_memory_metrics(cur: duckdb.DuckDBPyConnection) -> Iterable[Metric]:
    held = GaugeMetricFamily(C.DUCKDB_MEMORY_BYTES, "Memory DuckDB holds for the collector's database, by what for "
                             "(OBSERVATORY_DUCKDB_MEMORY_LIMIT bounds the sum).", labels=[C.TAG])
    spilled = GaugeMetricFamily(C.DUCKDB_TEMPORARY_BYTES, "What DuckDB has spilled to its temporary directory past "
                                "the memory limit, by what for.", labels=[C.TAG])
    for tag, memory, temporary in cur.execute(SQL).fetchall():
        held.add_metric([tag], memory)
        spilled.add_metric([tag], temporary)
    out: list[Metric] = [held, spilled]
    limit = size_bytes(cur.execute("SELECT current_setting('memory_limit')").fetchone()[0])
    if limit is not None:  # as DuckDB shows it (`488.2 MiB`): to a tenth of its unit
        out.append(GaugeMetricFamily(C.DUCKDB_MEMORY_LIMIT_BYTES, "DuckDB's memory limit for the collector's "
                                     "database (OBSERVATORY_DUCKDB_MEMORY_LIMIT, else DuckDB's default).", value=limit))
    return out


SOURCE = GaugeSource("duckdb", (C.DUCKDB_MEMORY_BYTES, C.DUCKDB_TEMPORARY_BYTES, C.DUCKDB_MEMORY_LIMIT_BYTES),
                     duckdb_memory_metrics)
