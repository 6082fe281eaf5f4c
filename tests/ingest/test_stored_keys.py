"""The writer's index of the stored keys (collector/ingest/keys.py), its dedup since migration 0217 dropped the
primary key of `events`: it must answer as the key did. Every stored key is found, after a restart too (the index
is built from the table); no new key is taken for a stored one, also when hashes collide (a hash held is read back
from the stored rows and compared in full); the levels merge and the filter grows without losing a key. The key's
own tests (test_dedup_insert.py, test_durability.py under SIGKILL, test_file_ingest.py for a file twice) run as
they were."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from collector.contract.vectorized import validate_json_items
from collector.ingest import keys as keys_mod
from collector.ingest.keys import StoredKeys
from collector.ingest.writer import Writer
from collector.metrics.counters import CounterStore
from collector.storage import db as dbmod
from tests.support import database_before, event


def _ev(i: str, source: str = "s1") -> dict:
    return event(i, "notebook.run.succeeded", {"run_id": f"r-{source}-{i}", "notebook_id": "nb", "team": "t"},
                 source=source)


class _Colliding(StoredKeys):
    """Every key gets the same hash: only the read-back of the stored rows can tell keys apart."""

    def hashes(self, keys: pl.DataFrame) -> np.ndarray:
        return np.full(keys.height, 7, np.uint64)


@pytest.fixture
def con(tmp_path):
    c = dbmod.connect(tmp_path / "k.duckdb")
    yield c
    c.close()


def _post(w: Writer, events: list[dict]) -> list[str]:
    got = validate_json_items(events)
    assert not got.rejections
    return w.submit(got.table, []).result(timeout=30).statuses


def _writer(con, keys: StoredKeys | None = None) -> Writer:
    w = Writer(con, CounterStore())
    if keys is not None:
        w.keys = keys
    w.start()
    return w


def _frame(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame({"source": [s for s, _ in pairs], "id": [i for _, i in pairs]})


@pytest.mark.parametrize("asked, stored", [
    # (source, id) asked -> which are stored (a: s1 and s2, b: s1 are)
    ([("s1", "a"), ("s9", "a"), ("s1", "z")], [True, False, False]),
    ([("s2", "a"), ("s2", "b")], [True, False]),
    ([("s1", "b"), ("s1", "a"), ("s2", "a")], [True, True, True]),
    ([("s1", "A"), ("s1a", ""), ("", "s1a")], [False, False, False]),
], ids=["one-stored", "same-id-other-source", "all-stored", "near-misses"])
@pytest.mark.parametrize("index", [StoredKeys, _Colliding], ids=["hashed", "colliding"])
def test_a_restart_finds_exactly_the_stored_keys(con, asked, stored, index):
    """An index built from the table (a start) answers for each key as the stored rows do, whatever the hashes."""
    w = _writer(con)
    try:
        assert _post(w, [_ev("a", "s1"), _ev("b", "s1")]) == ["accepted", "accepted"]
        assert _post(w, [_ev("a", "s2")]) == ["accepted"]
    finally:
        w.stop()
    keys = index.load(con)
    assert keys.count == 3
    frame = _frame(asked)
    con.execute("BEGIN TRANSACTION")
    got = keys.stored(con, frame, keys.hashes(frame))
    con.execute("COMMIT")
    assert (got.tolist() if got is not None else [False] * len(asked)) == stored


@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_a_start_on_few_stored_events_builds_its_index(con, n):
    """However few events are stored (none, one), the index a start builds finds them, and new keys are new."""
    if n:
        w = _writer(con)
        try:
            _post(w, [_ev(str(i)) for i in range(n)])
        finally:
            w.stop()
    w = _writer(con)
    try:
        assert w.keys.count == n
        assert _post(w, [_ev(str(i)) for i in range(n + 1)]) == ["duplicate"] * n + ["accepted"]
    finally:
        w.stop()


def test_keys_whose_hashes_collide_are_each_stored_once(con):
    """With every hash equal, each new key is still new and each stored one still a duplicate, across groups and a
    restart: a hash held is never taken for the key."""
    w = _writer(con, _Colliding())
    try:
        assert _post(w, [_ev("a"), _ev("b")]) == ["accepted", "accepted"]
        assert _post(w, [_ev("c"), _ev("a"), _ev("c")]) == ["accepted", "duplicate", "duplicate"]
        assert w.stats.redone["stored_key"] == 1
    finally:
        w.stop()
    w = _writer(con, _Colliding.load(con))
    try:
        assert _post(w, [_ev("d"), _ev("b"), _ev("a", "s2")]) == ["accepted", "duplicate", "accepted"]
    finally:
        w.stop()
    assert con.execute("SELECT source, id FROM events ORDER BY ALL").fetchall() == [
        ("s1", "a"), ("s1", "b"), ("s1", "c"), ("s1", "d"), ("s2", "a")]


def test_the_levels_merge_and_the_filter_grows_without_losing_a_key(con, monkeypatch):
    """Small levels and a small filter, so that chunks merge into the recent level, the recent level into the base,
    and the filter is refilled larger, several times over: after each group every key posted so far is a
    duplicate and every other new."""
    monkeypatch.setattr(keys_mod, "CHUNKS", 3)
    monkeypatch.setattr(keys_mod, "RECENT", 20)
    monkeypatch.setattr(keys_mod, "MIN_WORDS", 4)
    w = _writer(con, StoredKeys())
    sizes = set()
    try:
        posted: list[dict] = []
        for g in range(16):
            group = [_ev(f"{g}-{j}") for j in range(5)]
            assert _post(w, group) == ["accepted"] * 5
            posted += group
            again = posted[::3] + [_ev(f"new-{g}")]
            assert _post(w, again) == ["duplicate"] * (len(again) - 1) + ["accepted"]
            posted.append(again[-1])
            sizes.add(len(w.keys._words))
            assert w.keys.count == len(posted)
        assert len(w.keys._base.h) > 0 and len(sizes) > 1  # merged into the base; the filter grew
    finally:
        w.stop()
    assert con.execute("SELECT count(*), count(DISTINCT (source, id)) FROM events").fetchall() == [
        (len(posted), len(posted))]


def test_migration_0217_keeps_every_row_in_order_and_drops_only_the_key(tmp_path):
    """A database from before 0217: its events are written again in their order, with their constraints but the
    key, and a writer on it finds its stored keys."""
    con = database_before(tmp_path / "old.duckdb", 217)
    w = _writer(con)
    try:
        for g in range(3):
            _post(w, [_ev(f"{g}-{j}") for j in range(4)])
    finally:
        w.stop()
    before = con.execute("SELECT * FROM events ORDER BY rowid").fetchall()
    assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'events' "
                       "AND constraint_type = 'PRIMARY KEY'").fetchall() == [(1,)]
    assert 217 in dbmod.apply_migrations(con)
    assert con.execute("SELECT * FROM events ORDER BY rowid").fetchall() == before
    constraints = con.execute("SELECT constraint_type, constraint_column_names FROM duckdb_constraints() "
                              "WHERE table_name = 'events' ORDER BY ALL").fetchall()
    assert [c for c in constraints if c[0] == "PRIMARY KEY"] == []
    assert sorted(c[1][0] for c in constraints if c[0] == "NOT NULL") == sorted(
        ["source", "id", "type", "time", "data", "redactions", "ingested_at", "batch_id"])
    w = _writer(con)
    try:
        assert _post(w, [_ev("1-2"), _ev("9-9")]) == ["duplicate", "accepted"]
    finally:
        w.stop()
    con.close()


def test_the_key_index_gauges_count_the_stored_events(tmp_path):
    """`observatory_writer_key_index_keys` is the number of rows in `events`, after new and repeated requests and
    after a restart (the index built from the table); `..._bytes` is what its arrays hold: 16 bytes per key (hash
    and batch id) and the filter's least size, 8 bytes a word, at this size."""
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from collector.app import create_app
    from collector.settings import Settings

    def gauges(client) -> dict[str, float]:
        return {f.name: f.samples[0].value for f in text_string_to_metric_families(client.get("/metrics").text)
                if f.name.startswith("observatory_writer_key_index_")}

    settings = Settings(db=tmp_path / "g.duckdb", auth=False, gauge_refresh_seconds=3600)
    for restart in range(2):
        with TestClient(create_app(settings)) as client:
            for batch in range(3):
                events = [_ev(f"{restart}-{batch}-{j}") for j in range(7)] + [_ev("0-0-0")]
                assert client.post("/v1/events", json=events).status_code == 200
            with client.app.state.store.read_cursor() as cur:
                stored = cur.execute("SELECT count(*) FROM events").fetchall()[0][0]
            assert gauges(client) == {"observatory_writer_key_index_keys": stored,
                                      "observatory_writer_key_index_bytes": 16 * stored + 8 * keys_mod.MIN_WORDS}
    assert stored == 2 * 3 * 7
