"""Inputs as JSON lines: NDJSON bytes split like body.split_items, Parquet-shaped tables rendered per row."""

from __future__ import annotations

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from collector.storage.sqltext import lit


def one_value(buf: bytes) -> pa.Array:
    """`buf` as a one-value Arrow binary array, without a copy (the array holds a reference to `buf`): what Arrow's
    whole-buffer functions (a split, a UTF-8 check) take."""
    offsets = pa.array([0, len(buf)], pa.int64()).buffers()[1]
    return pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(buf)])


def split_lines(buf: bytes | memoryview, first_line: int = 1) -> tuple[pa.Array, pa.Array]:
    """The non-blank lines of an NDJSON buffer (binary) and their 1-based physical line numbers. Blank = empty after
    bytes.strip(), as in split_items. See `split_block`."""
    lines, numbers, _ = split_block(buf, first_line)
    return lines, numbers


def split_block(buf: bytes | memoryview, first_line: int = 1) -> tuple[pa.Array, pa.Array, int]:
    """`split_lines`, plus how many physical lines `buf` holds (its newlines, and a last line without one).

    The lines are views of `buf`, not copies: Arrow offsets at each newline (found by numpy) over `buf`'s own
    memory, which the array keeps alive. So each line keeps the newline that ends it, and any other whitespace around
    it: JSON whitespace, which msgspec and orjson skip, and which the exact path strips as `split_items` does.
    Arrow's split copied the text into a buffer of its own, which at the bulk command's blocks of a whole chunk the
    kernel faulted in and zeroed for every block: reading and splitting 1M bench events took 1.50 CPU-s on the
    command's validating thread and 425,000 page faults, 0.41 CPU-s and 21,000 as views of 8 MiB blocks
    (`bench/bench_file_read.py`; docs/performance.md, forty-ninth round)."""
    raw = np.frombuffer(buf, np.uint8)
    ends = np.flatnonzero(raw == 0x0A) + 1
    physical = len(ends) + (1 if len(raw) and (not len(ends) or ends[-1] != len(raw)) else 0)
    offsets = np.zeros(physical + 1, np.int64)
    offsets[1:len(ends) + 1] = ends
    offsets[-1] = len(raw)
    arr = pa.Array.from_buffers(pa.large_binary(), physical, [None, pa.py_buffer(offsets), pa.py_buffer(buf)])
    numbers = pa.array(np.arange(first_line, first_line + physical, dtype=np.int64))
    blank = pc.match_substring_regex(arr, r"^[ \t\n\r\x0b\x0c]*$")
    if pc.any(blank).as_py():
        keep = pc.invert(blank)
        arr, numbers = arr.filter(keep), numbers.filter(keep)
    return arr, numbers, physical


PARQUET_COLUMNS = ("specversion", "id", "source", "type", "time", "subject", "data")


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t)


# Rows per Arrow batch of rendered lines. DuckDB grows a batch's text buffer by reallocation; a whole chunk's
# (~57 MiB at 122,880 rows) was mapped afresh each time and faulted in page by page, and joining the batches into one
# array copied it again. At this size the buffers stay under glibc's mmap threshold (ingest/allocators.py) and are
# reused, and the lines stay in their batches: with the file read in batches of this size too, 1M bench events read
# and rendered in 1.33 CPU-s against 1.85, 92,000 page faults against 336,000 (`bench/bench_file_read.py`;
# docs/performance.md, forty-ninth round).
RENDER_ROWS = 15_360


def parquet_lines(table: pa.Table, con: duckdb.DuckDBPyConnection | None = None
                  ) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Each row as the JSON event it stands for (null columns left out; `data` a JSON string embedded as is or
    a struct rendered as JSON; a timestamp `time` in RFC 3339), plus a flag for rows whose `data` string is not
    one valid JSON value (those are rejected with a `data` error, never fast). Both in batches of `RENDER_ROWS`."""
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
        parts.append(f"CASE WHEN {c} IS NOT NULL THEN {lit(orjson.dumps(name).decode() + ':')} || {val} END")
    sql = f"SELECT '{{' || concat_ws(',', {', '.join(parts)}) || '}}' AS line, {bad} AS bad FROM bulk_pq"
    con.register("bulk_pq", table)
    try:
        res = con.sql(sql).to_arrow_table(RENDER_ROWS)
    finally:
        con.unregister("bulk_pq")
        if own:
            con.close()
    return res.column("line"), res.column("bad")
