"""Requests waiting for validation are validated together and answered apart (collector/api/coalesce.py, the
events route's `_prepare_many`): each request gets what validating it alone gives, its own errors stay its own, and a
request alone is never held back."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import orjson
import pytest

from collector.api import ingest as ingest_route
from collector.api.coalesce import Coalescer
from collector.api.ingest import Body, _prepare, _prepare_many
from collector.contract.body import BodyError
from tests.conftest import auth
from tests.support import event

NDJSON = "application/x-ndjson"
MAX_INFLATED, MAX_EVENTS = 1 << 20, 50


def _lines(prefix: str, n: int, broken_at: int | None = None) -> bytes:
    out = [orjson.dumps(event(f"{prefix}-{k}", "notebook.kernel.started", {"kernel_id": f"k{k}", "team": "ml"}))
           for k in range(n)]
    if broken_at is not None:
        out.insert(broken_at, b'{"specversion": "1.0", "id": ')
    return b"\n".join(out) + b"\n"


def _body(raw: bytes, ctype: str | None = NDJSON, cenc: str | None = None, max_events: int = MAX_EVENTS) -> Body:
    return Body(raw, ctype, cenc, MAX_INFLATED, max_events)


BODIES = [
    _body(_lines("a", 3)),
    _body(_lines("b", 4, broken_at=2)),  # a line orjson cannot read: `line 3` of this request
    _body(b"\n\n" + _lines("c", 2).replace(b'"team":"ml"', b'"team":5', 1)),  # blank lines, a contract error
    _body(gzip.compress(_lines("d", 2)), cenc="gzip"),
    _body(b"\x1f\x8b not gzip", cenc="gzip"),  # 400, this request only
    _body(b"\n \n"),  # no events: 400
    _body(_lines("e", 5), max_events=4),  # 413
    _body(orjson.dumps([event("f-1", "notebook.kernel.started", {"kernel_id": "k", "team": "ml"})]),
          ctype="application/json"),
    _body(b'[{"specversion": "1.0"}, {"a": 1e999999}]', ctype="application/json"),  # parsed whole: 400
    _body(_lines("g", 1), ctype="text/plain"),  # 415
]


def _alone(body: Body):
    try:
        return _prepare(body.raw, body.ctype, body.cenc, body.max_inflated, body.max_events)
    except Exception as exc:  # noqa: BLE001
        return exc


def _assert_same(outcome, alone) -> None:
    if isinstance(alone, Exception):
        assert type(outcome) is type(alone) and str(outcome) == str(alone)
        assert getattr(outcome, "kind", None) == getattr(alone, "kind", None)
        return
    assert outcome.table.equals(alone.table)
    assert outcome.row_index.to_pylist() == alone.row_index.to_pylist()
    assert outcome.rejections == alone.rejections
    assert (outcome.total, outcome.fast, outcome.exact, outcome.redacted) == \
        (alone.total, alone.fast, alone.exact, alone.redacted)


class Calls:
    """Counts the validator's calls and their sizes."""

    def __init__(self, monkeypatch):
        self.sizes: list[int] = []
        validator = ingest_route.default_validator()
        calls = self

        class Counting:
            def validate_lines(self, lines, **kw):
                calls.sizes.append(len(lines))
                return validator.validate_lines(lines, **kw)

        monkeypatch.setattr(ingest_route, "default_validator", lambda: Counting())


def _validated_together(monkeypatch, bodies: list[Body]) -> list[int]:
    """`_prepare_many(bodies)` held to each body's `_prepare` alone; the sizes of the validator's calls."""
    alone = [_alone(b) for b in bodies]
    calls = Calls(monkeypatch)
    for outcome, expected in zip(_prepare_many(bodies), alone, strict=True):
        _assert_same(outcome, expected)
    return calls.sizes


def test_each_body_gets_what_it_gets_alone(monkeypatch):
    alone = [_alone(b) for b in BODIES]
    assert sum(isinstance(a, BodyError) for a in alone) == 5 and sum(not isinstance(a, Exception) for a in alone) == 5
    # the JSON arrays alone (the second, unreadable, then parsed whole), the readable NDJSON bodies in one call
    assert _validated_together(monkeypatch, BODIES) == [1, 2, 3 + 5 + 2 + 2]


def test_a_call_holds_at_most_what_one_request_may(monkeypatch):
    bodies = [_body(_lines(f"h{k}", 3), max_events=7) for k in range(5)]
    assert _validated_together(monkeypatch, bodies) == [6, 6, 3]


def test_a_call_holds_at_most_one_slice_of_several_bodies(monkeypatch):
    """Past the validator's slice a call's working set only grows: several bodies share a call up to
    COALESCED_LINES lines, and a body larger than that is validated alone."""
    monkeypatch.setattr(ingest_route, "COALESCED_LINES", 7)
    bodies = [_body(_lines("s1", 3)), _body(_lines("s2", 3)), _body(_lines("s3", 10)), _body(_lines("s4", 2)),
              _body(_lines("s5", 2))]
    assert _validated_together(monkeypatch, bodies) == [6, 10, 4]


def test_a_failing_call_validates_each_body_alone(monkeypatch):
    validator = ingest_route.default_validator()
    sizes: list[int] = []

    class FailsTogether:
        def validate_lines(self, lines, **kw):
            sizes.append(len(lines))
            if len(lines) > 3:
                raise RuntimeError("boom")
            return validator.validate_lines(lines, **kw)

    bodies = [_body(_lines("i", 3)), _body(_lines("j", 2, broken_at=0))]
    alone = [_alone(b) for b in bodies]
    monkeypatch.setattr(ingest_route, "default_validator", lambda: FailsTogether())
    for outcome, expected in zip(_prepare_many(bodies), alone, strict=True):
        _assert_same(outcome, expected)
    assert sizes == [6, 3, 3]


# ---- the coalescer -------------------------------------------------------------------------------------------


def _recording(calls: list[list[int]], gate: threading.Event | None = None, fail: set[int] = frozenset()):
    def run(jobs: list[int]) -> list:
        calls.append(list(jobs))
        if gate is not None and len(calls) == 1:
            assert gate.wait(10)
        return [ValueError(f"job {j}") if j in fail else j * 10 for j in jobs]
    return run


async def _spawn(coalescer: Coalescer, jobs) -> list[asyncio.Task]:
    tasks = []
    for j in jobs:
        tasks.append(asyncio.create_task(coalescer.submit(j)))
        await asyncio.sleep(0)  # each submit reaches the queue in order
    return tasks


def test_jobs_that_wait_for_a_call_are_taken_together_and_answered_apart():
    calls: list[list[int]] = []
    gate = threading.Event()

    async def main():
        coalescer = Coalescer(anyio.CapacityLimiter(1), _recording(calls, gate, fail={3}))
        first = (await _spawn(coalescer, [1]))[0]
        while not calls:  # the first call runs, alone
            await asyncio.sleep(0.005)
        rest = await _spawn(coalescer, [2, 3, 4])
        gate.set()
        assert await first == 10
        outcomes = await asyncio.gather(*rest, return_exceptions=True)
        assert outcomes[0] == 20 and outcomes[2] == 40
        assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "job 3"  # its error only

    asyncio.run(main())
    assert calls == [[1], [2, 3, 4]]


def test_a_failing_call_fails_its_jobs_only():
    calls: list[list[int]] = []

    def run(jobs):
        calls.append(list(jobs))
        if 1 in jobs:
            raise RuntimeError("the call failed")
        return [j for j in jobs]

    async def main():
        coalescer = Coalescer(anyio.CapacityLimiter(1), run)
        with pytest.raises(RuntimeError, match="the call failed"):
            await coalescer.submit(1)
        assert await coalescer.submit(2) == 2  # nothing left behind: the next job runs

    asyncio.run(main())
    assert calls == [[1], [2]]


def test_a_burst_is_shared_among_the_tokens():
    calls: list[list[int]] = []
    running, most = [0], [0]
    lock = threading.Lock()

    def run(jobs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
            calls.append(list(jobs))
        return list(jobs)

    async def main():
        coalescer = Coalescer(anyio.CapacityLimiter(2), run)
        tasks = [asyncio.create_task(coalescer.submit(j)) for j in range(6)]  # all queued before a driver runs
        assert await asyncio.gather(*tasks) == list(range(6))

    asyncio.run(main())
    assert sorted(map(len, calls)) == [3, 3] and most[0] == 2


def test_a_call_takes_waiting_jobs_within_its_budget():
    """Jobs weigh what their bodies do: a call takes the waiting ones in order up to the budget, and always one."""
    calls: list[list[int]] = []
    gate = threading.Event()

    async def main():
        coalescer = Coalescer(anyio.CapacityLimiter(1), _recording(calls, gate), weight=lambda j: j, budget=10)
        first = (await _spawn(coalescer, [1]))[0]
        while not calls:
            await asyncio.sleep(0.005)
        rest = await _spawn(coalescer, [4, 5, 2, 30, 3])
        gate.set()
        assert await first == 10
        assert await asyncio.gather(*rest) == [40, 50, 20, 300, 30]

    asyncio.run(main())
    assert calls == [[1], [4, 5], [2], [30], [3]]


def test_a_cancelled_job_is_not_run():
    calls: list[list[int]] = []
    gate = threading.Event()

    async def main():
        coalescer = Coalescer(anyio.CapacityLimiter(1), _recording(calls, gate))
        first = (await _spawn(coalescer, [1]))[0]
        while not calls:
            await asyncio.sleep(0.005)
        left, stays = await _spawn(coalescer, [2, 3])
        left.cancel()
        await asyncio.sleep(0)
        gate.set()
        assert await first == 10 and await stays == 30

    asyncio.run(main())
    assert calls == [[1], [3]]


# ---- through the route ----------------------------------------------------------------------------------------


def test_concurrent_requests_are_answered_each_for_itself(make_client, monkeypatch):
    """Six requests posted at once while the first is validated (held 0.3 s): the others are validated in fewer
    calls, and each answer indexes and numbers its own lines."""
    sizes: list[int] = []
    real = ingest_route._prepare_many

    def slow(bodies):
        sizes.append(len(bodies))
        if len(sizes) == 1:
            time.sleep(0.3)
        return real(bodies)

    monkeypatch.setattr(ingest_route, "_prepare_many", slow)
    client = make_client(validation_threads=1)
    headers = {**auth("ingest"), "Content-Type": NDJSON}

    def post(i: int):
        return client.post("/v1/events", content=_lines(f"r{i}", 3, broken_at=i % 3), headers=headers)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(post, range(6)))
    for i, r in enumerate(answers):
        assert r.status_code == 200, r.text
        doc = r.json()
        assert (doc["accepted"], doc["rejected"]) == (3, 1)
        bad = [x for x in doc["results"] if x["status"] == "rejected"]
        assert [x["index"] for x in bad] == [i % 3]
        assert f"line {i % 3 + 1}:" in bad[0]["errors"][0]["message"]
        assert [x["id"] for x in doc["results"] if x["status"] == "accepted"] == [f"r{i}-{k}" for k in range(3)]
    assert sum(sizes) == 6 and max(sizes) > 1  # some requests waited and were validated together
