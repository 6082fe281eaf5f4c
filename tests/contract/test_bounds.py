"""The contract's bounds (issue 13): each value storage or computation cannot handle is rejected alone, with the
field path, and the rejection never quotes the value; identifiers holding a credential or a control character are
refused; the shape walk stops nesting and numbers JSON cannot hold."""

from __future__ import annotations

import pytest

from collector.contract.events import MAX_NESTING, check_cron
from collector.contract.validation import check_item, shape_problem, validate_items
from tests.support import event

SECRET = "ghp_Zq8Lw3Rt6Yu1Io4Pa7Sd0Fg2Hj5Kl9Zx3Cv6"


@pytest.mark.parametrize("cron, ok", [
    ("0 6 * * *", True), ("*/5 * * * *", True), ("@daily", True), ("0 0 29 2 *", True),
    ("0 0 31 2 *", False), ("0 0 30 2 *", False), ("* * * * * *", False), ("0 0 1 1 * * 2030", False),
    ("not a cron", False), ("61 * * * *", False),
])
def test_cron(cron, ok):
    if ok:
        check_cron(cron)
    else:
        with pytest.raises(ValueError):
            check_cron(cron)


def _nest(levels: int) -> dict:
    v: dict = {}
    for _ in range(levels - 1):
        v = {"n": v}
    return v


def test_shape():
    assert shape_problem(_nest(MAX_NESTING)) is None
    assert shape_problem(_nest(MAX_NESTING + 1))["type"] == "too_deep"
    assert shape_problem([[[[1]]]]) is None
    assert shape_problem({"a": [1, 2**64]})["type"] == "int_too_large"
    assert shape_problem({"a": 2**64 - 1, "b": -(2**63)}) is None
    assert shape_problem({"a": [float("nan")]})["type"] == "finite_number"
    assert shape_problem({"a": (1, float("-inf"))})["type"] == "finite_number"


@pytest.mark.parametrize("etype, data, path", [
    ("notebook.schedule.registered", {"notebook_id": "n", "cron": "0 * * * *", "grace_seconds": 1e308},
     "data.grace_seconds"),
    ("notebook.schedule.registered", {"notebook_id": "n", "cron": f"0 0 31 2 * {SECRET}"}, "data.cron"),
    ("notebook.schedule.registered", {"notebook_id": "n", "cron": "0 * * * *", "timezone": f"X/{SECRET}"},
     "data.timezone"),
    ("notebook.run.queued", {"run_id": "r", "notebook_id": "n", "scheduled_for": "0001-01-01T00:00:00+01:00"},
     "data.scheduled_for"),
    ("notebook.run.queued", {"run_id": "r", "notebook_id": "n", "scheduled_for": "9999-12-31T23:59:59-12:00"},
     "data.scheduled_for"),
    ("notebook.registered", {"notebook_id": "n", "owner": "o", "team": "t", "tags": {},
                             "created_at": "1969-12-31T23:59:59Z"}, "data.created_at"),
    ("notebook.run.succeeded", {"run_id": "r", "notebook_id": "n", "max_memory_bytes": 2**63},
     "data.max_memory_bytes"),
    ("notebook.run.succeeded", {"run_id": "r", "notebook_id": "n", "cells": [
        {"index": 2**31, "duration_seconds": 1, "status": "ok"}]}, "data.cells[0].index"),
    ("notebook.kernel.died", {"kernel_id": "k", "reason": "crash", "exit_code": -(2**31) - 1}, "data.exit_code"),
    ("notebook.artifact.published", {"notebook_id": "n", "artifact": "a", "sla_seconds": 1e10},
     "data.sla_seconds"),
    ("notebook.run.started", {"run_id": SECRET, "notebook_id": "n"}, "data.run_id"),
    ("notebook.run.started", {"run_id": "r", "notebook_id": "n", "team": "a\x00b"}, "data.team"),
    ("notebook.run.started", {"run_id": "r", "notebook_id": "n", "session_id": "s\nx"}, "data.session_id"),
])
def test_rejected_alone_with_the_path_and_without_the_value(etype, data, path):
    res = validate_items([event("ok", "platform.probe", {"target": "t", "ok": True}), event("bad", etype, data)])
    assert len(res.rows) == 1 and len(res.rejections) == 1
    err = res.rejections[0].errors[0]
    assert err["path"] == path, err
    assert SECRET not in err["message"] and SECRET not in res.rejections[0].payload


@pytest.mark.parametrize("field, value, kind", [
    ("source", f"papermill://{SECRET}", "secret_in_identifier"), ("id", f"e-{SECRET}", "secret_in_identifier"),
    ("source", "a\x00b", "control_character"), ("id", "x\x7f", "control_character"),
])
def test_envelope_identifiers(field, value, kind):
    item = {**event("e1", "platform.probe", {"target": "t", "ok": True}), field: value}
    res = check_item(0, item)
    assert res.errors[0] == {**res.errors[0], "path": field, "type": kind}
    assert SECRET not in str(res.errors) + res.payload + (res.source or "") + (res.id or "")


def test_unknown_type_message_is_redacted():
    res = check_item(0, event("e1", f"x.{SECRET}", {}))
    assert res.errors[0]["type"] == "unknown_type" and SECRET not in str(res.errors) + (res.type or "")


def test_payload_of_an_item_no_encoder_can_write_is_cut_not_lost():
    """A parser reads ~1,000 levels, orjson writes 255 and repr overflows the stack: the rejected item's payload is
    written cut to MAX_NESTING levels (ints beyond 64 bits as text), and the rejection comes out."""
    import orjson

    from collector.contract.validation import payload_text

    item = {"type": "x", "deep": _nest(1_000), "big": 2**70, "l": [[[1]]]}
    text = payload_text(item)
    out = orjson.loads(text)
    assert out["big"] == str(2**70) and out["l"] == [[[1]]] and out["type"] == "x"
    level, v = 1, out["deep"]
    while isinstance(v, dict):
        level, v = level + 1, v["n"]
    assert v == "..." and level == MAX_NESTING
    assert payload_text({"a": 1}) == '{"a":1}'
    assert orjson.loads(payload_text({2**70: 1, (1, 2): [2**64], "d": _nest(300)}))[str(2**70)] == 1
    res = validate_items([{"specversion": "1.0", "deep": _nest(1_000)}, event("ok", "platform.probe",
                                                                           {"target": "t", "ok": True})])
    assert len(res.rows) == 1 and res.rejections[0].errors[0]["type"] == "too_deep"
