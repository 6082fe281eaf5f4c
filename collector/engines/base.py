"""What every engine offers the product's SQL code: a cursor with DuckDB's `execute(sql, params)` /
`fetchall()` / `fetchone()`, taking statements in DuckDB's dialect and giving rows as DuckDB would (tuples,
timezone-aware UTC datetimes, lists, Decimals), plus the few operations the lake engines need around it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol, Sequence

import pyarrow as pa


class Engine(Protocol):
    name: str

    def cursor(self) -> "Cursor": ...
    def register_arrow(self, name: str, table: pa.Table) -> None: ...
    def has_table(self, name: str) -> bool: ...
    def close(self) -> None: ...


class Cursor(Protocol):
    def execute(self, sql: str, params: dict[str, Any] | Sequence[Any] | None = None) -> "Cursor": ...
    def fetchall(self) -> list[tuple]: ...
    def fetchone(self) -> tuple | None: ...


def utc(v: Any) -> Any:
    """A value from another engine as DuckDB returns it: naive datetimes (UTC sessions) become aware UTC."""
    if isinstance(v, datetime) and v.tzinfo is None:
        return v.replace(tzinfo=timezone.utc)
    if isinstance(v, list):
        return [utc(x) for x in v]
    if isinstance(v, tuple):
        return tuple(utc(x) for x in v)
    return v


class RowsCursor:
    """A cursor over an engine that runs whole statements: subclasses implement `_run(sql, params)` (returning the
    engine's result handle), `_rows_of(handle)` and `_arrow_of(handle)`. `sql(...)` returns the cursor itself, so
    code written against DuckDB's `con.sql(q).to_arrow_table()` and `con.execute(q, p).fetchall()` runs as is."""

    dialect = "duckdb"

    def __init__(self) -> None:
        self._handle: Any = None

    def _run(self, sql: str, params: dict[str, Any] | Sequence[Any] | None) -> Any:
        raise NotImplementedError

    def _rows_of(self, handle: Any) -> list[tuple]:
        raise NotImplementedError

    def _arrow_of(self, handle: Any) -> pa.Table:
        raise NotImplementedError

    def execute(self, sql: str, params: dict[str, Any] | Sequence[Any] | None = None) -> "RowsCursor":
        from collector.engines.dialect import transpile

        self._handle = self._run(transpile(sql, self.dialect), params)
        return self

    def sql(self, sql: str, params: dict[str, Any] | Sequence[Any] | None = None) -> "RowsCursor":
        return self.execute(sql, params)

    def fetchall(self) -> list[tuple]:
        return [tuple(utc(v) for v in row) for row in self._rows_of(self._handle)]

    def fetchone(self) -> tuple | None:
        rows = self.fetchall()
        return rows[0] if rows else None

    def to_arrow_table(self) -> pa.Table:
        return self._arrow_of(self._handle)

    def complete(self) -> None:
        """DuckDB's `complete()` (run an unread result to its end): a statement here is whole once run."""

    def register(self, name: str, table: pa.Table) -> "RowsCursor":
        """DuckDB's `con.register`: code that joins a small computed table (run costs, due slots) runs as is; the
        engine keeps the relation until it is replaced or the engine closes."""
        self.engine.register_arrow(name, table)  # type: ignore[attr-defined]
        return self

    def unregister(self, name: str) -> "RowsCursor":
        """Kept until replaced (the engine drops its relations on close): nothing to do per statement."""
        return self

    def close(self) -> None:
        self._handle = None


def table_exists(cur: Any, name: str) -> bool:
    """Whether `name` is a relation of the database behind `cur` (DuckDB connection or an engine cursor)."""
    has = getattr(cur, "has_table", None)
    if has is not None:
        return bool(has(name))
    return bool(cur.execute(
        "SELECT count(*) FROM (SELECT table_name AS n FROM duckdb_tables() UNION ALL "
        "SELECT view_name FROM duckdb_views()) WHERE n = ?", [name]).fetchall()[0][0])
