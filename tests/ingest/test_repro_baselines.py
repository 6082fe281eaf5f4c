"""The reproducibility baselines the deriver keeps (repro_baselines) and the checks it counts.

repro_baselines has no primary key since migration 0210: the deriver finds a pass's stored baselines by a 64-bit
digest of their key and keeps one row per key itself (collector/storage/derive.py: `_fold_baselines`). Held here:
- the baselines and notebook_reproducibility_checks_total equal an independent fold of the same batches, in plain
  Python, with earlier attempts arriving late, ties on the end time and keys shared by many batches; one row per key;
- a stored baseline whose digest equals a candidate's but whose key differs is neither taken nor changed;
- a key stored more than once (a file written by something else) reads as its earliest row, and the read does
  not fail;
- migration 0210 digests the rows stored before it as the deriver digests a candidate, and the digest is MD5's,
  which no DuckDB version changes.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from collector.contract.vectorized import validate_json_items
from collector.ingest.writer import Writer
from collector.metrics.counters import CounterStore
from collector.storage import db as dbmod
from collector.storage.schema import BASELINE_KEY_HASH
from tests.support import database_before, event

T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
KEY = ("notebook_id", "input_hash", "parameters_hash", "env_hash")
CHECKS = "notebook_reproducibility_checks_total"


def _run(run_id: str, attempt: int, end: datetime, *, nb: str = "nb1", inp: str = "i1", out: str = "o1",
         team: str | None = "a") -> dict:
    data = {"run_id": run_id, "attempt": attempt, "notebook_id": nb, "input_hash": inp, "parameters_hash": "p",
            "env_hash": "e", "output_hash": out, "duration_seconds": 5.0}
    if team is not None:
        data["team"] = team
    return event(f"{run_id}.{attempt}", "notebook.run.succeeded", data, time_=end.isoformat())


def _stream(seed: int) -> list[list[dict]]:
    """Succeeded attempts of six keys in random batches: end times in whole minutes (ties), in any order (an
    earlier attempt often arrives after a later one has become the baseline)."""
    rnd = random.Random(seed)
    runs = [_run(f"r{n}", rnd.choice([1, 2]), T0 + timedelta(minutes=rnd.randrange(0, 60)),
                 nb=rnd.choice(["nb1", "nb2", "nb3"]), inp=rnd.choice(["i1", "i2"]), out=rnd.choice(["o1", "o2"]),
                 team=rnd.choice(["a", "b", None]))
            for n in range(80)]
    rnd.shuffle(runs)
    cuts = sorted(rnd.sample(range(1, len(runs)), 15))
    return [runs[a:b] for a, b in zip([0, *cuts], [*cuts, len(runs)])]


def _expected(batches: list[list[dict]]) -> tuple[dict, Counter]:
    """The baselines and checks, folded batch by batch: a key's baseline is its earliest succeeded attempt (end
    time, then run id, then attempt, within a batch); a stored one is replaced only by an attempt that ended
    strictly before it. Each attempt of a batch is compared with the baseline its batch leaves, unless it is it."""
    baselines: dict[tuple, tuple] = {}
    checks: Counter = Counter()
    for b in batches:
        runs = [(tuple(e["data"][k] for k in KEY), datetime.fromisoformat(e["time"]), e["data"]["run_id"],
                 e["data"]["attempt"], e["data"]["output_hash"], e["data"].get("team", "unknown")) for e in b]
        for key in {r[0] for r in runs}:
            first = min((r for r in runs if r[0] == key), key=lambda r: r[1:4])
            if key not in baselines or first[1] < baselines[key][0]:
                baselines[key] = (first[1], first[2], first[3], first[4])
        for key, end, run_id, attempt, out, team in runs:
            base = baselines[key]
            if (run_id, attempt) != (base[1], base[2]):
                checks[(team, "match" if out == base[3] else "mismatch")] += 1
    return baselines, checks


def _ingest(con: duckdb.DuckDBPyConnection, batches: list[list[dict]], deferred: bool = False) -> None:
    w = Writer(con, CounterStore(), defer_derive=deferred, derive_delay=3600)
    w.start()
    try:
        for b in batches:
            got = validate_json_items(b)
            assert not got.rejections, got.rejections[0].errors
            w.submit(got.table, []).result(timeout=30)
        if deferred:
            assert w.wait_derived(timeout=30)
    finally:
        w.stop()


def _stored(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(f"SELECT {', '.join(KEY)}, ended_at, run_id, attempt, output_hash FROM repro_baselines "
                       "ORDER BY ALL").fetchall()


def _checks(con: duckdb.DuckDBPyConnection) -> Counter:
    out: Counter = Counter()
    for labels, value in con.execute("SELECT labels, value FROM metric_counters WHERE name = ?", [CHECKS]).fetchall():
        d = json.loads(labels)
        out[(d["team"], d["result"])] += int(value)
    return out


@pytest.mark.parametrize("deferred", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_baselines_and_checks_equal_an_independent_fold(tmp_path, seed, deferred):
    batches = _stream(seed)
    baselines, checks = _expected(batches)
    con = dbmod.connect(tmp_path / "r.duckdb")
    _ingest(con, batches, deferred)
    assert _stored(con) == sorted((*k, *v) for k, v in baselines.items())
    assert _checks(con) == checks
    assert sum(checks.values()) > 20 and {r for _, r in checks} == {"match", "mismatch"}
    con.close()


def _digest(con: duckdb.DuckDBPyConnection, key: tuple) -> int:
    names = ", ".join(f"$k{i} AS {c}" for i, c in enumerate(KEY))
    return con.execute(f"SELECT {BASELINE_KEY_HASH} FROM (SELECT {names})",
                       {f"k{i}": v for i, v in enumerate(key)}).fetchall()[0][0]


def test_the_digest_is_md5_of_the_key_whatever_the_duckdb_version():
    """The digest is stored (migrations 0210 and 0211), so it must not change with the DuckDB the collector runs on:
    held to MD5 of the key's UTF-8 texts joined by U+001F, computed by hashlib (the digest's last 8 bytes, read
    little-endian, are what md5_number_lower returns; the same in DuckDB 1.4.1 and 2.0.1)."""
    con = duckdb.connect()
    for key in [("nb1", "i1", "p", "e"), ("nötebook-ß", "sha256:" + "ab" * 32, "{}", "e" * 300), ("", "", "", "")]:
        want = int.from_bytes(hashlib.md5("\x1f".join(key).encode()).digest()[8:], "little")
        assert _digest(con, key) == want
    con.close()


def _store(con: duckdb.DuckDBPyConnection, key_hash: int, key: tuple, run_id: str, end: datetime, out: str) -> None:
    con.execute("INSERT INTO repro_baselines VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)", [key_hash, *key, run_id, out, end])


def test_a_stored_baseline_with_the_same_digest_and_another_key_is_not_taken(tmp_path):
    con = dbmod.connect(tmp_path / "r.duckdb")
    mine, other = ("nb1", "i1", "p", "e"), ("nb-other", "i1", "p", "e")
    _store(con, _digest(con, mine), other, "decoy", T0 - timedelta(days=1), "o-decoy")  # earlier, other output
    _ingest(con, [[_run("r1", 1, T0, out="o1")], [_run("r2", 1, T0 + timedelta(minutes=1), out="o1")]])
    assert _stored(con) == sorted([(*mine, T0, "r1", 1, "o1"), (*other, T0 - timedelta(days=1), "decoy", 1, "o-decoy")])
    assert _checks(con) == Counter({("a", "match"): 1})  # r2 against r1, never against the decoy
    con.close()


def test_a_key_stored_twice_reads_as_its_earliest_row(tmp_path):
    con = dbmod.connect(tmp_path / "r.duckdb")
    key = ("nb1", "i1", "p", "e")
    h = _digest(con, key)
    _store(con, h, key, "late", T0 + timedelta(hours=1), "o2")
    _store(con, h, key, "early", T0, "o1")
    _store(con, h, key, "latest", T0 + timedelta(hours=1, minutes=30), "o2")
    _ingest(con, [[_run("r1", 1, T0 + timedelta(hours=2), out="o1")],
                  [_run("r0", 1, T0 - timedelta(hours=1), out="o2")]])
    # r1 is compared with the earliest row (a match: with either other row it would be a mismatch); r0, earlier
    # than all three, becomes the baseline in the earliest row's place (compared with nothing); the others are left
    assert _checks(con) == Counter({("a", "match"): 1})
    assert _stored(con) == [(*key, T0 - timedelta(hours=1), "r0", 1, "o2"),
                            (*key, T0 + timedelta(hours=1), "late", 1, "o2"),
                            (*key, T0 + timedelta(hours=1, minutes=30), "latest", 1, "o2")]
    con.close()


def test_migration_0210_digests_the_stored_baselines_as_the_deriver_does(tmp_path):
    con = database_before(tmp_path / "old.duckdb", 210)
    keys = [(f"nb{n}", f"input-{n}" * n, "p", "e\u00e9") for n in range(1, 6)]
    for n, key in enumerate(keys):
        con.execute("INSERT INTO repro_baselines VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                    [*key, f"old{n}", "o1", T0 - timedelta(days=n + 1)])
    assert 210 in dbmod.apply_migrations(con)
    assert [h for (h,) in con.execute("SELECT key_hash FROM repro_baselines ORDER BY notebook_id").fetchall()] == \
        [_digest(con, k) for k in keys]
    later = [_run(f"r{n}", 1, T0, nb=k[0], inp=k[1], out="o1" if n % 2 else "o2") for n, k in enumerate(keys)]
    for e in later:
        e["data"].update(parameters_hash="p", env_hash="e\u00e9")
    _ingest(con, [later])
    assert _checks(con) == Counter({("a", "match"): 2, ("a", "mismatch"): 3})
    assert con.execute("SELECT count(*), count(DISTINCT run_id) FROM repro_baselines WHERE run_id LIKE 'old%'"
                       ).fetchall() == [(5, 5)]
    assert con.execute("SELECT count(*) FROM repro_baselines").fetchall() == [(5,)]
    con.close()
