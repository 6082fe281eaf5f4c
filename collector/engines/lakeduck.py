"""DuckDB over a lake directory: every collector's files read in place, deduplicated and derived into the
relations of views.RELATIONS (tables and views of an in-memory database, seen by every cursor). The reference the other engines are held
to in tests, and the small-lake engine (`--engine duckdb --lake DIR`)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from collector.lake import layout, views
from collector.storage.sqltext import ident, lit


class LakeDuckDB:
    name = "duckdb"

    def __init__(self, root: str | Path, *, memory_limit: str | None = None) -> None:
        self.root = Path(root)
        self.con = duckdb.connect(":memory:", config={"memory_limit": memory_limit} if memory_limit else {})
        self.con.execute("SET TimeZone = 'UTC'")
        for t in layout.TABLES:
            files = sorted((self.root / t.name).glob("*=*/*.parquet"))
            raw = views.raw_name(t)
            if files:
                glob = lit(str(self.root / t.name / "*=*" / "*.parquet"))
                self.con.execute(f"CREATE VIEW {raw} AS SELECT * FROM read_parquet({glob}, hive_partitioning = true, "
                                 "hive_types_autocast = false, union_by_name = true)")
            else:
                self.register_arrow(raw, views.raw_schema(t.name).empty_table())
        for name, sql, materialise in views.RELATIONS:
            kind = "TABLE" if materialise else "VIEW"
            self.con.execute(f"CREATE {kind} {ident(name)} AS {sql}")

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def register_arrow(self, name: str, table: pa.Table) -> None:
        self.con.register(f"{name}_arrow", table)
        self.con.execute(f"CREATE OR REPLACE TABLE {ident(name)} AS SELECT * FROM {name}_arrow")
        self.con.unregister(f"{name}_arrow")

    def has_table(self, name: str) -> bool:
        from collector.engines.base import table_exists

        return table_exists(self.con, name)

    def close(self) -> None:
        self.con.close()
