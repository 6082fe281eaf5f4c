"""A migration that fails is not recorded and is reported in one line that names it and says what of it stayed
(collector/storage/db.py: MigrationFailed); one that runs out of memory also names the limit in force and the
setting that raises it. Every command that opens the collector's database for writing applies the operator's
OBSERVATORY_DUCKDB_MEMORY_LIMIT to the migrations it runs (an upgrade's migrations run in whichever command opens
the file first): each is checked here with a migration that needs more than the limit and less than the host has."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from collector.cli import app
from collector.contract.examples import example_event
from collector.storage import db as dbmod
from support import free_port

# Needs ~0.5 GB at once (a list of 4M strings of 100+ bytes, which DuckDB cannot spill): more than 256MiB.
TOO_BIG = "CREATE TABLE too_big AS SELECT list(repeat('x', 100) || i) AS l FROM range(4000000) r(i);"
LIMIT = "256MiB"  # the least the settings accept


def _migrations_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, sql: str,
                     backfill: str | None = None) -> Path:
    """A database migrated to today's schema, then one migration more (and its backfill) in the migrations' place."""
    where = tmp_path / "migrations"
    shutil.copytree(dbmod.MIGRATIONS_DIR, where, ignore=shutil.ignore_patterns("__pycache__"))
    db = tmp_path / "obs.duckdb"
    dbmod.connect(db).close()
    (where / name).write_text(sql)
    if backfill is not None:
        (where / name.replace(".sql", dbmod.BACKFILL)).write_text(backfill)
    monkeypatch.setattr(dbmod, "MIGRATIONS_DIR", where)
    return db


def _column(db: Path, sql: str) -> set:
    """The one column of `sql` over the file, as a set (opened apart from the code under test)."""
    con = duckdb.connect(str(db))
    try:
        return {v for (v,) in con.execute(sql).fetchall()}
    finally:
        con.close()


def _recorded(db: Path) -> set[int]:
    return _column(db, "SELECT version FROM schema_migrations")


def _tables(db: Path) -> set[str]:
    return _column(db, "SELECT table_name FROM duckdb_tables()")


def test_a_failing_migration_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    db = _migrations_with(tmp_path, monkeypatch, "9990_bad_cast.sql",
                          "CREATE TABLE half_done (a INTEGER);\nINSERT INTO half_done VALUES ('not a number');")
    before = _recorded(db)
    with pytest.raises(dbmod.MigrationFailed) as err:
        dbmod.connect(db)
    msg = str(err.value)
    assert msg.startswith("migration 9990_bad_cast.sql failed (nothing of it is kept): "), msg
    assert "Conversion Error" in msg and "not a number" in msg and "\n" not in msg
    assert "OBSERVATORY_DUCKDB_MEMORY_LIMIT" not in msg  # not a matter of memory
    assert isinstance(err.value, dbmod.DatabaseUnavailable)  # what the CLIs print as one line
    assert _recorded(db) == before and "half_done" not in _tables(db)


def test_a_failing_backfill_says_what_stays(tmp_path, monkeypatch):
    db = _migrations_with(
        tmp_path, monkeypatch, "9990_fill.sql",
        "CREATE TABLE IF NOT EXISTS fill_me AS SELECT * FROM (VALUES ('1'), ('2'), ('not a number')) t(s);\n"
        "ALTER TABLE fill_me ADD COLUMN IF NOT EXISTS n INTEGER;",
        backfill="UPDATE fill_me SET n = CAST(s AS INTEGER) WHERE rowid BETWEEN $lo AND $hi")
    before = _recorded(db)
    with pytest.raises(dbmod.MigrationFailed) as err:
        dbmod.connect(db)
    msg = str(err.value)
    assert msg.startswith("migration 9990_fill.sql failed (its schema change and the parts of its fill already "
                          "committed stay; it runs again whole at the next start): "), msg
    assert "not a number" in msg and "\n" not in msg
    assert _recorded(db) == before and "fill_me" in _tables(db)  # its schema part committed, as the message says


def test_a_migration_out_of_memory_names_the_limit_and_the_setting(tmp_path, monkeypatch):
    db = _migrations_with(tmp_path, monkeypatch, "9991_too_big.sql", TOO_BIG)
    before = _recorded(db)
    with pytest.raises(dbmod.MigrationFailed) as err:
        dbmod.connect(db, memory_limit=LIMIT)
    msg = str(err.value)
    assert msg.startswith("migration 9991_too_big.sql failed (nothing of it is kept): "), msg
    assert "Out of Memory" in msg and "\n" not in msg
    assert "Possible solutions" not in msg  # DuckDB's advice names SQL settings the operator cannot reach
    assert "DuckDB's memory limit is 256.0 MiB: raise OBSERVATORY_DUCKDB_MEMORY_LIMIT" in msg
    assert _recorded(db) == before and "too_big" not in _tables(db)
    dbmod.connect(db).close()  # with room enough, the same migration goes through
    assert _recorded(db) == before | {9991}


COMMANDS = {  # each opens the collector's database for writing; its exit status for a database it cannot use
    "serve": (lambda db, tmp: ["serve", "--db", str(db), "--no-auth", "--host", "127.0.0.1",
                               "--port", str(free_port())], 1),
    "ingest --db": (lambda db, tmp: ["ingest", str(_one_event(tmp)), "--db", str(db), "--no-progress"], 1),
    "sli --db": (lambda db, tmp: ["sli", "--db", str(db)], 2),
    "lake export": (lambda db, tmp: ["lake", "export", "--to", str(tmp / "lake"), "--db", str(db)], 1),
    "billing status": (lambda db, tmp: ["billing", "status", "--db", str(db)], 2),
    "report cost": (lambda db, tmp: ["report", "cost", "--db", str(db), "--month", "2026-11",
                                     "--out", str(tmp / "cost.csv")], 2),
}


def _one_event(tmp: Path) -> Path:
    path = tmp / "one.ndjson"
    path.write_text(json.dumps(example_event("notebook.run.started")) + "\n")
    return path


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_migrates_within_the_operators_limit(tmp_path, monkeypatch, command):
    args, status = COMMANDS[command]
    db = _migrations_with(tmp_path, monkeypatch, "9991_too_big.sql", TOO_BIG)
    before = _recorded(db)
    monkeypatch.setenv("OBSERVATORY_DUCKDB_MEMORY_LIMIT", LIMIT)
    import uvicorn

    def served(*_a, **_k):  # the migration went through: serve would now run until stopped
        raise AssertionError("serve started although its migration needs more than the limit")

    monkeypatch.setattr(uvicorn, "run", served)
    result = CliRunner().invoke(app, args(db, tmp_path))
    out = result.output
    assert result.exit_code == status, (result.exit_code, out, result.exception)
    assert "Traceback" not in out and not isinstance(result.exception, AssertionError)
    line = next(x for x in out.splitlines() if "9991_too_big.sql" in x)
    assert "Out of Memory" in line and "raise OBSERVATORY_DUCKDB_MEMORY_LIMIT" in line, out
    assert _recorded(db) == before
