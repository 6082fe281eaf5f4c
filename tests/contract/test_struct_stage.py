"""The struct stage (msgspec) decides a line exactly as orjson + the generated check do, or leaves it to them.

test_bulk_equivalence.py holds the whole line path (struct stage included) equal to pydantic. These tests hold the
stage to the stronger per-line property: for every line it accepts, its tuple is the generated check's tuple for the
same line parsed by orjson (the same stored data, envelope and typed columns), so no row can differ between a batch
the stage decides and one it does not. And `json_texts` (msgspec writing the stored data) is orjson's text.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
from datetime import datetime, timedelta, timezone

import msgspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.contract.events import EVENT_TYPES
from collector.contract.vectorized import compiled
from collector.contract.vectorized.structs import struct_stage_of
from collector.contract.vectorized.validator import BulkValidator, _time_limit, json_texts
from tests.contract.test_bulk_equivalence import NOW, SETTINGS, _body, _dumps, _gen_events, _nested, \
    assert_equivalent, events, free_value, mutated

COMP = compiled()
STAGE = struct_stage_of(COMP)


def _decided(lines: list[bytes]) -> list[tuple[str, tuple] | None]:
    """Per line: (type, row) as the stage decided it, or None; and the stage's lists hold every line once."""
    d = STAGE.decide(lines)
    assert sorted(d.idx + d.rest) == list(range(len(lines))) and d.idx == sorted(d.idx) and d.rest == sorted(d.rest)
    assert len(d.idx) == len(d.types) == len(d.rows)
    out: list[tuple[str, tuple] | None] = [None] * len(lines)
    for i, t, row in zip(d.idx, d.types, d.rows):
        out[i] = (t, row)
    return out


def _same_as_check(lines: list[bytes]) -> int:
    """Every line the stage accepts gives the check's tuple; returns how many it accepted."""
    accepted = 0
    for line, d in zip(lines, _decided(lines)):
        if d is None:
            continue
        accepted += 1
        item = orjson.loads(line)
        check = COMP.checks[item["type"]]
        want = check(item)
        assert want is not None, f"the stage accepted a line the check refuses: {line!r}"
        etype, got = d
        assert etype == item["type"]
        # the stored data is the data Struct, written as its plain object: orjson's text of the check's dict
        assert isinstance(got[0], msgspec.Struct)
        row = (msgspec.to_builtins(got[0]), *got[1:])
        assert row == want, f"{line!r}\nstage {row}\ncheck {want}"
        assert [type(x) for x in row[6:]] == [type(x) for x in want[6:]]
        assert json_texts([got[0]]).to_pylist() == [orjson.dumps(want[0]).decode()]  # key order too
    return accepted


def _lines(items: list) -> list[bytes]:
    return [x for x in _body(items).split(b"\n") if x]


@SETTINGS
@given(st.lists(events(), min_size=1, max_size=25))
def test_valid_events_give_the_checks_tuples(evs):
    _same_as_check(_lines(evs))


@SETTINGS
@given(st.lists(st.one_of(events(), mutated()), min_size=1, max_size=25))
def test_mutated_events_give_the_checks_tuples_or_go_on(items):
    _same_as_check(_lines(items))


def test_the_stage_decides_the_bench_traffic():
    """The equivalence would also hold for a stage that accepts nothing: the bench's events of every type it
    compiles are decided by it (all but planted secrets' rows, which it decides too: the prefilter moves them)."""
    gen = _gen_events()
    df = gen.generate(20_000, seed=11)
    lines = [x.encode() for x in gen.to_ndjson_lines(df).to_list()]
    decided = _decided(lines)
    by_type: dict[str, list[bool]] = {}
    for line, d in zip(lines, decided):
        by_type.setdefault(orjson.loads(line)["type"], []).append(d is not None)
    assert set(by_type) == set(EVENT_TYPES)
    left = {t for t in EVENT_TYPES if t not in STAGE.types}
    assert left == {"notebook.schedule.registered"}, "a type the stage no longer compiles (or a new one it does)"
    for t in STAGE.types:
        assert all(by_type[t]), f"{t}: {by_type[t].count(False)} of {len(by_type[t])} bench events left to the check"
    assert _same_as_check(lines) == sum(d is not None for d in decided)


BASE = {"specversion": "1.0", "id": "e", "source": "s", "type": "notebook.kernel.started",
        "time": (NOW - timedelta(hours=1)).isoformat(), "data": {"kernel_id": "k"}}
RUN = {**BASE, "type": "notebook.run.succeeded", "data": {"run_id": "r", "notebook_id": "n"}}


def _line(ev: dict) -> bytes:
    return _dumps(ev).encode()


# (line, does the stage decide it?) - where the two parsers or the two checkers could part
EDGES = [
    (_line(BASE), True),
    (_line(BASE).replace(b'"type"', b'"typ\\u0065"'), True),  # an escaped key is the same key
    (_line(BASE)[:-1] + b',"type":"notebook.kernel.died"}', False),  # a repeated `type` that differs: last wins
    (_line(BASE)[:-1] + b',"type":"notebook.kernel.started"}', True),
    (_line(BASE).replace(b'"kernel_id":"k"', b'"kernel_id":"a","kernel_id":"k"'), True),  # last value wins
    (_line({**BASE, "traceparent": "00-x"}), False),  # an extension attribute: the check keeps it out of storage
    (_line({**BASE, "data": {"kernel_id": "k", "x_extra": 1}}), False),  # extra data keys: the check stores them
    (_line({**BASE, "data": {"kernel_id": "k", "tags": {"a": 123456789012345678901234}}}), False),  # > 64 bits
    (_line({**BASE, "data": {"kernel_id": "k", "tags": {"a": 18446744073709551615}}}), True),  # u64: an int to both
    (_line({**BASE, "data": {"kernel_id": "k", "tags": {"a": 1e16, "b": 1e-7, "c": -0.0}}}), True),
    (_line({**BASE, "data": {"kernel_id": "k", "tags": {"a": _nested(61)}}}), True),
    (_line({**BASE, "data": {"kernel_id": "k", "tags": {"a": _nested(62)}}}), False),  # too deep: pydantic decides
    (_line({**BASE, "data": {"kernel_id": "k", "attempt": 2.0}}), False),  # a float for an int
    (_line({**BASE, "data": {"kernel_id": "k", "attempt": True}}), False),
    (_line({**BASE, "data": {"kernel_id": "k", "attempt": 2**31}}), False),  # beyond the contract's bound
    (_line({**BASE, "data": {"kernel_id": "k", "team": ""}}), False),
    (_line({**BASE, "data": {"kernel_id": "k", "team": "😀" * 128}}), True),  # lengths in code points
    (_line({**BASE, "data": {"kernel_id": "k", "team": "😀" * 129}}), False),
    (_line({**BASE, "data": {"kernel_id": "k", "team": None}}), True),  # an optional null is dropped
    (_line({**BASE, "data": {"kernel_id": None}}), False),
    (_line({**BASE, "data": None}), False),
    # the event time is any text here: its form, date and limit are checked column-wise (test_event_times_...)
    (_line({**BASE, "time": "2026-02-30T00:00:00Z"}), True),
    (_line({**BASE, "time": (NOW - timedelta(hours=1)).isoformat().replace("T", " ")}), True),
    (_line({**BASE, "time": (NOW + timedelta(hours=25)).isoformat()}), True),
    (_line({**BASE, "time": 5}), False),
    (_line({**RUN, "data": {**RUN["data"], "duration_seconds": 5, "cpu_seconds": 0}}), True),  # ints for floats
    (_line({**RUN, "data": {**RUN["data"], "duration_seconds": 2**53 + 2}}), False),
    (_line({**RUN, "data": {**RUN["data"], "duration_seconds": "5"}}), False),
    (_line({**RUN, "data": {**RUN["data"], "scheduled_for": "2026-01-01T00:00:00.5+00:00"}}), True),  # re-rendered
    (_line({**RUN, "data": {**RUN["data"], "scheduled_for": "2026-01-01 00:00:00Z"}}), False),
    (_line({**RUN, "data": {**RUN["data"], "cells": [{"index": 0, "duration_seconds": 1, "status": "ok"}]}}), True),
    (_line({**RUN, "data": {**RUN["data"], "cells": [{"index": 0, "duration_seconds": 1, "status": "ok",
                                                      "x": 1}]}}), False),
    (_line({**RUN, "data": {**RUN["data"], "parameters": {"p": [1, {"q": None}]}}}), True),
    (_line({**RUN, "type": "notebook.run.queued", "data": {**RUN["data"], "attempt": 3}}), True),
    (_line({**BASE, "type": "notebook.schedule.registered",
            "data": {"notebook_id": "n", "cron": "0 * * * *", "timezone": "Europe/Paris"}}), False),
    (b'\xef\xbb\xbf' + _line(BASE), False),
    (_line(BASE).replace(b'"k"', b'"\\ud800"'), False),
    (_line(BASE).replace(b'"k"', b'"\\ud83d\\ude00"'), True),
    (_line(BASE).replace(b'"k"', b'"k\\u0000"'), True),
    (b"  " + _line(BASE) + b" \r", True),
]


@pytest.mark.parametrize("line,decided", EDGES, ids=[str(i) for i in range(len(EDGES))])
def test_edge_lines(line, decided):
    [d] = _decided([line])
    assert (d is not None) == decided
    assert _same_as_check([line]) == int(decided)


DEEP = [_line({**BASE, "data": {"kernel_id": "k", "tags": {"a": "@"}}}).replace(b'"@"', b"[" * n + b"]" * n)
        for n in (1_000, 5_000, 200_000)]


# Event times the struct stage and the generated checks pass on as text, each in a batch of valid lines: every one
# but the first two takes the exact path, which accepts or rejects it with pydantic's words.
TIMES = [(NOW - timedelta(hours=1)).isoformat(), (NOW + timedelta(hours=20)).isoformat(),
         (NOW + timedelta(hours=25)).isoformat(), (NOW + timedelta(hours=23, minutes=59, seconds=59)).isoformat(),
         "2024-02-30T00:00:00Z", "2024-02-29 00:00:00Z", "2024-02-29T00:00:00", "2024-02-29T00:00:00Z\n",
         "\n2024-02-29T00:00:00Z", "2024-02-29T00:00:00.1234567Z", "2024-02-29t00:00:00z", "1969-12-31T23:59:59Z",
         "2024-02-29T00:00:00+14:00", "\u0662024-02-29T00:00:00Z", "2024-02-29T24:00:00Z", ""]


def test_event_times_in_any_other_form_day_or_beyond_the_limit_take_the_exact_path():
    lines = [_line({**BASE, "id": f"v{i}"}) for i in range(3)]
    lines += [_line({**BASE, "id": f"t{i}", "time": t}) for i, t in enumerate(TIMES)]
    got = assert_equivalent(b"\n".join(lines) + b"\n")  # pydantic's verdicts and words for every line
    assert got.exact == len(TIMES) - 2  # the others went on to the exact path, row by row
    assert got.fast == 5
    assert got.table.column("time").null_count == 0


def test_rows_of_both_stages_come_out_in_input_order():
    """Lines the stage decides and lines only the generated check accepts (an extra key in `data`: the Structs
    refuse unknown fields) interleaved, one key twice across the two: the rows come out in input order, so the
    first occurrence of a key still wins downstream."""
    plain = [_line({**BASE, "id": f"p{i}"}) for i in range(6)]
    extra = [_line({**BASE, "id": f"x{i}", "data": {"kernel_id": "k", "zone": "eu"}}) for i in range(3)]
    again = _line({**BASE, "id": "p0", "data": {"kernel_id": "k2", "zone": "eu"}})  # p0's key, checked
    lines = [plain[0], extra[0], plain[1], plain[2], extra[1], again, plain[3], extra[2], plain[4], plain[5]]
    d = STAGE.decide(lines)
    assert d.rest == [1, 4, 5, 7]  # the check's lines, so both stages' rows are merged
    got = BulkValidator().validate_lines(lines)
    assert got.fast == len(lines) and got.row_index.to_pylist() == list(range(len(lines)))
    assert got.table.column("id").to_pylist() == [orjson.loads(x)["id"] for x in lines]
    assert got.table.column("kernel_id").to_pylist()[5] == "k2"
    assert_equivalent(b"\n".join(lines) + b"\n")


def test_nesting_beyond_the_parsers_depth_is_a_rejection_of_that_line_only():
    """msgspec raises RecursionError past ~1,000 levels: the line is left to orjson and worded as a rejection."""
    assert _decided(DEEP) == [None, None, None]
    got = BulkValidator().validate_lines([*DEEP, _line(BASE)])
    assert got.row_index.to_pylist() == [3]
    assert [r.index for r in got.rejections] == [0, 1, 2]
    assert {r.errors[0]["type"] for r in got.rejections} <= {"too_deep", "json_invalid"}


def test_stage_on_and_off_give_the_same_batches():
    lines = [line for line, _ in EDGES] + DEEP + [b"not json", b"[1,2]", b'{"type":"nope"}']
    on, off = BulkValidator(), BulkValidator(struct_stage=False)
    a, b = on.validate_lines(lines), off.validate_lines(lines)
    assert a.table.equals(b.table)
    assert a.row_index.equals(b.row_index)
    assert [(r.index, r.errors, r.payload) for r in a.rejections] == [(r.index, r.errors, r.payload)
                                                                     for r in b.rejections]
    assert on.structs is not None and off.structs is None


# --- json_texts: msgspec's writing is orjson's ---------------------------------------------------------------


@SETTINGS
@given(st.lists(st.dictionaries(st.text(max_size=6), free_value, max_size=4), max_size=30))
def test_json_texts_are_orjsons(values):
    try:
        want = [orjson.dumps(v).decode() for v in values]
    except TypeError:  # an int beyond 64 bits: never in a parsed, checked value
        return
    assert json_texts(values).to_pylist() == want


def test_json_texts_every_code_point_and_random_doubles():
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    values: list = ["".join(chars[i:i + 512]) for i in range(0, len(chars), 512)]
    rnd = random.Random(3)
    doubles = [struct.unpack("d", struct.pack("Q", rnd.getrandbits(64)))[0] for _ in range(20_000)]
    values += [[x] for x in doubles if math.isfinite(x)]
    values += [{"a": 1e16, "b": "1e5", "c": [1e22, 5e-324, 1.7976931348623157e308]}, {"x": "no exponent"}]
    got = json_texts(values)
    assert got.type == pa.string()
    assert got.to_pylist() == [orjson.dumps(v).decode() for v in values]
    assert json_texts([]).to_pylist() == []


def test_json_texts_exponents_anywhere_and_hashes_without_the_fallback(monkeypatch):
    """Every place a number can stand in compact JSON (the whole text, first or later in an array, an object's
    value, nested), with a positive exponent and without; strings that look like numbers. Hex hashes (the
    emitters' `sha256:<hex>`) hold digit-e-digit and are written by msgspec, not one by one by orjson."""
    import collector.contract.vectorized.validator as validator

    big = [1e16, -1.5e16, 1e300, 1.7976931348623157e308, 1.2345678901234568e20, 1e-7, 5e-324, 1e15, 0.5, 3]
    values: list = list(big) + [[x] for x in big] + [[0, x] for x in big] + [[x, 0] for x in big]
    values += [{"a": x} for x in big] + [{"a": 0, "b": x, "c": 1} for x in big]
    values += [{"a": {"b": [1, {"c": x}]}} for x in big]
    values += ["1e16", ":1e16,", {"h": "sha256:7005e0b80dedb773"}, {"k:1e5": "x,1e5]"}, "e5", "1e", "-1.5e+16"]
    calls = []
    real = validator._orjson
    monkeypatch.setattr(validator, "_orjson", lambda v: calls.append(v) or real(v))
    assert json_texts(values).to_pylist() == [orjson.dumps(v).decode() for v in values]
    hashes = [{"output_hash": "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()} for i in range(300)]
    assert sum("e" in h["output_hash"] for h in hashes) > 200
    calls.clear()
    assert json_texts(hashes).to_pylist() == [orjson.dumps(v).decode() for v in hashes]
    assert calls == []


def test_free_keys_are_the_free_form_fields():
    """Every data field whose values the contract does not bound (dicts, any) is a free key, and nothing else."""
    free = {f.name for p in COMP.plans.values() for f in p.data if f.kind.tag in ("dict", "any")}
    assert free and set(COMP.free_keys) == free


FREE_CASES = [  # (data, extra keys?, searched?): the search runs where a number can be unbounded, only there
    ({"kernel_id": "k", "tags": {"x": 1e16}}, False, True),
    ({"kernel_id": "k", "tags": {"x": [0, {"y": -2.5e300}]}}, False, True),
    ({"kernel_id": "k", "tags": {"sha": "sha256:7005e0b8"}}, False, True),  # searched, nothing found
    ({"kernel_id": "k", "exit_code": 1e17}, True, True),  # an extra key: free-form
    ({"run_id": "r", "parameters": {"n": 1.5e20}}, False, True),
    ({"kernel_id": "k", "note": "tags: 1e16"}, False, False),  # not the key `"tags":`
    ({"kernel_id": "k"}, False, False),
]


@pytest.mark.parametrize("data,extra,searched", FREE_CASES)
def test_json_texts_search_free_keys_and_extra_keys_only(monkeypatch, data, extra, searched):
    import collector.contract.vectorized.validator as validator

    seen = []
    real = pc.match_substring_regex
    monkeypatch.setattr(validator.pc, "match_substring_regex",
                        lambda texts, pattern: seen.extend(texts.to_pylist()) or real(texts, pattern))
    got = json_texts([data], free=COMP.free_keys, extras=[extra]).to_pylist()
    assert got == [orjson.dumps(data).decode()]
    assert seen == ([orjson.dumps(data).decode().replace("e+", "e")] if searched else [])


def test_json_texts_of_decided_rows_with_big_numbers_in_free_form_fields():
    """Through the struct stage: data Structs with unbounded numbers under `tags` and `parameters`, beside rows
    without, are written as orjson writes them."""
    lines = [_line({**BASE, "id": f"k{i}", "data": {"kernel_id": f"k{i}", "tags": {"x": 10.0 ** (14 + i)}}})
             for i in range(4)]
    lines += [_line({**RUN, "id": f"r{i}", "data": {**RUN["data"], "parameters": {"p": [-(10.0 ** (14 + i))]}}})
              for i in range(4)]
    d = STAGE.decide(lines)
    assert len(d.idx) == len(lines)
    got = json_texts([r[0] for r in d.rows], free=COMP.free_keys, extras=[r[5] for r in d.rows])
    assert got.to_pylist() == [orjson.dumps(r[0], default=msgspec.to_builtins).decode() for r in d.rows]
    assert sum("e+" in t for t in got.to_pylist()) == 4


def test_time_limit_is_near_the_contract_limit():
    assert timedelta(hours=23) < _time_limit() - datetime.now(timezone.utc) < timedelta(hours=24)


def test_json_texts_of_a_batch_beyond_one_column_are_written_per_value(monkeypatch):
    import collector.contract.vectorized.validator as validator

    values: list = [{"a": i, "b": "x" * i, "c": 1e16} for i in range(50)]
    lines = [_line({**BASE, "data": {"kernel_id": f"k{i}", "tags": {"x": 1e16}}}) for i in range(3)]
    values += [row[0] for row in STAGE.decide(lines).rows]  # data Structs: orjson's text too
    monkeypatch.setattr(validator, "_COLUMN_BYTES", 100)
    got = json_texts(values)
    assert got.type == pa.string()
    assert got.to_pylist() == [orjson.dumps(v, default=msgspec.to_builtins).decode() for v in values]
