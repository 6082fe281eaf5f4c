"""The lake read back as the relations the product's SQL expects (`events`, `run_attempts`, `notebooks`,
`alertmanager_alerts`, `cost_line_items`), written once in DuckDB's dialect and transpiled for Spark or BigQuery
by the engine that runs them.

- Every table is deduplicated on its identity across collectors (layout.LakeTable.identity): the row ranked first
  by `newest` wins; for cost lines, the whole billing partition (`x_partition`) of the collector with the most
  recent delivery wins, so two collectors that ingested the same billing export never double count.
- `run_attempts` and `notebooks` are derived again from the deduplicated events with the collector's own
  definitions (collector/lake/rebuild.py), not taken from the exported `run_attempts` files: two collectors that
  each saw part of a run's events each exported a partial attempt, while the union of their events gives the
  whole one. The exported run attempts are for people and BI tools reading the lake.
"""

from __future__ import annotations

from functools import lru_cache

import duckdb
import pyarrow as pa

from collector.lake import layout, rebuild
from collector.storage.schema import STORED_FIELDS_FROM_DATA


def raw_name(t: layout.LakeTable) -> str:
    """The relation over every collector's files of one lake table (partition column included, as a string)."""
    return f"lake_{t.name}"


def _dedup(t: layout.LakeTable, extra: str = "") -> str:
    order = ", ".join(f"{c.strip()} DESC" for c in t.newest.split(","))
    return (f"SELECT * EXCLUDE (lake_rank, {t.partition}){extra} FROM (SELECT *, rank() OVER "
            f"(PARTITION BY {', '.join(t.identity)} ORDER BY {order}) AS lake_rank FROM {raw_name(t)}) x "
            f"WHERE lake_rank = 1")


# (relation, DuckDB SQL, materialise): in dependency order. `rowid` gives cost lines the row id the allocation
# statement (cost/allocation.py) identifies lines by.
RELATIONS: tuple[tuple[str, str, bool], ...] = (
    # the lake's events are exported without the stored typed fields: they are read from their data again
    ("events", f"SELECT *, {STORED_FIELDS_FROM_DATA} FROM ({_dedup(layout.EVENTS)}) e", True),
    ("new_events", "SELECT * FROM events", False),
    ("run_attempts", rebuild.RUN_ATTEMPTS, True),
    ("notebooks", rebuild.NOTEBOOKS, True),
    ("alertmanager_alerts", _dedup(layout.ALERTS), True),
    ("cost_line_items", f"SELECT *, row_number() OVER (ORDER BY x_partition, \"ChargePeriodStart\") AS rowid FROM ({_dedup(layout.COSTS)}) c", True),
)


@lru_cache(maxsize=None)
def raw_schema(name: str) -> pa.Schema:
    """The Arrow schema of one lake table's files plus its partition column: what an engine gives an empty
    relation when no collector has exported that table yet."""
    from collector.storage.db import apply_migrations

    t = layout.BY_NAME[name]
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        apply_migrations(con)
        params = {"part": "1970-01-01" if t is not layout.COSTS else "1970-01", "collector": "x"}
        if "$hi" in t.rows:
            params["hi"] = 0
        schema = con.sql(f"SELECT * FROM ({t.rows}) r LIMIT 0", params=params).to_arrow_table().schema
    finally:
        con.close()
    return schema.append(pa.field(t.partition, pa.string()))
