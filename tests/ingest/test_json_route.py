"""The ingest route validates a JSON document's items as lines (`body.json_elements`, then the struct stage): the
same items, indexes, rows and rejections as `body.split_items` followed by the item validator, and a document
refused as one is refused with the same words."""

from __future__ import annotations

import orjson
import pytest

from collector.api import ingest as route
from collector.api.ingest import _prepare
from collector.contract.body import BodyError, json_elements, split_items
from collector.contract.vectorized import validate_json_items
from tests.support import event

OK = orjson.dumps(event("a", "platform.probe", {"target": "ui", "ok": True}))
OK2 = orjson.dumps(event("c", "notebook.kernel.started", {"kernel_id": "k1", "team": "t"}))
BAD = orjson.dumps(event("b", "platform.probe", {"target": "ui", "ok": 1}))
SECRET = orjson.dumps(event("d", "notebook.run.failed", {"run_id": "r", "notebook_id": "n",
                                                          "error_message": "token=ghp_" + "a" * 36}))

BODIES = [
    b"[" + OK + b"," + BAD + b"," + OK2 + b"]",
    OK,
    b" \r\n\t[ " + OK + b" ,\n " + OK2 + b" ]\n ",
    b"[1, \"x\", null, [], " + OK + b", {}]",
    b"[" + OK + b"," + OK + b"]",  # the same id twice: two rows, dedup is the writer's
    b"[" + SECRET + b"," + OK2 + b"]",  # the secret takes the exact path and is redacted there
    b'[{"type": "platform.probe", "type": "notebook.kernel.started"}]',
]
CTYPES = ["application/json", None, "application/cloudevents-batch+json", "application/json; charset=utf-8",
          "application/cloudevents+json"]


def _same(got, ref) -> None:
    assert got.total == ref.total
    assert got.row_index.to_pylist() == ref.row_index.to_pylist()
    assert got.table.to_pylist() == ref.table.to_pylist()
    assert [(r.index, r.errors, r.payload, r.source, r.id, r.type) for r in got.rejections] == \
        [(r.index, r.errors, r.payload, r.source, r.id, r.type) for r in ref.rejections]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("ctype", CTYPES)
def test_json_route_equals_split_items(body, ctype):
    _same(_prepare(body, ctype, None, 1 << 20, 100), validate_json_items(split_items(body, ctype)))


@pytest.mark.parametrize("body", BODIES)
def test_json_elements_are_the_items_texts(body):
    texts = json_elements(body, "application/json")
    assert texts is not None
    assert [orjson.loads(t) for t in texts] == split_items(body, "application/json")


def test_json_route_does_not_parse_a_readable_document_whole(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("split_items called for a document msgspec splits")

    monkeypatch.setattr(route, "split_items", refuse)
    res = _prepare(BODIES[0], "application/json", None, 1 << 20, 100)
    assert (res.total, res.fast, res.row_index.to_pylist()) == (3, 2, [0, 2])


REFUSED = [
    b'[{"a": "\xff"}, ' + OK + b"]",  # invalid UTF-8 inside an element: msgspec skips it, orjson refuses it
    b"[" + OK + b",]",
    b"[" + OK + b"] x",
    b"\xef\xbb\xbf[" + OK + b"]",
    b'[{"a": "\\ud800"}]',
    b"[" + b"[" * 1100 + b"]" * 1100 + b", " + OK + b"]",
    b"[" + b"[" * 1024 + b"]" * 1024 + b"]",  # an element orjson reads alone (1,024 levels), not in the document
    b'{"broken": ',
    b"[" + OK,
]


@pytest.mark.parametrize("body", REFUSED)
def test_a_document_refused_whole_keeps_its_words(body):
    with pytest.raises(BodyError) as ref:
        split_items(body, "application/json")
    with pytest.raises(BodyError) as got:
        _prepare(body, "application/json", None, 1 << 20, 100)
    assert (got.value.kind, str(got.value)) == (ref.value.kind, str(ref.value))


def test_scalars_and_unsupported_types_as_before():
    assert json_elements(b"5", "application/json") is None
    _same(_prepare(b' "x" ', "application/json", None, 1 << 20, 100), validate_json_items(split_items(b' "x" ', None)))
    with pytest.raises(BodyError) as exc:
        _prepare(b"[" + OK + b"]", "text/plain", None, 1 << 20, 100)
    assert exc.value.kind == "unsupported"


def test_json_route_counts_items_before_validating(monkeypatch):
    with pytest.raises(BodyError) as exc:
        _prepare(b" [ ] ", "application/json", None, 1 << 20, 100)
    assert (exc.value.kind, str(exc.value)) == ("invalid", "no events in the request body")
    monkeypatch.setattr(route, "default_validator", lambda: pytest.fail("validated a body over the limit"))
    with pytest.raises(BodyError) as exc:
        _prepare(b"[" + b",".join([OK] * 4) + b"]", "application/json", None, 1 << 20, 3)
    assert exc.value.kind == "too_large"


def test_many_tiny_items_are_counted_without_keeping_their_texts():
    """An array past the event limit is refused (413) with the count `split_items` gives, and `json_elements`
    keeps no text of it (a body of tiny items costs more split than parsed: api/ingest.py, SPLIT_MAX_BYTES)."""
    body = b"[" + b",".join([b"1"] * 120) + b"]"
    assert json_elements(body, "application/json", 100) is None
    assert len(json_elements(body, "application/json", 120) or []) == 120
    with pytest.raises(BodyError) as exc:
        _prepare(body, "application/json", None, 1 << 20, 100)
    assert (exc.value.kind, str(exc.value)) == ("too_large", "120 events in one request; the limit is 100")


def test_a_document_past_the_split_bound_is_parsed_whole(monkeypatch):
    monkeypatch.setattr(route, "SPLIT_MAX_BYTES", len(BODIES[0]) - 1)
    monkeypatch.setattr(route, "json_elements", lambda *_a: pytest.fail("split a document past the bound"))
    _same(_prepare(BODIES[0], "application/json", None, 1 << 20, 100),
          validate_json_items(split_items(BODIES[0], "application/json")))
