"""`observatory db compact`: a copy of the stopped collector's database without the free space of dropped tables,
that holds every row, object and sequence of its source, never overwrites a file and never copies a database in
use (collector/storage/compact.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest

from collector.storage import compact as compact_mod
from tests.support import OBSERVATORY, event


def _ndjson(path: Path, ids: range, bad: int = 0) -> Path:
    lines = [orjson.dumps(event(f"e{i}", "notebook.run.succeeded",
                                {"run_id": f"r{i}", "notebook_id": f"nb{i % 7}", "team": f"t{i % 3}",
                                 "duration_seconds": 1.0 + i % 50, "tags": {"k": "v" * (i % 30)}}))
             for i in ids]
    lines += [b'{"not": "an event"}'] * bad
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OBSERVATORY, *args], capture_output=True, text=True, timeout=300)


def _tables(con) -> list[str]:
    return [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]


def _contents(path: Path) -> dict[str, list[tuple]]:
    """Every table's rows, sorted: what a copy must hold, read without the product's code."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in _tables(con)}
    finally:
        con.close()


def _source(tmp_path: Path) -> Path:
    """A database as the bulk command leaves it (events, derived tables, dead letters), grown by a table that was
    written and then dropped, as a migration that writes a table again leaves the old one's blocks behind."""
    db = tmp_path / "obs.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE scratch AS SELECT repeat(md5(i::VARCHAR), 20) AS s FROM range(200000) t(i)")
    con.close()
    r = _run("ingest", str(_ndjson(tmp_path / "a.ndjson", range(3000), bad=2)), "--db", str(db), "--no-progress")
    assert r.returncode == 3, r.stderr  # the two bad lines dead-lettered
    # The rows written after it hold the file's end, so the file cannot be cut short. The drop stays in the WAL, as
    # a collector killed before its checkpoint leaves it: the copy holds what the WAL says.
    subprocess.run([sys.executable, "-c", f"import duckdb, os; c = duckdb.connect({str(db)!r}); "
                    "c.execute(\"SET checkpoint_threshold = '1GB'\"); c.execute('DROP TABLE scratch'); os._exit(0)"],
                   check=True, timeout=120)
    assert Path(f"{db}.wal").exists()
    return db


def test_the_copy_holds_every_row_in_less_space_and_goes_on_where_its_source_stopped(tmp_path):
    src = _source(tmp_path)
    before = _contents(src)
    size_before = src.stat().st_size + Path(f"{src}.wal").stat().st_size
    out = tmp_path / "copy" / "obs.duckdb"

    r = _run("db", "compact", "--db", str(src), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["tables"] == len(before) and doc["rows"] == sum(len(v) for v in before.values())
    assert doc["bytes_before"] == size_before and doc["bytes_after"] == out.stat().st_size
    assert out.stat().st_size < size_before / 2  # the dropped table's ~25 MB are not copied
    assert _contents(out) == before and _contents(src) == before  # the source is left as it was
    assert len(before["events"]) == 3000 and len(before["dead_letters"]) == 2 and "scratch" not in before
    assert Path(f"{src}.wal").exists()

    # The copy in use, as docs/operations.md says: moved over the source, the source's WAL removed.
    out.replace(src)
    Path(f"{src}.wal").unlink()
    out = src

    con = duckdb.connect(str(out))
    try:  # ZSTD for `data` (migration 0218) holds in the copy: its tables are made from their definitions
        con.execute("CHECKPOINT")
        assert {c for (c,) in con.execute("SELECT DISTINCT compression FROM pragma_storage_info('events') "
                                          "WHERE column_name = 'data' AND segment_type <> 'VALIDITY'").fetchall()
                } == {"ZSTD"}
        old_batches = {b for (b,) in con.execute("SELECT batch_id FROM ingest_batches").fetchall()}
        old_dead = {d for (d,) in con.execute("SELECT dl_id FROM dead_letters").fetchall()}
    finally:
        con.close()

    # The copy in use: new events after it, old ones again (duplicates across the copy), a bad line.
    r = _run("ingest", str(_ndjson(tmp_path / "b.ndjson", range(2500, 4000), bad=1)), "--db", str(out),
             "--no-progress")
    assert r.returncode == 3, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["accepted"], summary["duplicates"], summary["rejected"]) == (1000, 500, 1)
    con = duckdb.connect(str(out), read_only=True)
    try:
        batches = {b for (b,) in con.execute("SELECT batch_id FROM ingest_batches").fetchall()}
        dead = {d for (d,) in con.execute("SELECT dl_id FROM dead_letters").fetchall()}
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 4000
    finally:
        con.close()
    assert batches > old_batches and min(batches - old_batches) > max(old_batches)  # the sequences went on
    assert dead > old_dead and min(dead - old_dead) > max(old_dead)


def test_it_refuses_to_overwrite_to_copy_a_database_in_use_or_a_missing_one(tmp_path):
    src = _source(tmp_path)
    taken = tmp_path / "taken.duckdb"
    taken.write_bytes(b"something of value")
    r = _run("db", "compact", "--db", str(src), "--out", str(taken), "--no-progress")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "exists" in r.stderr
    assert taken.read_bytes() == b"something of value"

    out = tmp_path / "copy.duckdb"
    r = _run("db", "compact", "--db", str(tmp_path / "nope.duckdb"), "--out", str(out), "--no-progress")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no database at" in r.stderr
    assert not out.exists()
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a database\n" * 1000)
    r = _run("db", "compact", "--db", str(foreign), "--out", str(out), "--no-progress")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot open the database" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not out.exists() and foreign.read_text() == "not a database\n" * 1000

    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(src)!r}); "
                               "print('ok', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        r = _run("db", "compact", "--db", str(src), "--out", str(out), "--no-progress")
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert f"in use by process {holder.pid}" in r.stderr and "stop it first" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


@pytest.mark.parametrize("check", ["_catalog", "_sequences", "_fingerprints"])
def test_a_copy_that_differs_from_its_source_is_deleted(tmp_path, monkeypatch, check):
    src = _source(tmp_path)
    real = getattr(compact_mod, check)

    def differs(con, database, *rest):  # the copy's side answers something else
        got = real(con, database, *rest)
        return got if database != "compact_copy" else (got[:-1] if isinstance(got, list) else {})

    monkeypatch.setattr(compact_mod, check, differs)
    out = tmp_path / "copy.duckdb"
    with pytest.raises(compact_mod.CompactError, match="differ|other values"):
        compact_mod.compact(src, out)
    assert not out.exists() and not Path(str(out) + ".wal").exists()
    assert _contents(src)["events"]  # the source still opens and holds its rows


def test_a_copy_that_cannot_be_written_says_so_in_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    src = _source(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    r = _run("db", "compact", "--db", str(src), "--out", str(afile / "copy.duckdb"), "--no-progress")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot make the directory" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and afile.read_text() == "not a directory"

    def full_disk(con, database):  # as DuckDB says it when the copy's writes fail midway
        raise duckdb.IOException("Could not write file: No space left on device")

    monkeypatch.setattr(compact_mod, "_catalog", full_disk)
    out = tmp_path / "copy.duckdb"
    with pytest.raises(compact_mod.CompactError, match="failed, nothing was kept: .*No space left") as err:
        compact_mod.compact(src, out)
    assert "\n" not in str(err.value)
    assert not out.exists() and not Path(str(out) + ".wal").exists()
