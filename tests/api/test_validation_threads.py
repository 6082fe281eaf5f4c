"""Requests are validated at most `validation_threads` at a time (collector/api/deps.py: validated_in_thread), on
POST /v1/events and on the native routes, which share the app's one limiter; the others wait their turn and are
all answered."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from collector.api import ingest as ingest_route
from collector.sources.common import NativeBatch
from collector.sources.jupyter import KERNEL_ACTIONS
from tests.conftest import auth
from tests.support import event

REQUESTS = 6


class Gauge:
    """Wraps a function to count how many calls run at once, each held long enough for the others to arrive."""

    def __init__(self, fn):
        self.fn, self.now, self.most = fn, 0, 0
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.3)
            return self.fn(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


def _post_events(client, i: int):
    body = [event(f"vt-{i}-{k}", "notebook.kernel.started", {"kernel_id": f"k-{i}-{k}", "team": "ml"})
            for k in range(3)]
    return client.post("/v1/events", json=body, headers=auth("ingest"))


def _post_jupyter(client, i: int):
    record = {"__timestamp__": "2026-11-20T10:00:00Z", "__schema__": KERNEL_ACTIONS, "__schema_version__": "1",
              "__metadata_version__": 1, "action": "start", "kernel_id": f"jk-{i}", "kernel_name": "python3",
              "status": "success", "msg": "Kernel started."}
    return client.post("/v1/jupyter/events?server=hub-a", json=[record], headers=auth("ingest"))


def _at_once(client, post) -> list:
    with ThreadPoolExecutor(REQUESTS) as pool:
        return list(pool.map(lambda i: post(client, i), range(REQUESTS)))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_post_events_validates_at_most_the_setting_at_once(make_client, monkeypatch, threads):
    gauge = Gauge(ingest_route._prepare)
    monkeypatch.setattr(ingest_route, "_prepare", gauge)
    client = make_client(validation_threads=threads)
    answers = _at_once(client, _post_events)
    assert [r.status_code for r in answers] == [200] * REQUESTS
    assert sum(r.json()["accepted"] for r in answers) == 3 * REQUESTS
    assert gauge.most == threads  # reached, and never passed


@pytest.mark.parametrize("cores", [1, 2, 3, 6])
def test_the_default_is_the_cores_left_beside_the_writer_and_the_deriver(make_client, monkeypatch, cores):
    """One request at a time on 1 or 2 cores, the cores less two above (collector.spare_cores)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    gauge = Gauge(ingest_route._prepare)
    monkeypatch.setattr(ingest_route, "_prepare", gauge)
    client = make_client()
    assert [r.status_code for r in _at_once(client, _post_events)] == [200] * REQUESTS
    assert gauge.most == {1: 1, 2: 1, 3: 1, 6: 4}[cores]


def test_the_native_routes_share_the_limit(make_client, monkeypatch):
    gauge = Gauge(NativeBatch.validate)
    monkeypatch.setattr(NativeBatch, "validate", lambda self: gauge(self))
    client = make_client(validation_threads=2)
    answers = _at_once(client, _post_jupyter)
    assert [r.status_code for r in answers] == [200] * REQUESTS
    assert sum(r.json()["accepted"] for r in answers) == REQUESTS
    assert gauge.most == 2
