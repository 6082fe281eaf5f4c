"""Opening the DuckDB store for the cost commands: the collector's `connect`, which applies every migration
(the cost tables are migrations 0100-0149 of collector/storage/migrations)."""
from __future__ import annotations

import os
from pathlib import Path

import duckdb

from collector.settings import Settings
from collector.storage.db import connect as storage_connect


def db_path(path: str | os.PathLike | None = None) -> str:
    """The file to open: the given path, else the settings' (OBSERVATORY_DB, else the default)."""
    return str(path or Settings().db)


def connect(path: str | os.PathLike | None = None) -> duckdb.DuckDBPyConnection:
    target = db_path(path)
    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    con = storage_connect(target)
    con.execute("SET TimeZone = 'UTC'")
    return con
