"""Opening the DuckDB store for the cost commands (thin): the collector's ``connect`` when it exists, which applies
every migration; otherwise a plain DuckDB connection in UTC with the cost migrations (0100-0149) applied."""
from __future__ import annotations

import os
from pathlib import Path

import duckdb

MIGRATIONS = Path(__file__).resolve().parents[1] / "collector" / "storage" / "migrations"
DEFAULT_DB = "./var/observatory.duckdb"


def cost_migrations() -> list[Path]:
    out = []
    for p in sorted(MIGRATIONS.glob("*.sql")):
        head = p.name.split("_", 1)[0]
        if head.isdigit() and 100 <= int(head) <= 149:
            out.append(p)
    return out


def apply_cost_migrations(con: duckdb.DuckDBPyConnection) -> None:
    for p in cost_migrations():
        con.execute(p.read_text())


def db_path(path: str | os.PathLike | None = None) -> str:
    return str(path or os.environ.get("OBSERVATORY_DB") or DEFAULT_DB)


def connect(path: str | os.PathLike | None = None) -> duckdb.DuckDBPyConnection:
    target = db_path(path)
    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    try:
        from collector.storage.db import connect as collector_connect  # type: ignore
    except ImportError:
        collector_connect = None
    if collector_connect is not None:
        con = collector_connect(target)
    else:
        con = duckdb.connect(target)
    con.execute("SET TimeZone = 'UTC'")
    apply_cost_migrations(con)  # idempotent (IF NOT EXISTS); a no-op when the collector applied them
    return con
