"""Opening the DuckDB store for the cost commands: the collector's `connect`, which applies every migration
(the cost tables are migrations 0100-0149 of collector/storage/migrations)."""
from __future__ import annotations

import os

import duckdb

from collector.settings import Settings
from collector.storage.db import connect as storage_connect


def db_path(path: str | os.PathLike | None = None) -> str:
    """The file to open: the given path, else the settings' (OBSERVATORY_DB, else the default)."""
    return str(path or Settings().db)


def connect(path: str | os.PathLike | None = None, *, must_exist: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the store; `must_exist` for commands that only read (a missing file is an error, not an empty report).
    Raises collector.storage.db.DatabaseUnavailable when the file is missing or locked."""
    target = db_path(path)
    con = storage_connect(target, must_exist=must_exist)
    con.execute("SET TimeZone = 'UTC'")
    return con
