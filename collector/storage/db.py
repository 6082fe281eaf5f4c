"""Opening the DuckDB file and applying numbered migrations; reading a result as Arrow (`arrow`).

Migrations are plain SQL files `NNNN_name.sql` beside this module, applied in numeric order, each in its own
transaction and recorded in `schema_migrations`, so an old database file is brought forward on start. A migration
that fills a new column for every stored row has that UPDATE in a companion `NNNN_name.backfill.sql` instead, run
over the table a few row groups at a time, each part committed (`BACKFILL_ROWS`): DuckDB holds what one transaction
updates in memory until it commits, which for a 10M-event history came to the whole of a 512MB memory limit
(docs/reliability.md, Restarts). Such a migration is recorded once its backfill has ended, so after a crash it
runs again whole: its schema statements must be re-runnable (`ADD COLUMN IF NOT EXISTS`), and its
UPDATE is (it sets what the stored data says).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from collector import STREAMS, spare_cores
from collector.storage.sqltext import ident, lit

if TYPE_CHECKING:
    import pyarrow as pa

    from collector.settings import Settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# WAL size past which a commit also checkpoints (DuckDB's default is 16MB, about 32,000 events here: a stored event
# takes about 0.5KB of WAL). The checkpoint runs inside the commit that crosses the threshold, so on the
# acknowledgement path, and part of its cost is per checkpoint rather than per event: measured over 200,000 events
# at the HTTP shape (bench/bench_writer.py), checkpoints at 16MB added ~75 ms to the average 4,000-event commit,
# while one checkpoint of the same events at the end cost ~5 CPU-us per event. Durability is the WAL's either way
# (synced on every commit); the price of 128MB is a longer replay after a crash (~3 s, docs/reliability.md) and the
# changes since the last checkpoint held in memory (or spilled to the temp directory past memory_limit).
CHECKPOINT_THRESHOLD = "128MB"

# DuckDB's row group, in rows: the unit its storage writes. A transaction that appends at least a row group to a
# table has its row groups written to the database file once, before the commit, and only their place logged in the
# WAL; a smaller append is copied into the table's last row groups, logged row by row in the WAL and written again
# by the next checkpoint (DuckDB's LocalStorage::Flush). So the bulk command commits whole row groups
# (ingest/files.py): 1M Parquet events 7% less CPU than one row short of it (docs/performance.md, twenty-first
# round). tests/ingest/test_row_groups.py holds this figure and that behaviour to the DuckDB installed.
ROW_GROUP_ROWS = 122_880


def whole_row_groups(rows: int) -> int:
    """`rows` rounded down to whole row groups, at least one: the bulk command's commit size."""
    return ROW_GROUP_ROWS * max(1, rows // ROW_GROUP_ROWS)


_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
BACKFILL = ".backfill.sql"
# An UPDATE's rows per transaction (whole row groups, so that each part rewrites its own): at 10M stored events,
# migration 0214's fill took 225 MiB of DuckDB's memory in these parts (253 in parts of a million rows), against
# 483 MiB (of a 512MB limit) in one transaction, in the same 4.5-5.8 s.
BACKFILL_ROWS = 4 * ROW_GROUP_ROWS
_BACKFILL_TABLE = re.compile(r"^\s*UPDATE\s+([a-z_][a-z0-9_]*)\s", re.IGNORECASE)


def collector_threads(setting: int | None = None, streams: int = STREAMS) -> int:
    """DuckDB's worker threads for the collector's database: `setting` (OBSERVATORY_DUCKDB_THREADS) if given, else
    the cores this process may run on less the `streams` of statements it keeps busy at once, at least one.

    Why not DuckDB's default (one per core): the collector's statements are small and several of its threads issue
    them at once (the writer's group commits, the refresher's fold, whose two sides run in two threads, the API's
    reads), each statement also running on the thread that issued it. Two of those streams keep two cores busy on
    their own; DuckDB's extra workers then split small statements across cores already taken, which costs more than
    it gives. Measured on 2 cores (docs/performance.md, ninth round), one thread against two in the same runs: the
    incremental SLI refresh after 10k events at 10M stored ~97-105 instead of ~112-125 ms, and HTTP ingest's
    collector CPU per event down by a quarter (74 against 103 us, with this round's lighter refresher), while the
    full SLI computation takes ~1.6-1.85 instead of ~0.85 s (its target is 2 s; ~1.0 instead of ~0.7 s since the
    thirty-fourth round). The bulk command
    (`observatory ingest --db`) counts its writer and deriver as two streams too: when its writer was its only stream
    it kept every core (ninth round), but since the deriver folds chunks beside it (and validation holds a core),
    two threads cost 1M Parquet events 8% more wall and 9% more CPU than one (nineteenth round)."""
    return setting or spare_cores(streams)


def migrations() -> list[tuple[int, str, Path]]:
    found = []
    for p in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if p.name.endswith(BACKFILL):
            if not p.with_name(p.name.removesuffix(BACKFILL) + ".sql").is_file():
                raise RuntimeError(f"backfill {p.name!r} has no migration of its name")
            continue
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
        record = ("INSERT INTO schema_migrations (version, name) VALUES ($v, $n)", {"v": version, "n": name})
        try:
            if not _backfill_of(path).is_file():  # the schema change and its record in one transaction
                _transaction(con, path.read_text(), record)
            else:  # recorded once the backfill has ended (the module's docstring)
                _transaction(con, path.read_text())
                backfill(con, path)
                _transaction(con, record)
        except duckdb.Error as err:
            raise MigrationFailed(_migration_failure(con, path, err)) from None
        applied.append(version)
    return applied


def _migration_failure(con: duckdb.DuckDBPyConnection, path: Path, err: duckdb.Error) -> str:
    """One line for an operator: which migration, what is kept, DuckDB's reason, and for a lack of memory the
    limit in force and the setting that raises it (an upgrade's fill is the largest work a start can find)."""
    kept = ("its schema change and the parts of its fill already committed stay; it runs again whole at the next "
            "start" if _backfill_of(path).is_file() else "nothing of it is kept")
    reason = " ".join(str(err).split("Possible solutions:")[0].split())[:300]
    line = f"migration {path.name} failed ({kept}): {reason}"
    if isinstance(err, duckdb.OutOfMemoryException):
        try:
            limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        except duckdb.Error:
            limit = "unknown"
        line += (f". DuckDB's memory limit is {limit}: raise OBSERVATORY_DUCKDB_MEMORY_LIMIT for this start, then "
                 "start again (docs/operations.md)")
    return line


def backfill(con: duckdb.DuckDBPyConnection, migration: Path) -> None:
    """Run `migration`'s backfill (NNNN_name.backfill.sql, if any: one UPDATE of one table, its rows bounded by
    `rowid BETWEEN $lo AND $hi`) over the whole table, BACKFILL_ROWS at a time, each part committed."""
    path = _backfill_of(migration)
    if not path.is_file():
        return
    sql = path.read_text()
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    m = _BACKFILL_TABLE.match(body)
    if not m or "$lo" not in body or "$hi" not in body:
        raise RuntimeError(f"{path.name}: a backfill is one UPDATE bounded by rowid BETWEEN $lo AND $hi")
    last = con.execute(f"SELECT max(rowid) FROM {ident(m.group(1))}").fetchone()[0]
    for lo in range(0, -1 if last is None else last + 1, BACKFILL_ROWS):  # (none for an empty table)
        _transaction(con, (sql, {"lo": lo, "hi": lo + BACKFILL_ROWS - 1}))


def _backfill_of(migration: Path) -> Path:
    return migration.with_name(migration.name.removesuffix(".sql") + BACKFILL)


def _transaction(con: duckdb.DuckDBPyConnection, *statements: str | tuple[str, Mapping[str, Any]]) -> None:
    """The statements (SQL text, or SQL and its parameters) in one transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in statements:
            con.execute(*statement) if isinstance(statement, tuple) else con.execute(statement)
        con.execute("COMMIT")
    except Exception:
        # After some failures (a lack of memory) DuckDB refuses the ROLLBACK too: the statement's own error is the
        # one to report, and the transaction is void either way.
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


class DatabaseUnavailable(RuntimeError):
    """The file cannot be opened for a reason a person can act on (missing, or locked by the running collector);
    the message is one line that says what to do, for the CLIs to print as is."""


class DatabaseLocked(DatabaseUnavailable):
    """Another process holds the file (DuckDB allows one writer process): `holder` names it ("process 123" when
    DuckDB says which), for a command whose advice differs from the default message's (`observatory db compact`
    needs the collector stopped, not asked)."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class MigrationFailed(DatabaseUnavailable):
    """A migration this database has not seen could not be applied: it is not recorded, so the next start runs it
    again, and every command that opens the database for writing says so in one line rather than a traceback."""


_LOCK_PID = re.compile(r"\(PID (\d+)\)")


def connect(path: str | Path, *, read_only: bool = False, memory_limit: str | None = None,
            must_exist: bool = False, threads: int | None = None,
            checkpoint_threshold: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open the database at `path`, in UTC, migrated to the latest schema.

    It is created when missing, unless `must_exist`: commands that only read refuse a path that does not exist
    rather than answer from a new empty database (a `--db` typo would otherwise report zeros and exit 0).
    `checkpoint_threshold`: the WAL size past which a commit checkpoints (None: CHECKPOINT_THRESHOLD), as the
    collector's settings give it (OBSERVATORY_DUCKDB_CHECKPOINT_THRESHOLD).
    """
    path = Path(path)
    if str(path) != ":memory:":
        if must_exist and not path.is_file():
            raise DatabaseUnavailable(f"no database at {path}: check --db or OBSERVATORY_DB (`make run` creates "
                                      "the default one), or ask a running collector with --url")
        path.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, str | int] = {"memory_limit": memory_limit} if memory_limit else {}
    if threads:
        config["threads"] = threads
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as err:
        text = str(err).lower()
        if "could not set lock" not in text and "conflicting lock" not in text:  # not "lock" in any path
            # A corrupted or foreign file: one line for the CLIs, never a traceback.
            raise DatabaseUnavailable(f"{path}: cannot open the database ({' '.join(str(err).split())[:300]})"
                                      ) from None
        pid = _LOCK_PID.search(str(err))
        holder = f"process {pid.group(1)}" if pid else "another process"
        raise DatabaseLocked(
            f"{path} is in use by {holder}, probably the running collector (DuckDB allows one process): ask it "
            "with --url http://HOST:PORT (token: --token or OBSERVATORY_TOKEN), or stop it first", holder) from None
    try:
        con.execute("SET TimeZone = 'UTC'")
        if not read_only:
            con.execute(f"SET checkpoint_threshold = {lit(checkpoint_threshold or CHECKPOINT_THRESHOLD)}")
            apply_migrations(con)
    except BaseException:
        con.close()  # the file is not left open (and locked) behind an error
        raise
    return con


def connect_configured(settings: Settings, **kwargs: Any) -> duckdb.DuckDBPyConnection:
    """`connect` to the settings' database with the settings' memory limit and checkpoint threshold
    (OBSERVATORY_DUCKDB_*). Every command that opens the collector's database for writing goes through here: the
    first to open a file after an upgrade applies its migrations, and an operator's limit must hold for them too."""
    return connect(settings.db, memory_limit=settings.duckdb_memory_limit,
                   checkpoint_threshold=settings.duckdb_checkpoint_threshold, **kwargs)


def arrow(cur: Any, query: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> pa.Table:
    """The rows of `query` as an Arrow table, read once: DuckDB 2.0 copies them again for `execute(...)
    .to_arrow_table()` (and warns), while `sql(...)` refuses to start while a result of `execute()` is unread
    (`fetchone()` of one row leaves it so), hence `complete()` first. `cur`: a DuckDB connection or cursor, or an
    engine's cursor (collector/engines/base.py), which have both."""
    cur.complete()
    return cur.sql(query, params=params).to_arrow_table()
