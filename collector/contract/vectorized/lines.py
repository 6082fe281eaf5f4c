"""Inputs as JSON lines: NDJSON bytes split like body.split_items, Parquet-shaped tables rendered per row."""

from __future__ import annotations

import itertools

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collector.contract.vectorized.sql import jtext
from collector.storage.sqltext import lit

def split_lines(buf: bytes, first_line: int = 1) -> tuple[pa.Array, pa.Array]:
    """The non-blank lines of an NDJSON buffer (binary, zero-copy slices of `buf`, possibly keeping surrounding
    whitespace) and their 1-based physical line numbers. Blank = empty after bytes.strip(), as in split_items."""
    lengths = list(map(len, buf.split(b"\n")))
    offsets = list(itertools.accumulate(lengths, lambda a, b: a + b + 1, initial=0))
    offsets[-1] = len(buf)  # the last line has no newline after it
    arr = pa.Array.from_buffers(pa.large_binary(), len(lengths),
                                [None, pa.array(offsets, pa.int64()).buffers()[1], pa.py_buffer(buf)])
    numbers = pa.array(range(first_line, first_line + len(lengths)), pa.int64())
    blank = pc.match_substring_regex(arr, r"^[ \t\n\r\x0b\x0c]*$")  # each slice keeps its newline
    if pc.any(blank).as_py():
        keep = pc.invert(blank)
        arr, numbers = arr.filter(keep), numbers.filter(keep)
    return arr, numbers


PARQUET_COLUMNS = ("specversion", "id", "source", "type", "time", "subject", "data")


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t)


def parquet_lines(table: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> tuple[pa.Array, pa.Array]:
    """Each row as the JSON event it stands for (null columns left out; `data` a JSON string embedded as is or
    a struct rendered as JSON; a timestamp `time` in RFC 3339), plus a flag for rows whose `data` string is not
    one valid JSON value (those are rejected with a `data` error, never fast)."""
    own = con is None
    con = con or duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    parts, bad = [], "false"
    for name in PARQUET_COLUMNS:
        if name not in table.column_names:
            continue
        t, c = table.schema.field(name).type, f'"{name}"'
        if name == "data":
            if _is_text(t):
                val, bad = c, f"({c} IS NOT NULL AND NOT json_valid({c}))"
            else:
                val = f"to_json({c})::VARCHAR"
        elif name == "time" and pa.types.is_timestamp(t):
            fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if t.tz else "%Y-%m-%dT%H:%M:%S.%f"
            val = f"to_json(strftime({c}, '{fmt}'))::VARCHAR"
        else:
            val = f"to_json({c})::VARCHAR"
        parts.append(f"CASE WHEN {c} IS NOT NULL THEN {lit(jtext(name) + ':')} || {val} END")
    sql = f"SELECT '{{' || concat_ws(',', {', '.join(parts)}) || '}}' AS line, {bad} AS bad FROM bulk_pq"
    con.register("bulk_pq", table)
    try:
        res = con.sql(sql).to_arrow_table()
    finally:
        con.unregister("bulk_pq")
        if own:
            con.close()
    return res.column("line").combine_chunks(), res.column("bad").combine_chunks()


def utf8_ok(b: bytes | None) -> bool:
    try:
        (b or b"").decode()
        return True
    except UnicodeDecodeError:
        return False
