"""Opening the DuckDB store for the cost commands: the collector's `connect`, which applies every migration
(the cost tables are migrations 0100-0149 of collector/storage/migrations)."""
from __future__ import annotations

import os
from pathlib import Path

import duckdb

from collector.settings import Settings
from collector.storage.db import connect_configured


def connect(where: str | os.PathLike | Settings | None = None, *,
            must_exist: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the store: `where` is a file, or a command's settings (their file and their DuckDB limits); none, the
    environment's (OBSERVATORY_DB, else the default). `must_exist` for commands that only read (a missing file is an
    error, not an empty report). Raises collector.storage.db.DatabaseUnavailable when the file is missing or locked,
    or a migration fails."""
    settings = where if isinstance(where, Settings) else Settings(**({"db": Path(where)} if where else {}))
    return connect_configured(settings, must_exist=must_exist)
