"""The storage shape of an event row, shared by the validators that build rows and the writer that inserts them."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from collector.storage.sqltext import ident, lit

EVENT_SCHEMA = pa.schema([
    ("source", pa.string()), ("id", pa.string()), ("type", pa.string()),
    ("time", pa.timestamp("us", tz="UTC")), ("subject", pa.string()),
    ("team", pa.string()), ("owner", pa.string()), ("notebook_id", pa.string()), ("run_id", pa.string()),
    ("attempt", pa.int32()), ("kernel_id", pa.string()), ("trigger", pa.string()), ("environment", pa.string()),
    ("data", pa.string()), ("redactions", pa.int32()),
])
EVENT_COLUMNS = ", ".join(EVENT_SCHEMA.names)

# The data fields the derived tables and ingest counters need (collector/storage/derive.py), typed at validation
# time: the validator (collector/contract/vectorized) fills them for every accepted row, from its data as redacted,
# so the writer folds a batch set-wise from Arrow columns without parsing JSON. They travel with the batch and,
# but for STORED_FIELDS below, are not stored in `events` (its `data` keeps the whole payload). dict and list
# fields are their compact JSON text.
DERIVE_FIELDS = pa.schema([
    ("scheduled_for", pa.timestamp("us", tz="UTC")), ("duration_seconds", pa.float64()),
    ("error_type", pa.string()), ("error_message", pa.string()), ("output_hash", pa.string()),
    ("input_hash", pa.string()), ("parameters_hash", pa.string()), ("env_hash", pa.string()),
    ("cpu_seconds", pa.float64()), ("max_memory_bytes", pa.int64()), pa.field("cells", pa.string(), metadata={"json": "1"}),
    ("notebook_path", pa.string()), ("reason", pa.string()), ("exit_code", pa.int64()), pa.field("tags", pa.string(), metadata={"json": "1"}),
    ("critical", pa.bool_()), ("has_tests", pa.bool_()), ("created_at", pa.timestamp("us", tz="UTC")),
    ("cron", pa.string()), ("timezone", pa.string()), ("grace_seconds", pa.float64()), ("result", pa.string()),
    ("target", pa.string()), ("ok", pa.bool_()), ("artifact", pa.string()), ("sla_seconds", pa.float64()),
    # identifiers no derived table reads: typed so that the validator checks every identifier column-wise
    ("session_id", pa.string()), ("baseline_run_id", pa.string()),
])
# Typed fields that are also stored as columns of `events`: the verdicts the SLIs count (a probe's `ok`, a check's
# `result`, a kernel's `reason`: migration 0003) and what artifact freshness (M7) reads of a publication (its
# `artifact`, `sla_seconds` and `critical`: migration 0214). Reading a field back out of `data` means reading `data`
# itself, which DuckDB decompresses for every stored event near one that is wanted (1.3 us per publication read at
# 10M stored events, 2% of them publications): most of a full SLI computation each time (docs/performance.md, the
# third and thirty-fourth rounds). Nulls cost the insert little; each column still costs ~0.07 CPU-us per stored
# event, so only fields an SLI reads from whole history belong here. The lake derives them from `data` again
# (collector/lake/views.py).
STORED_FIELDS = ("ok", "result", "reason", "artifact", "sla_seconds", "critical")
# Every column of `events` a batch fills (ingested_at and batch_id come from the commit)
STORED_COLUMNS = ", ".join((EVENT_COLUMNS, *STORED_FIELDS))
# What the validator hands the writer: the stored columns, then the typed fields.
INGEST_SCHEMA = pa.schema(list(EVENT_SCHEMA) + list(DERIVE_FIELDS))
assert len(set(INGEST_SCHEMA.names)) == len(INGEST_SCHEMA.names), "a typed field shadows a stored column"
assert set(STORED_FIELDS) <= set(DERIVE_FIELDS.names), "a stored field the validator does not type"


def field_from_data(f: pa.Field) -> str:
    """DuckDB SQL reading the typed field `f` back out of a stored event's `data`, as the validator would have typed
    it (a value of another shape is NULL): for history rebuilds, the lake and benchmarks, never the ingest path."""
    if f.metadata and f.metadata.get(b"json"):
        return f"(data->{lit(f.name)})::VARCHAR"
    if pa.types.is_string(f.type):
        return f"(data->>{lit(f.name)})"
    sql_type = {"timestamp[us, tz=UTC]": "TIMESTAMPTZ", "double": "DOUBLE", "int64": "BIGINT",
                "bool": "BOOLEAN"}[str(f.type)]
    return f"TRY_CAST((data->>{lit(f.name)}) AS {sql_type})"


# The stored typed fields read from `data`, for relations of events without them (the lake's, bench tables)
STORED_FIELDS_FROM_DATA = ", ".join(f"{field_from_data(DERIVE_FIELDS.field(n))} AS {ident(n)}" for n in STORED_FIELDS)


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Stored rows (dicts) as Arrow, without the typed fields (tests compare stored columns with it)."""
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


# The 64-bit digest of a reproducibility group's key (notebook, input, parameters, environment) that both baseline
# tables store beside it (`key_hash`: repro_baselines, the deriver's, migration 0210; sli_repro_baselines, the SLI
# fold's, migration 0211, which compute it the same way for the rows stored before them). A join on the four key
# texts reads all of them for every stored baseline, a cost that grows with history; a join on the digest reads one
# 8-byte column, which DuckDB filters with the wanted digests before it reads the rest of a row. Readers compare the
# full key after: a collision costs a row read, never a wrong baseline. MD5 because its value cannot change with the
# DuckDB version (`hash()` may); identifiers hold no control character (the contract refuses them), so the unit
# separator makes the joined text one key's only.
BASELINE_KEY_HASH = "md5_number_lower(concat_ws(chr(31), notebook_id, input_hash, parameters_hash, env_hash))"
