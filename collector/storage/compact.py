"""A compact copy of the collector's database, made while the collector is stopped (`observatory db compact`).

Why: DuckDB keeps the blocks of a dropped or rewritten table as free space for later rows, so a file never shrinks
by itself. A migration that writes a table again (0218 wrote `events` again with `data` stored as ZSTD), or a
history whose old rows were deleted, leaves the file as large as it ever was. DuckDB's own `COPY FROM DATABASE`
writes every table, view, index and sequence into a new file with none of that free space. This wraps it so that an
operator cannot overwrite a file, copy a database the collector still writes to, or swap in a copy that differs
from its source. The source is opened read-only and left as it is. A copy that fails a check is deleted. Each
table's rows are compared by count and by a sum of row hashes, which no order of rows changes. The catalog is
compared by each object's SQL, and each sequence by the value it hands out next, so that a copy's `batch_seq` goes
on where its source's stopped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from collector.storage import db as dbmod
from collector.storage.sqltext import ident, lit


class CompactError(RuntimeError):
    """The copy could not be made or did not match its source; one line for the CLI, the source untouched."""


@dataclass(frozen=True)
class Compacted:
    """What `compact` wrote: the tables and rows copied, and the files' sizes (the source's with its WAL)."""

    db: str
    out: str
    tables: int
    rows: int
    bytes_before: int
    bytes_after: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def _with_wal(path: Path) -> tuple[Path, Path]:
    """The database file and its write-ahead log (DuckDB names it after the file)."""
    return path, path.with_name(path.name + ".wal")


def _size(path: Path) -> int:
    """The file's bytes with its write-ahead log's, if any."""
    return sum(p.stat().st_size for p in _with_wal(path) if p.exists())


def _catalog(con: duckdb.DuckDBPyConnection, database: str) -> list[tuple[str, str, str, str]]:
    """(kind, schema, name, SQL) of every table, view and index the database holds (its sequences: `_sequences`)."""
    return con.execute(
        "SELECT 'table', schema_name, table_name, sql FROM duckdb_tables() WHERE database_name = $d "
        "UNION ALL SELECT 'view', schema_name, view_name, sql FROM duckdb_views() "
        "  WHERE database_name = $d AND NOT internal "
        "UNION ALL SELECT 'index', schema_name, index_name, sql FROM duckdb_indexes() WHERE database_name = $d "
        "ORDER BY ALL", {"d": database}).fetchall()


def _sequences(con: duckdb.DuckDBPyConnection, database: str) -> list[tuple[str, int]]:
    """(name, the value it hands out next) of each sequence: its SQL's START differs between a database and its
    copy (the copy starts where the source is), the next value must not."""
    return con.execute(
        "SELECT schema_name || '.' || sequence_name, coalesce(last_value + increment_by, start_value) "
        "FROM duckdb_sequences() WHERE database_name = $d ORDER BY ALL", {"d": database}).fetchall()


def _fingerprints(con: duckdb.DuckDBPyConnection, database: str,
                  catalog: list[tuple[str, str, str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(rows, sum of the rows' hashes) of each table: equal for two tables that hold the same rows in any order."""
    return {(schema, table): con.execute(f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) "
                                         f"FROM {ident(database)}.{ident(schema)}.{ident(table)} AS t").fetchone()
            for kind, schema, table, _ in catalog if kind == "table"}


def _remove(out: Path) -> None:
    """A copy that failed, and its log, gone."""
    for path in _with_wal(out):
        path.unlink(missing_ok=True)


def _copy_and_check(con: duckdb.DuckDBPyConnection, out: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """Copy the connection's database into the new file `out` and compare the two; the tables' fingerprints."""
    source = con.execute("SELECT current_database()").fetchone()[0]
    copy = "compact_copy" if source != "compact_copy" else "compact_copy_2"
    con.execute("SET enable_progress_bar = false")  # stdout is the command's JSON; the CLI shows a status
    con.execute(f"ATTACH {lit(str(out))} AS {ident(copy)} (READ_WRITE)")
    try:
        con.execute(f"COPY FROM DATABASE {ident(source)} TO {ident(copy)}")
        catalog = _catalog(con, source)
        if _catalog(con, copy) != catalog:
            raise CompactError("the copy's tables, views or indexes differ from the source's; the copy was deleted")
        if _sequences(con, copy) != _sequences(con, source):
            raise CompactError("the copy's sequences would hand out other values than the source's; "
                               "the copy was deleted")
        rows = _fingerprints(con, source, catalog)
        if _fingerprints(con, copy, catalog) != rows:
            raise CompactError("the copy's rows differ from the source's; the copy was deleted")
        con.execute(f"CHECKPOINT {ident(copy)}")
    finally:
        con.execute(f"DETACH {ident(copy)}")
    return rows


def compact(db: Path, out: Path, memory_limit: str | None = None) -> Compacted:
    """Copy the stopped collector's database `db` into the new file `out`, check the copy, and say what it holds.

    Raises `CompactError` when `db` is missing or in use, `out` exists or cannot be written, or the copy does not
    match (the copy is then deleted), `dbmod.DatabaseUnavailable` when `db` cannot be opened for another reason (a
    foreign file)."""
    db, out = Path(db), Path(out)
    if not db.is_file():
        raise CompactError(f"no database at {db}: check --db or OBSERVATORY_DB")
    for path in _with_wal(out):
        if path.exists():
            raise CompactError(f"{path} exists: give --out a new file (a compact copy never overwrites one)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CompactError(f"cannot make the directory of --out {out}: {err.strerror}") from None
    t0 = time.perf_counter()
    try:
        con = dbmod.connect(db, read_only=True, memory_limit=memory_limit)
    except dbmod.DatabaseLocked as err:
        raise CompactError(f"{db} is in use by {err.holder}, probably the running collector: stop it first (a "
                           "compact copy is made from a stopped database, whose file nothing changes meanwhile)"
                           ) from None
    try:
        rows = _copy_and_check(con, out)
    except (duckdb.Error, OSError) as err:  # a full disk, an unwritable --out: one line, no partial copy
        _remove(out)
        raise CompactError(f"copying {db} into {out} failed, nothing was kept: {' '.join(str(err).split())[:300]}"
                           ) from None
    except BaseException:
        _remove(out)
        raise
    finally:
        con.close()
    return Compacted(db=str(db), out=str(out), tables=len(rows), rows=sum(n for n, _ in rows.values()),
                     bytes_before=_size(db), bytes_after=_size(out), seconds=round(time.perf_counter() - t0, 3))
