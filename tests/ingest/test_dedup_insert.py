"""The writer's insert into `events`: the group's keys looked up in the writer's index of the stored keys, those it
holds read back from the stored rows, and the stored ones left out of the INSERT (collector/ingest/writer.py:
`_insert_events`, collector/ingest/keys.py; `redone["stored_key"]` counts the groups read back). Whichever way a
group goes in, each row is accepted or reported duplicate exactly as by its key, the derived tables and counters
see only the accepted rows, and batch ids go up."""

from __future__ import annotations

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from collector.app import create_app
from collector.contract.vectorized import validate_json_items
from collector.ingest.writer import Writer
from collector.metrics.counters import CounterStore
from collector.settings import Settings
from collector.storage import db as dbmod
from tests.support import event


def _run(i: str, state: str = "succeeded") -> dict:
    return event(i, f"notebook.run.{state}", {"run_id": f"r-{i}", "notebook_id": "nb", "team": "t"})


@pytest.fixture
def store(tmp_path):
    con = dbmod.connect(tmp_path / "w.duckdb")
    counters = CounterStore()
    w = Writer(con, counters)
    w.start()
    yield con, w, counters
    w.stop()
    con.close()


def _submit(w: Writer, events: list[dict]):
    got = validate_json_items(events)
    assert not got.rejections
    return w.submit(got.table, []).result(timeout=30)


def test_a_group_with_a_stored_key_keeps_its_new_rows_and_reports_the_duplicates(store):
    con, w, counters = store
    first = _submit(w, [_run("a"), _run("b")])
    assert first.statuses == ["accepted", "accepted"]
    assert w.stats.redone["stored_key"] == 0  # new keys only: nothing read back
    # c and d are new, a is stored (the index holds it: read back), c is repeated within the group
    second = _submit(w, [_run("c"), _run("a"), _run("d"), _run("c")])
    assert second.statuses == ["accepted", "duplicate", "accepted", "duplicate"]
    assert w.stats.redone["stored_key"] == 1  # read back, once
    assert second.batch_id > first.batch_id
    assert con.execute("SELECT id, batch_id FROM events ORDER BY id").fetchall() == [
        ("a", first.batch_id), ("b", first.batch_id), ("c", second.batch_id), ("d", second.batch_id)]
    # the derived table and the counters saw each attempt once, from its accepted row
    assert con.execute("SELECT run_id, terminal_events FROM run_attempts ORDER BY run_id").fetchall() == [
        ("r-a", 1), ("r-b", 1), ("r-c", 1), ("r-d", 1)]
    assert con.execute("SELECT batch_id, events, duplicates FROM ingest_batches ORDER BY batch_id").fetchall() == [
        (first.batch_id, 2, 0), (second.batch_id, 2, 2)]
    assert counters.value("observatory_events_duplicate_total") == 2
    # a later group of new rows only goes the plain way and keeps counting from there
    third = _submit(w, [_run("e")])
    assert third.statuses == ["accepted"] and third.batch_id > second.batch_id
    assert w.stats.redone == {"stored_key": 1}


def _at(i: str, source: str) -> dict:
    return event(i, "notebook.run.succeeded", {"run_id": f"r-{source}-{i}", "notebook_id": "nb", "team": "t"},
                 source=source)


@pytest.mark.parametrize("group, statuses, redone", [
    # no key twice, none stored: nothing read back, every row accepted
    ([("c", "s3"), ("d", "s4")], ["accepted", "accepted"], 0),
    # a key twice in the group, none stored: the first occurrence only, nothing read back
    ([("c", "s3"), ("d", "s4"), ("c", "s3")], ["accepted", "accepted", "duplicate"], 0),
    # no key twice, one stored: read back and left out
    ([("c", "s3"), ("a", "s1"), ("d", "s4")], ["accepted", "duplicate", "accepted"], 1),
    # both
    ([("a", "s1"), ("c", "s3"), ("c", "s3"), ("d", "s4")], ["duplicate", "accepted", "duplicate", "accepted"], 1),
], ids=["distinct", "repeated", "stored", "repeated-and-stored"])
def test_each_way_a_group_goes_in_answers_by_key_and_marks_the_sources_it_stored(store, group, statuses, redone):
    """The statuses, the stored rows and the sources marked as ingested (`last_ingest_by_source`, the freshness
    gauge's input) whichever of the insert's ways a group takes."""
    con, w, _ = store
    _submit(w, [_at("a", "s1"), _at("b", "s2")])
    w.last_ingest_by_source.clear()
    got = _submit(w, [_at(i, src) for i, src in group])
    assert got.statuses == statuses
    assert w.stats.redone["stored_key"] == redone
    stored = {(i, src) for (i, src), st in zip(group, statuses) if st == "accepted"}
    assert set(con.execute("SELECT id, source FROM events WHERE batch_id = ?", [got.batch_id]).fetchall()) == stored
    assert set(w.last_ingest_by_source) == {src for _, src in stored}


def test_a_group_of_stored_keys_only_inserts_nothing_and_changes_no_derived_row(store):
    con, w, counters = store
    _submit(w, [_run("a", "failed")])
    before = con.execute("SELECT * FROM run_attempts").fetchall()
    again = _submit(w, [_run("a", "failed"), _run("a", "failed")])
    assert again.statuses == ["duplicate", "duplicate"]
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    assert con.execute("SELECT * FROM run_attempts").fetchall() == before
    assert counters.value("observatory_events_duplicate_total") == 2


def test_a_row_that_breaks_another_constraint_still_fails_its_request(store):
    """Only stored keys are left out: any other constraint error fails the request, as before."""
    con, w, _ = store
    got = validate_json_items([_run("x")])
    col = got.table.schema.get_field_index("type")
    bad = got.table.set_column(col, "type", pa.nulls(got.table.num_rows, got.table.schema.field(col).type))
    fut = w.submit(bad, [])
    with pytest.raises(Exception, match="rolled back"):
        fut.result(timeout=30)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 0



def test_redone_transactions_are_exposed_by_reason(tmp_path):
    """`observatory_writer_transactions_redone_total{reason}`: both reasons from the start, stored_key counted
    when a request repeats stored events."""
    app = create_app(Settings(db=tmp_path / "m.duckdb", auth=False, gauge_refresh_seconds=3600))
    with TestClient(app) as client:
        def redone() -> dict[str, float]:
            text = client.get("/metrics").text
            return {s.labels["reason"]: s.value for f in text_string_to_metric_families(text)
                    if f.name == "observatory_writer_transactions_redone" for s in f.samples
                    if s.name.endswith("_total")}

        assert redone() == {"stored_key": 0.0, "before_lookback": 0.0}
        for _ in range(2):
            assert client.post("/v1/events", json=[_run("m1"), _run("m2")]).status_code == 200
        assert redone() == {"stored_key": 1.0, "before_lookback": 0.0}


def test_a_failed_group_does_not_carry_a_stored_key_into_its_error(store, caplog):
    """A group holding a stored key and a row that fails another constraint: the stored key is read back and left
    out, the INSERT fails on the other row. The request fails as before, and neither its error nor the writer's log
    line carries the stored key: keys are request values."""
    con, w, _ = store
    _submit(w, [_run("secret-looking-key")])
    got = validate_json_items([_run("secret-looking-key"), _run("y")])
    col = got.table.schema.get_field_index("type")
    types = got.table.column("type").to_pylist()
    bad = got.table.set_column(col, "type", pa.array([types[0], None], got.table.schema.field(col).type))
    with pytest.raises(Exception, match="rolled back") as failed:
        w.submit(bad, []).result(timeout=30)
    chain, exc = [], failed.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert any("NOT NULL" in c for c in chain), chain  # the second attempt's error is the one reported
    assert not any("secret-looking-key" in c for c in chain), chain
    assert "secret-looking-key" not in caplog.text
    assert w.stats.redone["stored_key"] == 1
