"""The storage shape of an event row, shared by the validators that build rows and the writer that inserts them."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

EVENT_SCHEMA = pa.schema([
    ("source", pa.string()), ("id", pa.string()), ("type", pa.string()),
    ("time", pa.timestamp("us", tz="UTC")), ("subject", pa.string()),
    ("team", pa.string()), ("owner", pa.string()), ("notebook_id", pa.string()), ("run_id", pa.string()),
    ("attempt", pa.int32()), ("kernel_id", pa.string()), ("trigger", pa.string()), ("environment", pa.string()),
    ("data", pa.string()), ("redactions", pa.int32()),
])
EVENT_COLUMNS = ", ".join(EVENT_SCHEMA.names)


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)
