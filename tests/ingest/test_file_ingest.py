"""`observatory ingest`: every input format, dead letters with line/index and field path, idempotence, the CLI
(in process and as a real subprocess), `--url` against a real collector, the locked-database error, and a
planted secret that must never reach the database file."""

from __future__ import annotations

import gzip
import json
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from collector.ingest import files as file_ingest
from collector.cli import app
from collector.ingest.files import IngestError, ingest_files_to_db, ingest_files_to_url
from collector.storage.schema import INGEST_SCHEMA
from tests.support import OBSERVATORY, Collector, refuse_to_derive

NOW = datetime.now(timezone.utc)
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
PG_PASSWORD = "hunter2secret"


def ev(i: int, type_: str = "notebook.kernel.started", data: dict | None = None, **kw) -> dict:
    return {"specversion": "1.0", "id": f"e{i}", "source": "file://test", "type": type_,
            "time": (NOW - timedelta(minutes=i + 1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "data": data if data is not None else {"kernel_id": f"k{i}", "team": "ml"}, **kw}


EVENTS = [ev(i) for i in range(6)] + [
    ev(6, "notebook.run.succeeded", {"run_id": "r1", "notebook_id": "nb", "team": "ml", "duration_seconds": 12.5,
                                     "cells": [{"index": 0, "duration_seconds": 1.5, "status": "ok"}]}),
    ev(7, "platform.probe", {"target": "hub/ui", "ok": True, "latency_seconds": 0.02}),
]


def db_rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def write_ndjson(path: Path, items: list, gz: bool = False) -> Path:
    body = b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in items)
    path.write_bytes(gzip.compress(body) if gz else body)
    return path


# ---------------------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------------------


def _parquet_string(path: Path) -> Path:
    pq.write_table(pa.table({
        "specversion": [e["specversion"] for e in EVENTS], "id": [e["id"] for e in EVENTS],
        "source": [e["source"] for e in EVENTS], "type": [e["type"] for e in EVENTS],
        "time": [e["time"] for e in EVENTS], "subject": [None] * len(EVENTS),
        "data": [orjson.dumps(e["data"]).decode() for e in EVENTS],
    }), path)
    return path


def _parquet_struct(path: Path) -> Path:
    probes = [e for e in EVENTS if e["type"] == "notebook.kernel.started"]
    pq.write_table(pa.table({
        "specversion": ["1.0"] * len(probes), "id": [e["id"] for e in probes], "source": ["file://test"] * len(probes),
        "type": [e["type"] for e in probes],
        "time": pa.array([datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in probes],
                         pa.timestamp("us", tz="UTC")),
        "data": pa.array([e["data"] for e in probes], pa.struct([("kernel_id", pa.string()), ("team", pa.string())])),
    }), path)
    return path


FORMATS = {
    "events.ndjson": lambda p: write_ndjson(p, EVENTS),
    "events.jsonl": lambda p: write_ndjson(p, EVENTS),
    "events.ndjson.gz": lambda p: write_ndjson(p, EVENTS, gz=True),
    "events.json": lambda p: (p.write_bytes(orjson.dumps(EVENTS)), p)[1],
    "one.json": lambda p: (p.write_bytes(orjson.dumps(EVENTS[0])), p)[1],
    "events.json.gz": lambda p: (p.write_bytes(gzip.compress(orjson.dumps(EVENTS))), p)[1],
    "events.parquet": _parquet_string,
    "struct.parquet": _parquet_struct,
    "no_extension": lambda p: write_ndjson(p, EVENTS),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_format_is_ingested(tmp_path: Path, name: str):
    path = FORMATS[name](tmp_path / name)
    expected = {"one.json": 1, "struct.parquet": 6}.get(name, len(EVENTS))
    db = tmp_path / "o.duckdb"
    s = ingest_files_to_db([path], db, progress=False)
    assert (s["files"], s["events"], s["accepted"], s["duplicates"], s["rejected"]) == (1, expected, expected, 0, 0)
    assert db_rows(db, "SELECT count(*) FROM events")[0][0] == expected
    if name != "one.json" and name != "struct.parquet":
        # The derived tables are maintained by the same writer transaction as the API's.
        assert db_rows(db, "SELECT state, duration_seconds FROM run_attempts") == [("succeeded", 12.5)]
        assert db_rows(db, "SELECT count(*) FROM kernel_sessions")[0][0] == 6
    rows = db_rows(db, "SELECT data FROM events WHERE id = 'e0'")
    assert json.loads(rows[0][0]) == {"team": "ml", "kernel_id": "k0"}


def test_unknown_format_missing_file_and_bad_gzip_are_precise(tmp_path: Path):
    odd = tmp_path / "events.txt"
    odd.write_text("hello world\n")
    with pytest.raises(IngestError, match="unknown format"):
        ingest_files_to_db([odd], tmp_path / "o.duckdb", progress=False)
    with pytest.raises(IngestError, match="no such file"):
        ingest_files_to_db([tmp_path / "nope.ndjson"], tmp_path / "o.duckdb", progress=False)
    bad = tmp_path / "x.ndjson.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(IngestError, match="not gzip"):
        ingest_files_to_db([bad], tmp_path / "o.duckdb", progress=False)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"a": 1},')
    with pytest.raises(IngestError, match="not valid JSON"):
        ingest_files_to_db([broken], tmp_path / "o.duckdb", progress=False)
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "thin.parquet")
    with pytest.raises(IngestError, match="lacks the column"):
        ingest_files_to_db([tmp_path / "thin.parquet"], tmp_path / "o.duckdb", progress=False)


# ---------------------------------------------------------------------------------------------------------
# Bad lines and events, idempotence
# ---------------------------------------------------------------------------------------------------------


def _mixed_file(path: Path) -> Path:
    lines = [orjson.dumps(EVENTS[0]), b"", orjson.dumps(EVENTS[1]), b'{"specversion": "1.0", "id": "broken',
             orjson.dumps(ev(20, data={"team": "ml"})),                                   # kernel_id missing
             orjson.dumps(ev(21, "notebook.kernel.died", {"kernel_id": "k", "reason": "meteor"})),
             orjson.dumps(ev(22, "no.such.type")),
             orjson.dumps(EVENTS[2])]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_broken_line_and_invalid_events_are_dead_lettered_and_the_rest_stored(tmp_path: Path):
    db = tmp_path / "o.duckdb"
    path = _mixed_file(tmp_path / "mixed.ndjson")
    s = ingest_files_to_db([path], db, chunk_rows=3, progress=False)  # several chunks: indexes stay file-wide
    assert (s["events"], s["accepted"], s["rejected"]) == (7, 3, 4)
    assert sorted(r[0] for r in db_rows(db, "SELECT id FROM events")) == ["e0", "e1", "e2"]
    dl = db_rows(db, "SELECT channel, request_id, item_index, reason, errors, event_id FROM dead_letters "
                     "ORDER BY item_index")
    assert [d[0] for d in dl] == ["file"] * 4
    assert all(d[1] == f"file:{path}" for d in dl)
    by_index = {d[2]: (d[3], json.loads(d[4]), d[5]) for d in dl}
    assert sorted(by_index) == [2, 3, 4, 5]  # the blank physical line is not an event
    reason, errors, _ = by_index[2]
    assert reason == "json_invalid" and errors[0]["path"] == "" and errors[0]["message"].startswith("line 4:")
    assert by_index[3][1][0]["path"] == "data.kernel_id" and by_index[3][0] == "missing"
    assert by_index[4][1][0]["path"] == "data.reason" and by_index[4][2] == "e21"
    assert by_index[5][1][0]["path"] == "type" and by_index[5][0] == "unknown_type"
    assert {tuple(x["errors"][0].values())[:1] for x in s["rejected_samples"]}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("block", [5, 64, 1 << 20])
def test_ndjson_read_in_blocks_of_any_size_gives_the_same_events_and_line_numbers(tmp_path: Path, monkeypatch,
                                                                                   block: int, gz: bool):
    """The reader splits blocks of READ_BYTES into lines that are views of the block: lines longer than a block,
    chunks that span blocks, CRLF endings, a blank line and a last line without a newline come out as from one
    block, each event with its file-wide index and each rejection with its physical line number."""
    lines = [orjson.dumps(ev(i)) for i in range(10)]
    body = (lines[0] + b"\r\n\n" + b"\n".join(lines[1:5]) + b"\n" + b'{"specversion": "1.0", "id": "broken\n'
            + b"\r\n".join(lines[5:]))
    path = tmp_path / ("blocks.ndjson.gz" if gz else "blocks.ndjson")
    path.write_bytes(gzip.compress(body) if gz else body)
    monkeypatch.setattr(file_ingest, "READ_BYTES", block)
    db = tmp_path / "o.duckdb"
    s = ingest_files_to_db([path], db, chunk_rows=3, progress=False)
    assert (s["events"], s["accepted"], s["rejected"]) == (11, 10, 1)
    assert sorted(int(i[1:]) for (i,) in db_rows(db, "SELECT id FROM events")) == list(range(10))
    (index, reason, errors), = db_rows(db, "SELECT item_index, reason, errors FROM dead_letters")
    assert (index, reason) == (5, "json_invalid")
    assert json.loads(errors)[0]["message"].startswith("line 7:")  # after e0, a blank line and e1-e4


def test_a_json_array_file_is_validated_item_by_item_like_its_ndjson(tmp_path: Path, monkeypatch):
    """A JSON document's items go to the validator as texts (no whole-file parse, the struct stage decides them):
    the same summary, stored rows and dead letters as the same events in NDJSON, across chunks."""
    import collector.ingest.files as files

    items = [orjson.loads(x) for x in _mixed_file(tmp_path / "m.ndjson").read_bytes().split(b"\n")
             if x.strip() and not x.startswith(b'{"specversion": "1.0", "id": "broken')]
    nd = write_ndjson(tmp_path / "same.ndjson", items)
    doc = tmp_path / "same.json"
    doc.write_bytes(b" [\n" + b",\n ".join(orjson.dumps(x) for x in items) + b"\n] ")

    class NoWholeParse:
        JSONDecodeError = orjson.JSONDecodeError

        @staticmethod
        def loads(_raw):
            raise AssertionError("the file was parsed whole")

    monkeypatch.setattr(files, "orjson", NoWholeParse)
    got = ingest_files_to_db([doc], tmp_path / "a.duckdb", chunk_rows=2, progress=False)
    monkeypatch.undo()
    want = ingest_files_to_db([nd], tmp_path / "b.duckdb", chunk_rows=2, progress=False)
    assert (got["events"], got["accepted"], got["rejected"]) == (want["events"], want["accepted"], want["rejected"]) \
        == (6, 3, 3)
    q_events = "SELECT source, id, type, time, data, redactions FROM events ORDER BY id"
    q_dead = "SELECT item_index, reason, errors, payload, event_id FROM dead_letters ORDER BY item_index"
    for q in (q_events, q_dead):
        assert db_rows(tmp_path / "a.duckdb", q) == db_rows(tmp_path / "b.duckdb", q)


@pytest.mark.parametrize("body", [
    b'[{"specversion": "1.0", "id": "\xff"}]',  # not UTF-8: msgspec's split does not read strings, orjson refuses
    b'[{"a": 1},]',
    b"[" + b"[" * 1100 + b"]" * 1100 + b"]",
])
def test_an_unreadable_json_file_is_refused_whole_and_nothing_is_stored(tmp_path: Path, body: bytes):
    path = tmp_path / "bad.json"
    path.write_bytes(b"[" + b",".join(orjson.dumps(e) for e in EVENTS) + b"," + body[1:])
    db = tmp_path / "o.duckdb"
    with pytest.raises(IngestError, match="not valid JSON"):
        ingest_files_to_db([path], db, chunk_rows=2, progress=False)
    assert db_rows(db, "SELECT count(*) FROM events") == [(0,)]


def test_same_file_twice_is_stored_once(tmp_path: Path):
    db = tmp_path / "o.duckdb"
    path = write_ndjson(tmp_path / "e.ndjson", EVENTS + [EVENTS[0]])  # and a duplicate inside the file
    first = ingest_files_to_db([path], db, progress=False)
    assert (first["accepted"], first["duplicates"]) == (len(EVENTS), 1)
    second = ingest_files_to_db([path], db, progress=False)
    assert (second["accepted"], second["duplicates"], second["rejected"]) == (0, len(EVENTS) + 1, 0)
    assert db_rows(db, "SELECT count(*) FROM events")[0][0] == len(EVENTS)
    assert db_rows(db, "SELECT value FROM metric_counters WHERE name = 'observatory_events_duplicate_total'") == \
        [(float(len(EVENTS) + 2),)]


def test_planted_secrets_never_reach_the_database_file(tmp_path: Path):
    db = tmp_path / "o.duckdb"
    secret_events = [
        ev(30, "notebook.run.failed", {"run_id": "r9", "notebook_id": "nb", "error_type": "Boom",
                                       "error_message": f"boto3 failed with key {AWS_KEY} in us-east-1"}),
        ev(31, data={"kernel_id": "k31", "tags": {"dsn": f"postgres://etl:{PG_PASSWORD}@db.internal/prod"}}),
        ev(32, subject=f"conn postgres://u:{PG_PASSWORD}@h/db"),
        ev(33, "notebook.kernel.died", {"kernel_id": "k", "reason": "meteor", "msg": f"key={AWS_KEY}"}),  # rejected
    ]
    path = write_ndjson(tmp_path / "s.ndjson", EVENTS + secret_events)
    s = ingest_files_to_db([path], db, chunk_rows=4, progress=False)
    assert (s["accepted"], s["rejected"]) == (len(EVENTS) + 3, 1)
    assert db_rows(db, "SELECT count(*) FROM events WHERE redactions > 0")[0][0] == 3
    assert db_rows(db, "SELECT count(*) FROM events WHERE data LIKE '%[REDACTED:%'")[0][0] == 2
    for table, cols in (("events", "data || coalesce(subject, '')"), ("dead_letters", "payload || errors"),
                        ("run_attempts", "coalesce(error_message, '')")):
        found = db_rows(db, f"SELECT count(*) FROM {table} WHERE ({cols}) LIKE '%{PG_PASSWORD}%' "
                            f"OR ({cols}) LIKE '%{AWS_KEY}%'")
        assert found == [(0,)], table
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("o.duckdb"))
    assert AWS_KEY.encode() not in raw and PG_PASSWORD.encode() not in raw
    assert b"AKIAIOSFODNN7" not in raw


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------


def test_cli_ingest_in_process(tmp_path: Path):
    runner = CliRunner()
    db = tmp_path / "o.duckdb"
    good = write_ndjson(tmp_path / "good.ndjson", EVENTS)
    res = runner.invoke(app, ["ingest", str(good), "--db", str(db), "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["accepted"] == len(EVENTS) and summary["events_per_second"] > 0
    bad = _mixed_file(tmp_path / "mixed.ndjson")
    res = runner.invoke(app, ["ingest", str(bad), "--db", str(db), "--no-progress"])
    assert res.exit_code == 3 and json.loads(res.stdout)["rejected"] == 4  # some events rejected
    res = runner.invoke(app, ["ingest", str(good)])
    assert res.exit_code == 2 and "exactly one of --db or --url" in res.output
    odd = tmp_path / "notes.txt"
    odd.write_text("plain text\n")
    res = runner.invoke(app, ["ingest", str(odd), "--db", str(db), "--no-progress"])
    assert res.exit_code == 1 and "unknown format" in res.output


def test_cli_ingest_subprocess(tmp_path: Path):
    db = tmp_path / "o.duckdb"
    path = write_ndjson(tmp_path / "e.ndjson.gz", EVENTS, gz=True)
    proc = subprocess.run([OBSERVATORY, "ingest", str(path), "--db", str(db), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accepted"] == len(EVENTS)
    assert db_rows(db, "SELECT count(*) FROM events")[0][0] == len(EVENTS)


# ---------------------------------------------------------------------------------------------------------
# --url against a real collector; --db refused while it runs
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    db = tmp_path_factory.mktemp("served") / "served.duckdb"
    c = Collector(db=db).start()
    yield c
    c.stop()


def test_url_ingest_against_a_running_collector(tmp_path: Path, collector: Collector):
    path = _mixed_file(tmp_path / "mixed.ndjson.gz")
    path.write_bytes(gzip.compress(path.read_bytes()))
    s = ingest_files_to_url([path, FORMATS["events.parquet"](tmp_path / "e.parquet")], collector.url, None,
                            batch_size=2, progress=False)
    # mixed: 3 stored, 4 rejected; the Parquet file repeats EVENTS[0..2] (duplicates) and adds the rest.
    assert (s["files"], s["events"], s["rejected"]) == (2, 7 + len(EVENTS), 4)
    assert s["accepted"] == len(EVENTS) and s["duplicates"] == 3
    assert sorted({x["index"] for x in s["rejected_samples"]}) == [2, 3, 4, 5]  # file-wide indexes
    again = ingest_files_to_url([path], collector.url, None, progress=False)
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 3, 4)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_format_is_posted_to_a_running_collector(tmp_path: Path, collector: Collector, name: str):
    """`--url` reads every format `--db` reads (a JSON document's items once crashed it: they come as texts)."""
    path = FORMATS[name](tmp_path / name)
    expected = {"one.json": 1, "struct.parquet": 6}.get(name, len(EVENTS))
    s = ingest_files_to_url([path], collector.url, None, batch_size=3, progress=False)
    # The module's collector keeps what earlier tests posted: the same events come back as duplicates.
    assert (s["files"], s["events"], s["rejected"]) == (1, expected, 0)
    assert s["accepted"] + s["duplicates"] == expected
    again = ingest_files_to_url([path], collector.url, None, progress=False)
    assert (again["events"], again["accepted"], again["duplicates"]) == (expected, 0, expected)  # all stored


def test_url_ingest_reports_refusal_and_unreachable(tmp_path: Path, collector: Collector):
    path = write_ndjson(tmp_path / "e.ndjson", EVENTS[:1])
    with pytest.raises(IngestError, match="http:// or https://"):
        ingest_files_to_url([path], "localhost:1", None, progress=False)
    file_ingest_sleep = file_ingest.time.sleep
    file_ingest.time.sleep = lambda s: None  # no real backoff in the test
    try:
        with pytest.raises(IngestError, match="cannot reach the collector"):
            ingest_files_to_url([path], "http://127.0.0.1:9", None, progress=False)
    finally:
        file_ingest.time.sleep = file_ingest_sleep


def test_db_locked_by_a_running_collector_points_to_url(tmp_path: Path, collector: Collector):
    path = write_ndjson(tmp_path / "e.ndjson", EVENTS[:1])
    with pytest.raises(IngestError, match="--url"):
        ingest_files_to_db([path], collector.db, progress=False)


def test_chunks_whose_derived_rows_fail_are_stored_and_said_so(tmp_path: Path, monkeypatch):
    """`--db` folds chunks into the derived tables on the deriver, after their events are committed (as the
    collector does). A chunk whose derived rows cannot be written keeps its events, holds back no other chunk, and
    the command says so: `derive_failures` in the summary and exit status 1."""
    refuse_to_derive(monkeypatch, "r1")
    path = write_ndjson(tmp_path / "e.ndjson", EVENTS)
    db = tmp_path / "o.duckdb"
    summary = ingest_files_to_db([path], db, chunk_rows=2, progress=False)
    assert summary["accepted"] == len(EVENTS) and summary["derive_failures"] == 1
    assert db_rows(db, "SELECT count(*) FROM events")[0][0] == len(EVENTS)
    assert db_rows(db, "SELECT count(*) FROM run_attempts")[0][0] == 0  # the failed chunk's
    assert db_rows(db, "SELECT count(*) FROM kernel_sessions")[0][0] == 6  # the other chunks'
    assert db_rows(db, "SELECT count(*) FROM ingest_batches WHERE NOT derived")[0][0] == 0

    res = CliRunner().invoke(app, ["ingest", str(write_ndjson(tmp_path / "f.ndjson", [
        ev(20, "notebook.run.succeeded", {"run_id": "r1", "notebook_id": "nb", "team": "ml"})])),
        "--db", str(tmp_path / "p.duckdb"), "--no-progress"])
    assert res.exit_code == 1 and "derived rows" in res.output
    assert json.loads(res.stdout[:res.stdout.rindex("}") + 1])["derive_failures"] == 1


def test_bulk_ingest_derives_what_the_collector_derives(tmp_path: Path):
    """The same events through the bulk command (chunks folded by the deriver, several per pass) and through
    one synchronous transaction per chunk give the same derived tables and counters."""
    from tests.ingest.test_derive_deferred import _batches, _sync, _tables
    from collector.storage import db as dbmod

    batches = _batches(3)
    want = _sync(tmp_path, batches)
    path = write_ndjson(tmp_path / "s.ndjson", [e for b in batches for e in b])
    db = tmp_path / "bulk.duckdb"
    ingest_files_to_db([path], db, chunk_rows=7, progress=False)
    con = dbmod.connect(db)
    try:
        assert _tables(con) == want
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------------------
# Commits of whole chunks (storage.db.ROW_GROUP_ROWS says why)
# ---------------------------------------------------------------------------------------------------------


def _rows(n: int, start: int = 0) -> pa.Table:
    ids = pa.array([f"e{i}" for i in range(start, start + n)], pa.string())
    return pa.Table.from_arrays([ids if f.name == "id" else pa.nulls(n, f.type) for f in INGEST_SCHEMA],
                                schema=INGEST_SCHEMA)


@pytest.mark.parametrize(("chunks", "commits"), [
    # (rows, rejections) per validated chunk -> (rows, rejections) per commit, the file's rest last
    ([(4, 0), (4, 0)], [(4, 0), (4, 0)]),
    ([(3, 1), (4, 0), (2, 2)], [(4, 1), (4, 2), (1, 0)]),
    ([(2, 0), (1, 0)], [(3, 0)]),
    ([(9, 0)], [(8, 0), (1, 0)]),
    ([(0, 4), (1, 0)], [(0, 4), (1, 0)]),       # rejections alone never wait for more than a chunk of them
    ([(1, 3), (0, 1)], [(1, 4)]),
    ([(0, 0)], []),
])
def test_validated_rows_are_committed_in_whole_chunks_in_order(chunks, commits):
    held, out, start = file_ingest._WholeChunks(4), [], 0
    for rows, rejected in chunks:
        part = held.add(_rows(rows, start), [f"r{start + k}" for k in range(rejected)])
        start += rows + rejected
        out += [part] if part else []
    out += [p for p in [held.rest()] if p]
    assert [(t.num_rows, len(r)) for t, r in out] == commits
    ids = [i for t, _ in out for i in t.column("id").to_pylist()]
    assert ids == sorted(ids, key=lambda s: int(s[1:])) and len(ids) == len(set(ids))
    assert held.rest() is None


def test_bulk_ingest_commits_whole_chunks_whatever_the_validator_refused(tmp_path: Path):
    """Chunks of 4 lines with lines refused in them: the events go in commits of 4 but for the file's last, and
    every rejection is dead-lettered once."""
    db = tmp_path / "o.duckdb"
    good = [orjson.dumps(ev(i)) for i in range(10)]
    bad = [b"{not json", orjson.dumps(ev(90, "no.such.type")), orjson.dumps(ev(91, data={"team": "ml"}))]
    lines = good[:2] + bad[:1] + good[2:5] + bad[1:] + good[5:]
    path = tmp_path / "e.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    s = ingest_files_to_db([path], db, chunk_rows=4, progress=False)
    assert (s["events"], s["accepted"], s["rejected"]) == (13, 10, 3)
    sizes = db_rows(db, "SELECT count(*) FROM events GROUP BY batch_id ORDER BY batch_id")
    assert [n for (n,) in sizes] == [4, 4, 2]
    assert sorted(i for (i,) in db_rows(db, "SELECT item_index FROM dead_letters")) == [2, 6, 7]


# ---------------------------------------------------------------------------------------------------------
# Parquet chunks read ahead of validation
# ---------------------------------------------------------------------------------------------------------


def test_read_ahead_hands_over_every_chunk_in_order_and_fails_where_the_reader_failed():
    readers: set[str] = set()

    def chunks():
        for k in range(3):
            readers.add(threading.current_thread().name)
            yield k
        raise IngestError("f.parquet: Parquet read failed (page header)")

    got = []
    with pytest.raises(IngestError, match="Parquet read failed"):
        for ch in file_ingest._ReadAhead(chunks()):
            got.append(ch)
    assert got == [0, 1, 2]
    assert readers and threading.current_thread().name not in readers


def test_read_ahead_closes_the_reader_when_the_caller_stops():
    state = {"read": 0, "closed": False}

    def chunks():
        try:
            for k in range(100):
                state["read"] += 1
                yield k
        finally:
            state["closed"] = True

    ahead = file_ingest._ReadAhead(chunks())
    assert next(ahead) == 0
    ahead.close()
    assert state["closed"] and state["read"] <= 2


def test_read_ahead_reads_the_first_chunk_before_it_is_asked_for():
    first = threading.Event()

    def chunks():
        first.set()
        yield 0
        yield 1

    ahead = file_ingest._ReadAhead(chunks())
    assert first.wait(10), "the first chunk waited for the caller's first `next`"
    assert list(ahead) == [0, 1]
    assert list(ahead) == []  # ended: closed, nothing more


def test_the_first_files_reader_is_closed_when_the_store_cannot_open(tmp_path, monkeypatch):
    path = _parquet_string(tmp_path / "e.parquet")
    state = {"read": 0, "closed": False}

    def chunks(inp, rows):
        try:
            state["read"] += 1
            yield from file_ingest._parquet_chunks(inp, rows)
        finally:
            state["closed"] = True

    def locked(db, rows):
        raise IngestError(f"{db}: locked")

    monkeypatch.setattr(file_ingest, "_chunks", chunks)
    monkeypatch.setattr(file_ingest, "_open_store", locked)
    with pytest.raises(IngestError, match="locked"):
        ingest_files_to_db([path], tmp_path / "x.duckdb", progress=False)
    assert state == {"read": 1, "closed": True}
    assert not [t for t in threading.enumerate() if t.name.startswith("ingest-read-ahead")]


def _corrupt_second_row_group(path: Path, n: int) -> Path:
    """A Parquet file of two row groups whose second one's `id` pages are overwritten: its footer still reads, the
    first row group too, the second fails."""
    events = [ev(i) for i in range(n)]
    pq.write_table(pa.table({
        "specversion": ["1.0"] * n, "id": [e["id"] for e in events], "source": [e["source"] for e in events],
        "type": [e["type"] for e in events], "time": [e["time"] for e in events],
        "data": [orjson.dumps(e["data"]).decode() for e in events],
    }), path, row_group_size=n // 2, compression="zstd")
    col = pq.ParquetFile(path).metadata.row_group(1).column(1)
    start = col.dictionary_page_offset or col.data_page_offset
    raw = bytearray(path.read_bytes())
    for k in range(start + 12, start + col.total_compressed_size - 4):
        raw[k] ^= 0x5A
    path.write_bytes(bytes(raw))
    return path


def test_a_parquet_file_unreadable_half_way_keeps_the_chunks_before_and_says_where(tmp_path: Path):
    db = tmp_path / "o.duckdb"
    path = _corrupt_second_row_group(tmp_path / "half.parquet", 40)
    with pytest.raises(IngestError, match=r"half\.parquet: Parquet read failed"):
        ingest_files_to_db([path], db, chunk_rows=20, progress=False)
    assert sorted(int(i[1:]) for (i,) in db_rows(db, "SELECT id FROM events")) == list(range(20))
