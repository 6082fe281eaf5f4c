"""A migration that fills a new column for the stored rows (NNNN_name.backfill.sql) runs its UPDATE a few row groups
per transaction, each committed (collector/storage/db.py): what one transaction updates stays in DuckDB's memory
until it commits, which for a 10M-event history came to the whole of a 512MB memory limit. Interrupted between two
parts, the migration is not recorded and runs again whole at the next start."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from collector.storage import db as dbmod
from support import database_before

N = 2_500  # events stored before migration 0214; parts of 1,000 rows below


def _old_file(path: Path) -> tuple[duckdb.DuckDBPyConnection, list[tuple]]:
    """A file as a collector before 0214 left it, with N events: every 7th an artifact publication (every other one
    stating an SLA, every third `critical`), the rest run events; and the (id, artifact, sla_seconds, critical)
    each should get, worked out here from what was stored."""
    con = database_before(path, 214)
    rows, want = [], []
    for i in range(N):
        if i % 7 == 0:
            data = {"notebook_id": "nb", "artifact": f"s3://b/{i}"}
            if i % 2 == 0:
                data["sla_seconds"] = 60 + i
            if i % 3 == 0:
                data["critical"] = i % 2 == 0
        else:
            data = {"notebook_id": "nb", "run_id": f"r{i}"}
        rows.append((f"e{i:05d}", "notebook.artifact.published" if "artifact" in data else "notebook.run.started",
                     json.dumps(data)))
        sla = data.get("sla_seconds")
        want.append((f"e{i:05d}", data.get("artifact"), None if sla is None else float(sla), data.get("critical")))
    con.executemany("INSERT INTO events (source, id, type, time, data, ingested_at, batch_id) "
                    "VALUES ('s', ?, ?, TIMESTAMPTZ '2026-01-01', ?, now(), 1)", rows)
    return con, want


class _FailingPart:
    """The connection, but the `fail_at`-th run of a backfill's UPDATE raises (a crash between two parts)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, fail_at: int) -> None:
        self._con, self._left = con, fail_at

    def execute(self, sql: str, *args):
        if "rowid BETWEEN $lo AND $hi" in sql:
            self._left -= 1
            if self._left == 0:
                raise duckdb.OutOfMemoryException("Out of Memory Error: (the test's)")
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._con, name)


def _stored(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT id, artifact, sla_seconds, critical FROM events ORDER BY rowid").fetchall()


def test_a_backfill_commits_part_by_part_and_an_interrupted_one_runs_again(tmp_path, monkeypatch):
    monkeypatch.setattr(dbmod, "BACKFILL_ROWS", 1_000)
    con, want = _old_file(tmp_path / "old.duckdb")
    with pytest.raises(dbmod.MigrationFailed, match=r"^migration 0214_event_artifact_fields\.sql failed \(its schema "
                       r"change and the parts of its fill already committed stay; it runs again whole at the next "
                       r"start\): .*the test's"):
        dbmod.apply_migrations(_FailingPart(con, fail_at=3))
    # the first two parts (rowids 0-1,999) committed; the third rolled back; 0214 not recorded
    assert con.execute("SELECT count(*) FROM schema_migrations WHERE version >= 214").fetchone()[0] == 0
    got = _stored(con)
    assert got[:2_000] == want[:2_000]
    assert all(r[1:] == (None, None, None) for r in got[2_000:])
    assert any(w[1] is not None for w in want[2_000:])  # (so the line above says something)
    # the next start runs 0214 again whole: its ALTERs are re-runnable, its UPDATE sets the same values
    applied = dbmod.apply_migrations(con)
    assert applied[0] == 214
    assert _stored(con) == want
    assert dbmod.apply_migrations(con) == []
    con.close()


def test_a_backfill_runs_in_parts_of_whole_row_groups():
    assert dbmod.BACKFILL_ROWS % dbmod.ROW_GROUP_ROWS == 0


@pytest.mark.parametrize("files, problem", [
    ({"0001_a.sql": "CREATE TABLE t (x INT, y INT);", "0002_b.backfill.sql": "UPDATE t SET y = x"},
     "has no migration of its name"),
    ({"0001_a.sql": "CREATE TABLE t (x INT, y INT);", "0001_a.backfill.sql": "UPDATE t SET y = x"},
     "bounded by rowid BETWEEN $lo AND $hi"),
    ({"0001_a.sql": "CREATE TABLE t (x INT, y INT);",
      "0001_a.backfill.sql": "DELETE FROM t WHERE rowid BETWEEN $lo AND $hi"}, "one UPDATE"),
])
def test_a_malformed_backfill_is_refused_by_name(tmp_path, monkeypatch, files, problem):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(dbmod, "MIGRATIONS_DIR", tmp_path)
    con = duckdb.connect()
    with pytest.raises(RuntimeError, match=problem.replace("$", r"\$")) as err:
        dbmod.apply_migrations(con)
    assert ".backfill.sql" in str(err.value)
    con.close()
