"""Migration 0207: the daily rollup is written when the hourly deltas are merged, not by every fold.

A database folded before it holds appended deltas of both rollups (sli_hourly_delta and sli_daily_delta, the
latter repeating the former by day). The migration merges them; what readers see (slo/sli/sql.py:
ROLLUP_AS_CONTRIB, which now adds the pending hourly deltas to sli_daily by day) must not change.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

import duckdb

from collector.storage import db as dbmod
from slo.sli import sql as Q
from tests.support import database_before

H0 = datetime(2026, 11, 20, 22, 0, tzinfo=timezone.utc)
COLS = "sli, h, team, trigger, good, bad, total"


def _by_day(rows: list[tuple]) -> list[tuple]:
    acc: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for sli, h, team, trig, g, b, t in rows:
        a = acc[(sli, h.replace(hour=0), team, trig)]
        a[0], a[1], a[2] = a[0] + g, a[1] + b, a[2] + t
    return [(*k, *v) for k, v in acc.items()]


def _view(con: duckdb.DuckDBPyConnection, table: str, unit: str) -> dict[tuple, tuple]:
    """What a reader sums per bucket (zero buckets left out: they contribute nothing)."""
    sql = Q.ROLLUP_AS_CONTRIB.format(piece=unit, table=table, unit=unit, where="true")
    rows = con.execute(f"SELECT sli, t, team, trigger, sum(good), sum(bad), sum(total) FROM ({sql}) GROUP BY ALL"
                       ).fetchall()
    return {r[:4]: r[4:] for r in rows if any(r[4:])}


def _old_view(con: duckdb.DuckDBPyConnection, table: str) -> dict[tuple, tuple]:
    rows = con.execute(f"SELECT sli, h, team, trigger, sum(good), sum(bad), sum(total) FROM "
                       f"(SELECT * FROM {table} UNION ALL SELECT * FROM {table}_delta) GROUP BY ALL").fetchall()
    return {r[:4]: r[4:] for r in rows if any(r[4:])}


def test_merging_the_old_deltas_keeps_what_readers_see(tmp_path):
    con = database_before(tmp_path / "old.duckdb", 207)
    hour = [("M1", H0, "ml", "scheduled", 3.0, 1.0, 4.0), ("M2", H0 + timedelta(hours=1), "ml", "", 2.0, 0.0, 2.0),
            ("M1", H0 - timedelta(days=2), "ds", "manual", 1.0, 0.0, 1.0)]
    delta = [("M1", H0, "ml", "scheduled", 1.0, 0.0, 1.0),  # onto a stored bucket
             ("M2", H0 + timedelta(hours=1), "ml", "", -2.0, 0.0, -2.0),  # a retraction: the bucket sums to zero
             ("M6", H0 + timedelta(hours=3), "ds", "", 0.0, 1.0, 1.0),  # a new bucket, the next day
             ("M6", H0 + timedelta(hours=3), "ds", "", 1.0, 0.0, 1.0)]  # appended twice (two folds)
    for table, rows in (("sli_hourly", hour), ("sli_hourly_delta", delta), ("sli_daily", _by_day(hour)),
                        ("sli_daily_delta", _by_day(delta))):
        con.executemany(f"INSERT INTO {table} ({COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    before = {"hour": _old_view(con, "sli_hourly"), "day": _old_view(con, "sli_daily")}
    assert 207 in dbmod.apply_migrations(con)
    assert _view(con, "sli_hourly", "hour") == before["hour"]
    assert _view(con, "sli_daily", "day") == before["day"]
    assert con.execute("SELECT count(*) FROM sli_hourly_delta").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM sli_hourly WHERE good = 0 AND bad = 0 AND total = 0").fetchone()[0] == 0
    assert not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'sli_daily_delta'").fetchone()[0]
    # from now on a fold appends by hour only, and readers see those rows in both rollups
    con.execute(f"INSERT INTO sli_hourly_delta ({COLS}) VALUES ('M1', $h, 'ml', 'scheduled', 5, 0, 5)",
                {"h": H0 + timedelta(hours=1)})
    assert _view(con, "sli_hourly", "hour")[("M1", H0 + timedelta(hours=1), "ml", "scheduled")] == (5.0, 0.0, 5.0)
    assert _view(con, "sli_daily", "day")[("M1", H0.replace(hour=0), "ml", "scheduled")] == (9.0, 1.0, 10.0)
    con.close()
