"""The set-based bulk path decides exactly like the per-event pydantic path.

For generated NDJSON bodies (valid events of every type, drawn from each model's JSON Schema, plus mutated ones:
missing required field, wrong type, out-of-enum, negative number, bad or future time, unknown type, non-object,
broken JSON line, string too long, int given as "5", bool given as 1, duplicate keys, NaN, trailing commas,
extras, explicit nulls, escapes, control characters, planted secrets...) `bulk.validate_ndjson` must give:

* the same set of accepted indexes as `validation.validate_items(body.split_items(...))`,
* identical stored row values (as Arrow in writer.EVENT_SCHEMA: data text, common columns, time, redactions),
* the same rejections (index, errors with their field paths and messages, redacted payload).

The generator reads the models' JSON Schemas, not the core schemas the bulk compiler walks, so a misreading
in the compiler is not mirrored by the test.
"""

from __future__ import annotations

import os
import string
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from collector.contract import body as body_mod, validation
from collector.contract import vectorized as bulk
from collector.contract.events import EVENT_MODELS, EVENT_TYPES
from collector.storage.schema import EVENT_SCHEMA, rows_to_table

NOW = datetime.now(timezone.utc)
SECRETS = [
    "AKIAIOSFODNN7EXAMPLE",
    "postgres://etl:hunter2secret@db.internal/prod",
    "ghp_" + "a1B2c3D4e5" * 4,
    "password=Sup3rS3cret9",
    "xoxb-1234567890-abcdefghij",
    "Authorization: Bearer abcdefghijklmnop1234567890",
]
# More (random) examples: BULK_EQUIVALENCE_EXAMPLES=2000 pytest tests/test_bulk_equivalence.py
_EXAMPLES = int(os.environ.get("BULK_EQUIVALENCE_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_EXAMPLES or 40, deadline=None, derandomize=not _EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ---------------------------------------------------------------------------------------------------------
# The oracle comparison
# ---------------------------------------------------------------------------------------------------------


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.select(EVENT_SCHEMA.names).to_pylist()


def _storable(rows: list[dict]) -> bool:
    try:
        rows_to_table(rows)
        return True
    except (pa.ArrowInvalid, OverflowError):
        return False


def assert_equivalent(body: bytes) -> bulk.BulkResult:
    ref = validation.validate_items(body_mod.split_items(body, "application/x-ndjson"))
    # Guard: a row the exact path accepts must fit the storage columns (the contract bounds `attempt` for that).
    if not _storable(ref.rows):
        if currently_in_test_context():
            assume(False)
        pytest.fail("the exact path accepted a row the storage cannot hold")
    got = bulk.validate_ndjson(body)
    assert got.total == ref.total
    ref_rows = dict(zip(ref.row_index, _rows(rows_to_table(ref.rows))))
    got_index = got.row_index.to_pylist()
    got_rows = dict(zip(got_index, _rows(got.table)))
    assert set(got_rows) == set(ref_rows), f"accepted differ: only bulk {set(got_rows) - set(ref_rows)}, " \
                                           f"only exact {set(ref_rows) - set(got_rows)}"
    for i in ref_rows:
        assert got_rows[i] == ref_rows[i], f"row {i} differs:\nbulk  {got_rows[i]}\nexact {ref_rows[i]}"
    ref_rej = {r.index: (r.errors, r.payload, r.source, r.id, r.type) for r in ref.rejections}
    got_rej = {r.index: (r.errors, r.payload, r.source, r.id, r.type) for r in got.rejections}
    assert sorted(got_rej) == sorted(ref_rej)
    for i in ref_rej:
        assert [e["path"] for e in got_rej[i][0]] == [e["path"] for e in ref_rej[i][0]]
        assert got_rej[i] == ref_rej[i], f"rejection {i} differs:\nbulk  {got_rej[i]}\nexact {ref_rej[i]}"
    # Rows sharing (source, id) keep input order, so "first occurrence wins" holds downstream.
    seen: dict[tuple[str, str], int] = {}
    for pos, row in enumerate(_rows(got.table)):
        key = (row["source"], row["id"])
        assert seen.get(key, -1) < got_index[pos]
        seen[key] = got_index[pos]
    return got


# ---------------------------------------------------------------------------------------------------------
# Events from the JSON Schemas
# ---------------------------------------------------------------------------------------------------------

ID_CHARS = string.ascii_letters + string.digits + "-_.:/@"
any_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10)
tricky_text = st.sampled_from(['a"b', "back\\slash", "line\nbreak", "nul\x00x", "unit\x1fsep", "tab\tx", "\u2028",
                               "é", "😀", "{not json}", ",]", "NaN", "Infinity", "\u00a0nbsp", "x\x7fy", "/"])
secret_text = st.sampled_from(SECRETS).map(lambda s: f"error: {s} (retrying)")


def _resolve(schema: dict, defs: dict) -> tuple[dict, bool]:
    if "$ref" in schema:
        return _resolve(defs[schema["$ref"].split("/")[-1]], defs)
    if "anyOf" in schema:
        opts = [o for o in schema["anyOf"] if o.get("type") != "null"]
        inner, _ = _resolve(opts[0], defs)
        return inner, True
    return schema, False


def _string(s: dict) -> st.SearchStrategy[str]:
    lo, hi = s.get("minLength", 0), s.get("maxLength", 40)
    options = [st.text(ID_CHARS, min_size=max(lo, 1), max_size=min(hi, 16)),
               any_text.filter(lambda x: lo <= len(x) <= hi),
               tricky_text.filter(lambda x: lo <= len(x) <= hi)]
    if hi >= 64:
        options.append(secret_text)
    if hi <= 300:
        options.append(st.just("x" * hi))
    return st.one_of(options)


def _datetime_text() -> st.SearchStrategy[Any]:
    offsets = st.sampled_from([timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)),
                               timezone(timedelta(hours=14))])
    dt = st.builds(lambda secs, micro, tz: (NOW - timedelta(seconds=secs)).replace(microsecond=micro).astimezone(tz),
                   st.integers(60, 30 * 86400), st.sampled_from([0, 500000, 123000, 123456, 1]), offsets)
    forms = st.sampled_from(["iso", "z", "ms", "space", "lower"])

    def render(d: datetime, form: str) -> str:
        s = d.isoformat()
        if form == "z":
            return s.replace("+00:00", "Z")
        if form == "ms":
            return d.isoformat(timespec="milliseconds")
        if form == "space":
            return s.replace("T", " ")
        if form == "lower":
            return s.replace("+00:00", "z").lower()
        return s

    return st.builds(render, dt, forms)


scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.integers(), st.floats(allow_nan=False),
                   any_text, tricky_text)
free_value = st.recursive(scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                          max_leaves=6)
numbers = st.one_of(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.integers(0, 10**6),
                    st.sampled_from([0.0, -0.0, 1e-7, 1.5e-6, 3e-5, 2.5, 1e15, 1e16, 1.5e20, 123456789012345678, 0.1]))


def _value(s: dict, defs: dict) -> st.SearchStrategy[Any]:
    s, _ = _resolve(s, defs)
    if "enum" in s:
        return st.sampled_from(s["enum"])
    if "const" in s:
        return st.just(s["const"])
    t = s.get("type")
    if t == "string" and s.get("format") == "date-time":
        return _datetime_text()
    if t == "string":
        return _string(s)
    if t == "integer":
        lo = s.get("minimum", -(2**31))
        return st.one_of(st.integers(lo, 2**31 - 1), st.integers(lo, lo + 3))
    if t == "number":
        return numbers
    if t == "boolean":
        return st.booleans()
    if t == "object" and "properties" in s:
        return _object(s, defs)
    if t == "object":
        return st.dictionaries(st.text(ID_CHARS, max_size=8), free_value, max_size=4)
    if t == "array":
        return st.lists(_value(s["items"], defs), max_size=4)
    return free_value


def _object(s: dict, defs: dict) -> st.SearchStrategy[dict]:
    props, required = s["properties"], set(s.get("required", []))
    fields = {}
    for name, sub in props.items():
        inner, nullable = _resolve(sub, defs)
        strat = _value(sub, defs)
        if name in required:
            fields[name] = st.tuples(st.just(True), strat)
        else:
            choices = [st.tuples(st.just(False), st.none()), st.tuples(st.just(True), strat)]
            if nullable:
                choices.append(st.tuples(st.just(True), st.none()))
            fields[name] = st.one_of(choices)
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, (keep, v) in d.items() if keep})


def _data_strategy(etype: str) -> st.SearchStrategy[dict]:
    schema = EVENT_MODELS[etype].model_json_schema()
    defs = schema.get("$defs", {})
    data_schema, _ = _resolve(schema["properties"]["data"], defs)
    return _object(data_schema, defs)


DATA = {t: _data_strategy(t) for t in EVENT_TYPES}


@st.composite
def events(draw) -> dict:
    etype = draw(st.sampled_from(EVENT_TYPES))
    data = draw(DATA[etype])
    if draw(st.integers(0, 4)) == 0:
        data[draw(st.sampled_from(["x_extra", "vendor.field", "tags2", "exit_code", "cron"]))] = draw(free_value)
    ev: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(st.one_of(st.text(ID_CHARS, min_size=1, max_size=12), any_text.filter(bool))),
        "source": draw(st.sampled_from(["jupyter://hub-a", "papermill://b", "ci://gh", "s\u00e9rvice://x"])),
        "type": etype,
        "time": draw(_datetime_text()),
        "data": data,
    }
    extra = draw(st.integers(0, 6))
    if extra == 0:
        ev["subject"] = draw(st.one_of(st.none(), any_text, secret_text))
    elif extra == 1:
        ev["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    elif extra == 2:
        ev["datacontenttype"] = draw(st.sampled_from(["application/json", "text/plain", None]))
    return ev


def _set_path(ev: dict, path: list[str], value: Any) -> None:
    cur = ev
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value


@st.composite
def mutated(draw) -> dict | str:
    """An event with one defect (returned as a dict, or as a raw line when the defect is textual)."""
    ev = draw(events())
    data = ev["data"]
    kind = draw(st.sampled_from([
        "drop_required", "wrong_type", "enum", "negative", "bad_time", "unknown_type", "non_object", "broken",
        "future", "near_future", "too_long", "int_as_string", "bool_as_int", "dup_key", "nan", "trailing_comma",
        "null_required", "float_as_int", "escaped", "data_not_object", "big_int", "exponent"]))
    schema = EVENT_MODELS[ev["type"]].model_json_schema()
    defs = schema.get("$defs", {})
    dschema, _ = _resolve(schema["properties"]["data"], defs)
    props = dschema["properties"]
    required = [r for r in dschema.get("required", [])]
    if kind == "drop_required":
        target = draw(st.sampled_from(required + ["id", "time", "source", "specversion", "data"]))
        (data if target in required else ev).pop(target, None)
    elif kind == "null_required":
        target = draw(st.sampled_from(required + ["id", "time"]))
        (data if target in required else ev)[target] = None
    elif kind == "wrong_type":
        target = draw(st.sampled_from(sorted(props)))
        data[target] = draw(st.sampled_from([5, "5", True, [], {}, 1.5, "x"]))
    elif kind == "enum":
        enums = [k for k, v in props.items() if "enum" in _resolve(v, defs)[0]]
        if enums:
            data[draw(st.sampled_from(enums))] = "not-a-value"
        else:
            ev["specversion"] = "0.3"
    elif kind == "negative":
        nums = [k for k, v in props.items() if _resolve(v, defs)[0].get("type") in ("number", "integer")]
        if nums:
            data[draw(st.sampled_from(nums))] = draw(st.sampled_from([-1, -0.5, -(2**40)]))
    elif kind == "bad_time":
        ev["time"] = draw(st.sampled_from(["2024-02-30T00:00:00Z", "2024-01-01T00:00:00", "yesterday", "",
                                           "2024-13-01T00:00:00Z", "2024-01-01T25:00:00Z", 1700000000,
                                           "2024-01-01T00:00:00.1234567Z", "2024-01-01T23:59:60Z"]))
    elif kind == "unknown_type":
        ev["type"] = draw(st.sampled_from(["notebook.kernel.exploded", "", "Notebook.Kernel.Started", 5]))
    elif kind == "non_object":
        return draw(st.sampled_from(["[1, 2]", '"just a string"', "42", "null", "true", "[]"]))
    elif kind == "broken":
        line = _dumps(ev)
        return line[: draw(st.integers(1, max(1, len(line) - 1)))]
    elif kind == "future":
        ev["time"] = (NOW + timedelta(days=2)).isoformat()
    elif kind == "near_future":
        ev["time"] = (NOW + timedelta(hours=23, minutes=59)).isoformat()
    elif kind == "too_long":
        limited = [k for k, v in props.items() if (_resolve(v, defs)[0].get("maxLength") or 10**9) <= 4096]
        if limited:
            k = draw(st.sampled_from(limited))
            data[k] = "y" * (_resolve(props[k], defs)[0]["maxLength"] + 1)
        else:
            ev["id"] = "i" * 257
    elif kind == "int_as_string":
        ints = [k for k, v in props.items() if _resolve(v, defs)[0].get("type") == "integer"] or ["attempt"]
        data[draw(st.sampled_from(ints))] = "5"
    elif kind == "bool_as_int":
        bools = [k for k, v in props.items() if _resolve(v, defs)[0].get("type") == "boolean"] or ["critical"]
        data[draw(st.sampled_from(bools))] = 1
    elif kind == "float_as_int":
        floats = [k for k, v in props.items() if _resolve(v, defs)[0].get("type") == "number"]
        if floats:
            data[draw(st.sampled_from(floats))] = draw(st.sampled_from([3, 0, 10**15, 10**17]))
    elif kind == "data_not_object":
        ev["data"] = draw(st.sampled_from([[], "x", 1, None, [{"kernel_id": "k"}]]))
    elif kind == "big_int":
        ints = [k for k, v in props.items() if _resolve(v, defs)[0].get("type") == "integer"] or ["size_bytes"]
        data[draw(st.sampled_from(ints))] = draw(st.sampled_from([2**31, 2**63 - 1, 2**64 - 1, 10**25]))
    line = _dumps(ev) if kind != "big_int" else _dumps_big(ev)
    if kind == "dup_key":
        key = draw(st.sampled_from(['"id":', '"type":', '"time":']))
        line = line.replace(key, f'{key}"dup",{key}', 1) if draw(st.booleans()) else \
            line.replace('"data":{', '"data":{"team":"a","team":"b",', 1)
    elif kind == "nan":
        line = line.replace('"data":{', '"data":{"x":NaN,', 1)
    elif kind == "trailing_comma":
        line = line[:-1] + ",}"
    elif kind == "escaped":
        line = line.replace('"type":"', '"type":"\\u006e', 1).replace('"\\u006en', '"n', 1) \
            .replace('"specversion":"1.0"', '"specversion":"\\u0031.0"')
    elif kind == "exponent":
        line = line.replace('"time"', '"n":1E2,"time"', 1)
    return line


def _dumps_big(ev: dict) -> str:
    import json

    return json.dumps(ev, ensure_ascii=False, separators=(",", ":"))


def _dumps(x: Any) -> str:
    try:
        return orjson.dumps(x).decode()
    except TypeError:  # an int beyond 64 bits: what other producers may well send
        return _dumps_big(x)


def _body(items: list[Any], blank_lines: bool = False) -> bytes:
    out = []
    for i, x in enumerate(items):
        line = x if isinstance(x, str) else _dumps(x)
        out.append(line)
        if blank_lines and i % 3 == 0:
            out.append("   ")
    return ("\n".join(out) + "\n").encode()


# ---------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------


@SETTINGS
@given(st.lists(events(), min_size=1, max_size=25))
def test_valid_events_equivalent(evs):
    assert_equivalent(_body(evs))


@SETTINGS
@given(st.lists(st.one_of(events(), mutated()), min_size=1, max_size=25), st.booleans())
def test_mixed_valid_and_mutated_equivalent(items, blank):
    assert_equivalent(_body(items, blank_lines=blank))


@SETTINGS
@given(st.lists(events(), min_size=2, max_size=8))
def test_duplicate_keys_in_a_batch_keep_input_order(evs):
    dup = dict(evs[-1], data=dict(evs[0]["data"]))
    dup["id"], dup["source"], dup["type"] = evs[0]["id"], evs[0]["source"], evs[0]["type"]
    assert_equivalent(_body([evs[0], *evs[1:], dup, evs[0]]))


def test_canonical_events_of_every_type_take_the_fast_path():
    """The equivalence above would also hold if everything went through pydantic: check the fast path decides
    clean, canonical events of every type on its own (no exact-path rows), so the speed claim is real."""
    gen = _gen_events()
    df = gen.generate(20_000, seed=11)
    body = ("\n".join(gen.to_ndjson_lines(df).to_list()) + "\n").encode()
    got = assert_equivalent(body)
    kinds = set(df["type"].to_list())
    assert kinds == set(EVENT_TYPES)
    secrets = sum(1 for x in df["data"].to_list() if "hunter2secret" in x)
    assert got.fast == got.total - secrets
    assert got.redacted == secrets


def _gen_events():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "gen_events.py"
    spec = importlib.util.spec_from_file_location("bench_gen_events", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_demo_history_equivalent():
    """Realistic traffic from collector.demo.platform (tracebacks, parameters, planted secrets, registry events...)."""
    from collector.demo import platform as demo

    items: list[dict] = []
    for batch in demo.generate(days=1, seed=5):
        items.extend(batch)
    got = assert_equivalent(_body(items))
    assert got.fast >= 0.9 * got.total


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_edge_cases_equivalent():
    base = {"specversion": "1.0", "id": "e", "source": "s", "type": "notebook.kernel.started",
            "time": (NOW - timedelta(hours=1)).isoformat(), "data": {"kernel_id": "k"}}
    lines = [
        orjson.dumps(base).decode(),
        "\ufeff" + orjson.dumps(base).decode(),                              # BOM
        "\x0b" + orjson.dumps(base).decode(),                                # whitespace bytes.strip removes
        orjson.dumps(base).decode().replace('"k"', '"\\ud800"'),             # lone surrogate
        orjson.dumps(base).decode().replace('"k"', '"\\ud83d\\ude00"'),      # escaped pair
        orjson.dumps(base).decode().replace('"k"', '"a\\u0000b"'),           # NUL
        orjson.dumps(base).decode().replace('"k"', '"k\\u001fz"'),           # control char
        orjson.dumps(base).decode().replace('{"kernel_id":"k"}', '{"kernel_id":"k","tags":{"a":1,"a":2}}'),
        orjson.dumps(base).decode().replace('{"kernel_id":"k"}', '{"kernel_id":"k","tags":{"n":{"x":1,"x":2}}}'),
        orjson.dumps(base).decode().replace('{"kernel_id":"k"}', '{"kernel_id":"k","x":[1.0,1e-7,1e300,-0.0]}'),
        orjson.dumps(base).decode().replace('{"kernel_id":"k"}', '{"kernel_id":"k","x":123456789012345678901}'),
        orjson.dumps(base).decode().replace('{"kernel_id":"k"}', '{ "kernel_id" : "k" , "x" : [ 1 , 2 ] }'),
        orjson.dumps({**base, "type": "notebook.schedule.registered",
                      "data": {"notebook_id": "n", "cron": "0 * * * *", "timezone": "Mars/Olympus"}}).decode(),
        orjson.dumps({**base, "type": "notebook.schedule.registered",
                      "data": {"notebook_id": "n", "cron": "not cron", "timezone": None}}).decode(),
        orjson.dumps({**base, "type": "notebook.schedule.registered",
                      "data": {"notebook_id": "n", "cron": "*/5 * * * *", "timezone": "Europe/Paris"}}).decode(),
        orjson.dumps({**base, "type": "notebook.run.succeeded", "data": {
            "run_id": "r", "notebook_id": "n", "duration_seconds": 5, "cpu_seconds": "5",
            "cells": [{"index": 0, "duration_seconds": 1, "status": "ok"}]}}).decode(),
        orjson.dumps({**base, "type": "notebook.run.succeeded", "data": {
            "run_id": "r", "notebook_id": "n", "cells": [{"index": 0, "duration_seconds": 1.5, "status": "ok",
                                                          "extra": 1}]}}).decode(),
        orjson.dumps({**base, "type": "notebook.run.succeeded", "data": {
            "run_id": "r", "notebook_id": "n", "scheduled_for": "2026-01-01T00:00:00.5+00:00"}}).decode(),
        orjson.dumps({**base, "type": "notebook.run.queued", "data": {"run_id": "r", "notebook_id": "n",
                                                                      "attempt": 2**31 - 1}}).decode(),
        orjson.dumps({**base, "subject": "db at postgres://u:hunter2secret@h/db"}).decode(),
        orjson.dumps({**base, "data": {"kernel_id": "k", "db_password": "hunter2secret"}}).decode(),
        orjson.dumps({**base, "data": {"kernel_id": "AKIAIOSFODNN7EXAMPLE"}}).decode(),
        orjson.dumps({**base, "data": {"kernel_id": "k", "msg": "key AKIA\u0049OSFODNN7EXAMPLE"}}).decode()
        .replace("AKIAI", "AKIA\\u0049"),
        # hardening: identifiers holding a credential or a control character, nesting beyond the bound, times
        # at the edges of the contract's range (the fast path leaves them all to the exact path, which decides)
        orjson.dumps({**base, "source": "ghp_" + "a" * 36}).decode(),
        orjson.dumps({**base, "id": "e\tx"}).decode(),
        orjson.dumps({**base, "source": "s\u0085"}).decode(),
        # identifiers given as extra keys (a type that does not declare them): checked per row, all of them
        orjson.dumps({**base, "data": {"kernel_id": "k", "baseline_run_id": "b\tx"}}).decode(),
        orjson.dumps({**base, "data": {"kernel_id": "k", "trigger": "ghp_" + "a" * 36}}).decode(),
        orjson.dumps({**base, "data": {"kernel_id": "k", "session_id": "s\x01"}}).decode(),
        orjson.dumps({**base, "type": "notebook.run.queued",
                      "data": {"run_id": "r\n", "notebook_id": "n", "team": "t"}}).decode(),
        orjson.dumps({**base, "data": {"kernel_id": "k", "x": _nested(70)}}).decode(),
        # nesting at the bound, in each place the fast path walks: a declared free-form field (tags, parameters),
        # an extra data key, an extra top-level key (one level either side of MAX_NESTING)
        *[orjson.dumps({**base, "data": {"kernel_id": "k", "tags": {"a": _nested(d)}}}).decode() for d in (61, 62, 63)],
        *[orjson.dumps({**base, "type": "notebook.run.queued", "data": {
            "run_id": "r", "notebook_id": "n", "parameters": {"p": _nested(d)}}}).decode() for d in (61, 62, 63)],
        *[orjson.dumps({**base, "data": {"kernel_id": "k", "x": {"a": _nested(d)}}}).decode() for d in (61, 62, 63)],
        *[orjson.dumps({**base, "extension": {"a": _nested(d)}}).decode() for d in (62, 63, 64)],
        orjson.dumps({**base, "time": "1969-12-31T23:59:59Z"}).decode(),
        orjson.dumps({**base, "type": "notebook.run.succeeded", "data": {
            "run_id": "r", "notebook_id": "n", "scheduled_for": "2199-01-01T00:00:00-12:00"}}).decode(),
        orjson.dumps({**base, "type": "notebook.run.succeeded", "data": {
            "run_id": "r", "notebook_id": "n", "scheduled_for": "0001-01-01T00:00:00+01:00"}}).decode(),
        orjson.dumps({**base, "type": "notebook.schedule.registered",
                      "data": {"notebook_id": "n", "cron": "0 0 31 2 *", "grace_seconds": 1e308}}).decode(),
    ]
    body = ("\n".join(lines) + "\n").encode() + b'{"a": "\xff\xfe"}\n'
    assert_equivalent(body)


def test_attempt_beyond_the_storage_column_is_rejected_precisely():
    ev = {"specversion": "1.0", "id": "big", "source": "s", "type": "notebook.run.queued",
          "time": (NOW - timedelta(hours=1)).isoformat(), "data": {"run_id": "r", "notebook_id": "n", "attempt": 2**31}}
    ok = dict(ev, id="ok", data={"run_id": "r", "notebook_id": "n", "attempt": 2})
    got = bulk.validate_ndjson(_body([ev, ok]))
    assert got.row_index.to_pylist() == [1]
    [rej] = got.rejections
    # the contract bounds `attempt` to the INTEGER column, so pydantic's own error names it
    assert rej.index == 0 and rej.errors[0]["path"] == "data.attempt" and rej.errors[0]["type"] == "less_than_equal"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, exclude_min=True, exclude_max=True),
                 st.floats(min_value=2e-5, max_value=1.0), st.floats(min_value=0, max_value=9e-7)))
def test_duckdb_renders_safe_floats_like_orjson(x):
    """The fast path relies on this: within the ranges it accepts, DuckDB's JSON rendering of a double is orjson's."""
    assume(not (9e-7 <= abs(x) < 2e-5))
    assert _CON.execute("SELECT to_json(?::DOUBLE)::VARCHAR", [x]).fetchall()[0][0] == orjson.dumps(x).decode()


_CON = duckdb.connect()


def test_every_event_type_is_compiled():
    assert bulk.compiled().unsupported == {}


def test_json_array_items_equivalent():
    evs = [{"specversion": "1.0", "id": str(i), "source": "s", "type": "platform.probe",
            "time": (NOW - timedelta(minutes=i + 1)).isoformat(), "data": {"target": "ui", "ok": i % 2 == 0}}
           for i in range(20)] + [5, {"type": "x"}]
    ref = validation.validate_items(evs)
    got = bulk.validate_json_items(evs)
    assert sorted(got.row_index.to_pylist()) == ref.row_index
    assert sorted(map(str, _rows(got.table))) == sorted(map(str, _rows(rows_to_table(ref.rows))))
    assert [(r.index, r.errors) for r in got.rejections] == [(r.index, r.errors) for r in ref.rejections]


def test_parquet_rendering_runs_on_one_duckdb_thread():
    """The validator renders Parquet rows on its own thread with one DuckDB worker: the bulk command's writer and
    deriver keep the other cores busy (docs/performance.md, nineteenth round)."""
    v = bulk.BulkValidator()
    try:
        assert v.con.execute("SELECT current_setting('threads')").fetchone()[0] == 1
    finally:
        v.close()


def test_parquet_shaped_table_equivalent():
    t0 = NOW - timedelta(hours=2)
    table = pa.table({
        "specversion": ["1.0", "1.0", "1.0", None, "1.0"],
        "id": ["a", "b", "c", "d", "e"],
        "source": ["s"] * 5,
        "type": ["platform.probe", "platform.probe", "notebook.kernel.started", "platform.probe", "platform.probe"],
        "time": pa.array([t0] * 5, pa.timestamp("us", tz="UTC")),
        "subject": [None, "x", None, None, None],
        "data": ['{"target":"ui","ok":true}', '{"target":"ui","ok":1}', '{"kernel_id":"k"}', '{"target":"t","ok":false}',
                 '{"target":"ui","ok":true},"zzz":{"a":1}'],
    })
    v = bulk.BulkValidator()
    try:
        got = bulk.validate_parquet_table(v, table)
    finally:
        v.close()
    items = []
    for row in table.to_pylist():
        item = {k: val for k, val in row.items() if val is not None}
        item["time"] = row["time"].isoformat()
        try:
            item["data"] = orjson.loads(item["data"])
        except orjson.JSONDecodeError:
            item["data"] = None
        items.append(item)
    ref = validation.validate_items(items[:4])
    assert sorted(got.row_index.to_pylist()) == ref.row_index
    assert sorted(map(str, _rows(got.table))) == sorted(map(str, _rows(rows_to_table(ref.rows))))
    rej = {r.index: r.errors for r in got.rejections}
    assert {r.index: r.errors for r in ref.rejections} == {k: v for k, v in rej.items() if k < 4}
    assert rej[4][0]["path"] == "data" and rej[4][0]["type"] == "json_invalid"
