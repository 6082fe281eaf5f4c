"""The ingest route validates NDJSON bodies as lines (no split_items first): the same content types, items,
indexes and rejections as `body.split_items` followed by the item validator."""

from __future__ import annotations

import orjson
import pytest

from collector.api.ingest import _prepare
from collector.contract.body import BodyError, is_ndjson, split_items
from collector.contract.vectorized import validate_json_items
from tests.support import event

BODY = (b'\n  \n' + b'\n'.join([
    orjson.dumps(event("a", "platform.probe", {"target": "ui", "ok": True})),
    b'{"broken": ',
    b'\x0b[1, 2]\r',
    orjson.dumps(event("b", "platform.probe", {"target": "ui", "ok": 1})),
]) + b'\n\n')

CTYPES = ["application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-seq",
          "Application/X-NDJSON; charset=utf-8", " application/jsonl ", "application/json", None,
          "application/cloudevents-batch+json", "application/json; charset=utf-8"]


@pytest.mark.parametrize("ctype", CTYPES)
def test_ndjson_detection_agrees_with_split_items(ctype):
    two = b'{"a":1}\n{"b":2}'
    try:
        as_split = len(split_items(two, ctype)) == 2
    except BodyError:
        as_split = False
    assert is_ndjson(ctype) == as_split


@pytest.mark.parametrize("ctype", CTYPES[:4])
def test_ndjson_route_equals_split_items(ctype):
    got = _prepare(BODY, ctype, None, 1 << 20, 100)
    ref = validate_json_items(split_items(BODY, ctype))
    assert got.total == ref.total == 4
    assert got.row_index.to_pylist() == ref.row_index.to_pylist() == [0]
    assert got.table.to_pylist() == ref.table.to_pylist()
    assert [(r.index, r.errors, r.payload) for r in got.rejections] == \
        [(r.index, r.errors, r.payload) for r in ref.rejections]
    assert [r.index for r in got.rejections] == [1, 2, 3]


def test_ndjson_route_counts_lines_before_validating():
    with pytest.raises(BodyError) as exc:
        _prepare(b"\n \n", "application/x-ndjson", None, 1 << 20, 100)
    assert exc.value.kind == "invalid"
    with pytest.raises(BodyError) as exc:
        _prepare(BODY, "application/x-ndjson", None, 1 << 20, 3)
    assert exc.value.kind == "too_large"
