"""The writer's connection checkpoints past CHECKPOINT_THRESHOLD of WAL, not DuckDB's 16MB default (db.py says why)."""

from __future__ import annotations

from collector.storage import db as dbmod


def test_write_connections_use_the_larger_checkpoint_threshold(tmp_path):
    con = dbmod.connect(tmp_path / "t.duckdb")
    try:
        expected = con.execute("SELECT current_setting('checkpoint_threshold')").fetchall()
        con.execute("RESET checkpoint_threshold")
        default = con.execute("SELECT current_setting('checkpoint_threshold')").fetchall()
        con.execute(f"SET checkpoint_threshold = '{dbmod.CHECKPOINT_THRESHOLD}'")
        assert con.execute("SELECT current_setting('checkpoint_threshold')").fetchall() == expected
        assert expected != default
    finally:
        con.close()
