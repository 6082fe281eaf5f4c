"""`events.data` stored with ZSTD (migration 0218): DuckDB's own choice, dictionary-FSST, cost a commit a third of
its time in DuckDB and twice the space (docs/performance.md, fifty-second round). The table is written again with
every row, in order, and every constraint; what is stored reads back as it went in, and the compression holds for
rows written after the migration, through the WAL and a checkpoint."""

from __future__ import annotations

import orjson

from collector.contract.vectorized import validate_json_items
from collector.ingest.writer import Writer
from collector.metrics.counters import CounterStore
from collector.storage import db as dbmod
from tests.support import database_before, event


def _ev(i: str) -> dict:
    return event(i, "notebook.run.succeeded", {"run_id": f"r-{i}", "notebook_id": "nb", "team": "t",
                                               "tags": {"k": i}})


def _post(con, events: list[dict]) -> list[str]:
    got = validate_json_items(events)
    assert not got.rejections
    w = Writer(con, CounterStore())
    w.start()
    try:
        return w.submit(got.table, []).result(timeout=30).statuses
    finally:
        w.stop()


def _constraints(con) -> list[tuple]:
    return con.execute("SELECT constraint_type, constraint_column_names FROM duckdb_constraints() "
                       "WHERE table_name = 'events' ORDER BY ALL").fetchall()


def _columns(con) -> list[tuple]:
    return con.execute("SELECT column_name, data_type, is_nullable, column_default FROM duckdb_columns() "
                       "WHERE table_name = 'events' ORDER BY column_index").fetchall()


def _data_compressions(con) -> set[str]:
    """The compressions of the `data` column's segments, its validity's left out."""
    con.execute("CHECKPOINT")
    return {c for (c,) in con.execute("SELECT DISTINCT compression FROM pragma_storage_info('events') "
                                      "WHERE column_name = 'data' AND segment_type <> 'VALIDITY'").fetchall()}


def test_migration_0218_keeps_every_row_in_order_with_its_constraints(tmp_path):
    con = database_before(tmp_path / "old.duckdb", 218)
    for g in range(3):
        assert _post(con, [_ev(f"{g}-{j}") for j in range(5)]) == ["accepted"] * 5
    before = con.execute("SELECT * FROM events ORDER BY rowid").fetchall()
    constraints, columns = _constraints(con), _columns(con)
    assert "ZSTD" not in _data_compressions(con)
    assert 218 in dbmod.apply_migrations(con)
    assert con.execute("SELECT * FROM events ORDER BY rowid").fetchall() == before
    assert _constraints(con) == constraints and _columns(con) == columns
    assert _data_compressions(con) == {"ZSTD"}
    # the writer's index, built from the table written again, still knows every stored key
    assert _post(con, [_ev("1-2"), _ev("9-9")]) == ["duplicate", "accepted"]
    con.close()


def test_stored_data_is_zstd_and_reads_back_as_it_went_in(tmp_path):
    """Rows committed in small groups (logged in the WAL, compressed by the checkpoint) and after a restart."""
    path = tmp_path / "new.duckdb"
    con = dbmod.connect(path)
    sent = [_ev(str(i)) for i in range(3000)]
    for k in range(0, len(sent), 1000):
        assert set(_post(con, sent[k:k + 1000])) == {"accepted"}
    assert _data_compressions(con) == {"ZSTD"}
    con.close()
    con = dbmod.connect(path)
    after = [_ev(f"after-{i}") for i in range(500)]
    assert set(_post(con, after)) == {"accepted"}
    assert _data_compressions(con) == {"ZSTD"}
    stored = dict(con.execute("SELECT id, data FROM events").fetchall())
    assert len(stored) == 3500
    assert all(orjson.loads(stored[e["id"]]) == e["data"] for e in sent + after)
    con.close()

