"""Opening the DuckDB file and applying numbered migrations.

Migrations are plain SQL files `NNNN_name.sql` beside this module, applied in numeric order, each in its own
transaction and recorded in `schema_migrations`, so an old database file is brought forward on start.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def migrations() -> list[tuple[int, str, Path]]:
    found = []
    for p in sorted(MIGRATIONS_DIR.glob("*.sql")):
        m = _NAME.match(p.name)
        if not m:
            raise RuntimeError(f"migration file name {p.name!r} does not match NNNN_name.sql")
        found.append((int(m.group(1)), m.group(2), p))
    versions = [v for v, _, _ in found]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"duplicate migration numbers in {MIGRATIONS_DIR}")
    return found


def apply_migrations(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply the migrations this database has not seen; returns the versions applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, name, path in migrations():
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(path.read_text())
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied


def open_error(db: str | Path, exc: BaseException) -> str:
    """One line telling why the database file cannot be opened (for the CLI: never a traceback)."""
    msg = " ".join(str(exc).split())[:300]
    if isinstance(exc, duckdb.IOException) and ("could not set lock" in msg.lower()
                                                 or "conflicting lock" in msg.lower()):
        return (f"{db} is in use by another process (a running collector?): DuckDB allows one writer. "
                "Stop it, or send events to it with --url http://HOST:PORT")
    if isinstance(exc, OSError):
        return f"{db}: cannot open the database ({exc.strerror or msg})"
    return f"{db}: cannot open the database ({msg})"


def connect(path: str | Path, *, read_only: bool = False, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the database at `path`, in UTC, migrated to the latest schema."""
    path = Path(path)
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    config = {"memory_limit": memory_limit} if memory_limit else {}
    con = duckdb.connect(str(path), read_only=read_only, config=config)
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        apply_migrations(con)
    return con
