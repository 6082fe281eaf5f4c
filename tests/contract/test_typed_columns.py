"""The typed columns the validator hands the writer equal the stored `data`, read back independently.

For every accepted row (fast or exact path), each column of DERIVE_FIELDS and the common columns is recomputed
from the row's stored `data` text with the standard library's json module and the event model's declared fields:
a declared field gives its value (date-times parsed, dicts and lists as JSON); an extra key gives its value when
it already has the column's type; anything else is null.
"""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from collector.contract.events import EVENT_MODELS
from collector.contract.validation import COMMON_COLUMNS
from collector.contract.vectorized import validate_ndjson
from collector.storage.schema import DERIVE_FIELDS, INGEST_SCHEMA
from tests.contract.test_bulk_equivalence import SETTINGS, _body, events, mutated


def _declared(etype: str) -> set[str]:
    return set(EVENT_MODELS[etype].model_fields["data"].annotation.model_fields)


def _expected(etype: str, data: dict, column: pa.Field) -> object:
    name, t = column.name, column.type
    v = data.get(name)
    declared = name in _declared(etype)
    if v is None:
        return 1 if name == "attempt" and etype.startswith("notebook.run.") else None
    if column.metadata and column.metadata.get(b"json"):
        return v
    if pa.types.is_timestamp(t):
        if not isinstance(v, str):
            return None
        try:
            return datetime.fromisoformat(v)
        except ValueError:
            return None
    kinds = {"string": (str,), "double": (float, int), "int64": (int,), "int32": (int,), "bool": (bool,)}[str(t)]
    ok = isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)
    if ok and str(t) == "int64" and not -(2**63) <= v < 2**63:
        ok = False
    if ok and str(t) == "double" and not declared and isinstance(v, int) and abs(v) > 2**53:
        ok = False
    if not ok:
        assert not declared, f"declared {name} of {etype} has a value of the wrong type: {v!r}"
        return None
    return float(v) if str(t) == "double" else v


def _check(body: bytes) -> int:
    got = validate_ndjson(body)
    assert got.table.schema == INGEST_SCHEMA
    checked = 0
    for row in got.table.to_pylist():
        data = json.loads(row["data"])
        for col in [INGEST_SCHEMA.field(c) for c in COMMON_COLUMNS] + list(DERIVE_FIELDS):
            want = _expected(row["type"], data, col)
            have = row[col.name]
            if col.metadata and col.metadata.get(b"json") and have is not None:
                have = json.loads(have)
            assert have == want, f"{row['type']} {col.name}: typed {have!r}, stored data says {want!r}"
            checked += 1
    return checked


@SETTINGS
@given(st.lists(st.one_of(events(), mutated()), min_size=1, max_size=25))
def test_typed_columns_equal_the_stored_data(items):
    _check(_body(items))


def test_typed_columns_of_extras_and_every_kind():
    base = {"specversion": "1.0", "source": "s", "time": "2026-11-20T10:00:00Z"}
    evs = [
        {**base, "id": "1", "type": "notebook.run.succeeded",
         "data": {"run_id": "r", "notebook_id": "n", "duration_seconds": 5, "max_memory_bytes": 2**40,
                  "scheduled_for": "2026-11-20T09:00:00.5+02:00", "cells": [{"index": 0, "duration_seconds": 1,
                                                                           "status": "ok"}],
                  "error_message": "boom", "reason": 7}},
        {**base, "id": "2", "type": "notebook.kernel.restarted",
         "data": {"kernel_id": "k", "reason": "crash", "exit_code": -9, "ok": "yes", "tags": {"a": [1, None]}}},
        {**base, "id": "3", "type": "notebook.registered",
         "data": {"notebook_id": "n", "owner": "o", "team": "t", "tags": {"x": 1}, "critical": True,
                  "created_at": "2026-01-01T00:00:00Z"}},
        {**base, "id": "4", "type": "notebook.schedule.registered",
         "data": {"notebook_id": "n", "cron": "*/5 * * * *", "timezone": "Europe/Paris", "grace_seconds": 60}},
        {**base, "id": "5", "type": "platform.probe", "data": {"target": "ui", "ok": False, "exit_code": 1.5}},
    ]
    assert _check(_body(evs)) == 5 * (len(COMMON_COLUMNS) + len(DERIVE_FIELDS))
    rows = {r["id"]: r for r in validate_ndjson(_body(evs)).table.to_pylist()}
    assert rows["1"]["duration_seconds"] == 5.0 and rows["1"]["attempt"] == 1 and rows["1"]["reason"] is None
    assert rows["2"]["exit_code"] == -9 and rows["2"]["ok"] is None  # an extra counts only with the right type
    assert rows["5"]["exit_code"] is None and rows["5"]["ok"] is False
