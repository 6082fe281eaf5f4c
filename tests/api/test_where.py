"""The read API's where-builder and cursors: tables of input -> SQL text and bound parameters.

Request values must only ever appear in `params`, never in the SQL text."""

from __future__ import annotations

import duckdb
import pytest

from collector.api.errors import ApiError
from collector.api.where import Where, decode_cursor, encode_cursor, page

HOSTILE = "x' OR 1=1; DROP TABLE events; --"


@pytest.mark.parametrize(("build", "sql", "params"), [
    (lambda w: w, "", []),
    (lambda w: w.eq("team", "finance"), " WHERE team = ?", ["finance"]),
    (lambda w: w.eq("team", None), "", []),
    (lambda w: w.any_of("team", []), "", []),
    (lambda w: w.any_of("team", ["a", "b"]), " WHERE team IN (?, ?)", ["a", "b"]),
    (lambda w: w.add("attempt >= ?", 2).eq("team", "a"), " WHERE attempt >= ? AND team = ?", [2, "a"]),
    (lambda w: w.add("sla_seconds IS NOT NULL"), " WHERE sla_seconds IS NOT NULL", []),
    (lambda w: w.after(["time", "source", "id"], ["t", "s", "i"]), " WHERE (time, source, id) < (?, ?, ?)",
     ["t", "s", "i"]),
    (lambda w: w.after(["notebook_id"], ["nb"], descending=False), " WHERE (notebook_id) > (?)", ["nb"]),
    (lambda w: w.eq("team", HOSTILE).any_of("notebook_id", [HOSTILE]), " WHERE team = ? AND notebook_id IN (?)",
     [HOSTILE, HOSTILE]),
])
def test_where_builds_sql_and_binds_values(build, sql: str, params: list) -> None:
    w = build(Where())
    assert w.sql() == sql
    assert w.params == params
    assert HOSTILE not in w.sql()


def test_where_refuses_placeholder_mismatch() -> None:
    with pytest.raises(ValueError, match="placeholders"):
        Where().add("team = ?")
    with pytest.raises(ValueError, match="placeholders"):
        Where().add("team = 'a'", "a")


def test_bound_hostile_value_is_data_in_duckdb() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (team VARCHAR)")
    con.execute("INSERT INTO t VALUES ('a'), (?)", [HOSTILE])
    w = Where().eq("team", HOSTILE)
    assert con.execute(f"SELECT count(*) FROM t{w.sql()}", w.params).fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 2


@pytest.mark.parametrize(("parts", "types"), [
    (("2026-11-20T10:00:00.000000Z", "run-1", 2), (str, str, int)),
    (("nb-1",), (str,)),
    (("nb-1", "artifact/x"), (str, str)),
])
def test_cursor_round_trip(parts: tuple, types: tuple) -> None:
    assert decode_cursor(encode_cursor(*parts), types) == list(parts)


@pytest.mark.parametrize("cursor", [
    encode_cursor("t", "run", "2"),  # attempt as a string
    encode_cursor("t", "run"),  # too short
    encode_cursor(1, "run", 2),  # time as a number
    encode_cursor("t", "run", True),  # a bool is not an attempt number
    encode_cursor({"a": 1}, "run", 2),
    "!!!not-base64!!!",
    "bm90IGpzb24",  # base64 of "not json"
])
def test_bad_cursor_is_a_client_error(cursor: str) -> None:
    with pytest.raises(ApiError) as info:
        decode_cursor(cursor, (str, str, int))
    assert info.value.status == 422
    assert "`after`" in str(info.value)


def test_no_cursor_is_the_first_page() -> None:
    assert decode_cursor(None, (str,)) is None
    assert decode_cursor("", (str,)) is None


def test_page_keeps_limit_and_gives_a_cursor_only_when_more() -> None:
    rows = [{"k": i} for i in range(4)]
    assert page(rows, 3, lambda r: str(r["k"])) == (rows[:3], "2")
    assert page(rows[:3], 3, lambda r: str(r["k"])) == (rows[:3], None)
    assert page([], 3, lambda r: str(r["k"])) == ([], None)
