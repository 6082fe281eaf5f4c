"""The writer's group commit waits for requests still being validated, never longer than commit_delay, and not
at all when nothing is arriving."""

from __future__ import annotations

import threading
import time

import pytest

from collector.contract.vectorized import validate_json_items
from collector.ingest.writer import Writer
from collector.metrics.counters import CounterStore
from collector.storage import db as dbmod
from tests.support import event


def _rows(i: int):
    return validate_json_items([event(f"g-{i}", "notebook.kernel.started", {"kernel_id": f"k{i}", "team": "t"})]).table


@pytest.fixture
def writer(tmp_path):
    con = dbmod.connect(tmp_path / "w.duckdb")
    made: list[Writer] = []

    def make(delay: float) -> Writer:
        w = Writer(con, CounterStore(), commit_delay=delay)
        w.start()
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()
    con.close()


def test_a_request_being_validated_joins_the_group(writer):
    w = writer(5.0)
    validated = threading.Event()
    second: dict = {}

    def late_request() -> None:
        with w.arriving():
            validated.wait()  # still validating when the first request is queued
            second["fut"] = w.submit(_rows(2), [])

    t = threading.Thread(target=late_request)
    with w.arriving():
        t.start()
        first = w.submit(_rows(1), [])
    time.sleep(0.3)
    assert not first.done()  # the writer waits for the request still arriving
    validated.set()
    t.join()
    assert first.result(timeout=10).batch_id == second["fut"].result(timeout=10).batch_id
    assert w.stats.group_sizes[-1] == 2


def test_nothing_arriving_commits_at_once(writer):
    w = writer(30.0)
    t0 = time.monotonic()
    w.submit(_rows(1), []).result(timeout=10)
    assert time.monotonic() - t0 < 10  # did not wait the 30 s delay: nothing else was arriving


def test_the_wait_is_bounded_by_commit_delay(writer):
    w = writer(0.2)
    stuck = threading.Event()

    def never_submits() -> None:
        with w.arriving():
            stuck.wait()

    t = threading.Thread(target=never_submits)
    t.start()
    try:
        time.sleep(0.05)
        w.submit(_rows(1), []).result(timeout=10)  # committed after the delay, alone
        assert w.stats.group_sizes[-1] == 1
    finally:
        stuck.set()
        t.join()
