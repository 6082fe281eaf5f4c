"""The bulk command commits whole DuckDB row groups (storage.db.ROW_GROUP_ROWS), because DuckDB writes an append of
at least a row group to the database file directly and logs only its place in the WAL. Both facts are DuckDB's:
these tests hold them to the DuckDB installed, so an upgrade that changes either fails here rather than silently
slowing the bulk command down."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from collector.storage import db as dbmod
from collector.storage.db import ROW_GROUP_ROWS, whole_row_groups


def test_row_group_rows_is_the_size_of_duckdbs_row_groups(tmp_path: Path):
    con = dbmod.connect(tmp_path / "t.duckdb")
    try:
        con.execute("CREATE TABLE t (k VARCHAR PRIMARY KEY, v VARCHAR)")
        con.execute(f"INSERT INTO t SELECT 'k' || i, 'v' FROM range({2 * ROW_GROUP_ROWS + 5}) r(i)")
        con.execute("CHECKPOINT")
        groups = con.execute("SELECT row_group_id, sum(count) FROM pragma_storage_info('t') WHERE column_name = 'k' "
                             "AND segment_type <> 'VALIDITY' GROUP BY ALL ORDER BY 1").fetchall()
    finally:
        con.close()
    assert [n for _, n in groups] == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 5]


def _wal_bytes_after_commit(path: Path, rows: int) -> int:
    """The WAL left by one transaction appending `rows` rows (from a registered Arrow table, as the writer does) to
    a keyed table on a connection made as the collector makes its own."""
    con = dbmod.connect(path)
    try:
        con.execute("CREATE TABLE keyed (source VARCHAR, id VARCHAR, data VARCHAR, PRIMARY KEY (source, id))")
        con.execute("CHECKPOINT")
        staged = pa.table({"source": ["s"] * rows, "id": [f"e{i}" for i in range(rows)],
                           "data": [f'{{"kernel_id":"k{i}","team":"ml"}}' for i in range(rows)]})
        con.register("staged", staged)
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO keyed SELECT * FROM staged")
        con.execute("COMMIT")
        wal = path.with_name(path.name + ".wal")
        return wal.stat().st_size if wal.exists() else 0
    finally:
        con.close()


def test_a_commit_of_a_whole_row_group_is_not_copied_into_the_wal(tmp_path: Path):
    whole = _wal_bytes_after_commit(tmp_path / "whole.duckdb", ROW_GROUP_ROWS)
    short = _wal_bytes_after_commit(tmp_path / "short.duckdb", ROW_GROUP_ROWS - 1)
    assert short > 3_000_000  # every row's values, logged: ~30 bytes of data a row at least
    assert whole < short / 20


@pytest.mark.parametrize(("given", "chunk"), [
    (1, ROW_GROUP_ROWS), (5_000, ROW_GROUP_ROWS), (ROW_GROUP_ROWS, ROW_GROUP_ROWS),
    (2 * ROW_GROUP_ROWS - 1, ROW_GROUP_ROWS), (2 * ROW_GROUP_ROWS, 2 * ROW_GROUP_ROWS), (0, ROW_GROUP_ROWS),
])
def test_the_bulk_commit_size_is_whole_row_groups(given: int, chunk: int):
    assert whole_row_groups(given) == chunk
