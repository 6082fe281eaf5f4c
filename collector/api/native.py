"""What the native-format routes share: the capped, un-gzipped body, the ignored-records counter, and handing a
mapped batch to the one ingest path."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from collector import conventions as C
from collector.api.auth import ANONYMOUS
from collector.api.body import read_capped_body
from collector.api.deps import validated_in_thread
from collector.api.teams import enforce_team
from collector.contract.body import decode_body
from collector.ingest.submit import Outcome, empty_outcome, submit
from collector.sources.common import NativeBatch
from collector.telemetry import request_id_var

_ignored_lock = threading.Lock()


def count_ignored(request: Request, channel: str, reasons: Counter) -> None:
    """`observatory_native_records_ignored_total{channel,reason}`: records of a native format we do not map.

    Kept in memory (it restarts from 0 with the process, which Prometheus' rate() handles)."""
    if not reasons:
        return
    state = request.app.state
    counter = getattr(state, "native_ignored_counter", None)
    if counter is None:
        with _ignored_lock:
            counter = getattr(state, "native_ignored_counter", None)
            registry = state.store.exposition.live  # rendered on every scrape
            if counter is None:
                from prometheus_client import Counter as PromCounter

                counter = PromCounter(
                    C.NATIVE_RECORDS_IGNORED, "Native-format records received and not mapped to an "
                    "event (other schemas or record kinds), by channel and reason.", ["channel", "reason"],
                    registry=registry)
                state.native_ignored_counter = counter
    for reason, n in reasons.items():
        counter.labels(channel, reason[:64]).inc(n)


async def submit_native(request: Request, batch: NativeBatch, channel: str, *, minimal: bool = False) -> Outcome:
    """Validate a mapped batch and commit it through the one ingest path (collector/ingest/submit.py); `minimal`:
    the outcome lists only the events not accepted (a route that reads only the rejections asks for it too).

    When every record was ignored nothing goes to the writer and the outcome has zero counts."""
    count_ignored(request, channel, batch.ignored)
    rid = request_id_var.get()
    if not batch.events:
        return empty_outcome(rid, minimal=minimal)
    validated = await validated_in_thread(request, batch.validate)
    principal = getattr(request.state, "principal", None) or ANONYMOUS
    validated = await enforce_team(request.app.state.store, principal, validated)
    return await submit(request.app.state.store, validated, channel=channel, request_id=rid, minimal=minimal)


async def read_native_body(request: Request) -> bytes:
    """The request body, size-capped and un-gzipped with the same limits as POST /v1/events."""
    settings = request.app.state.settings
    body = await read_capped_body(request, settings.max_body_bytes)
    return decode_body(body, request.headers.get("content-type"), request.headers.get("content-encoding"),
                       settings.max_inflated_bytes)


def json_response(outcome: Outcome, **extra: Any) -> Response:
    """The outcome's body (plus route-specific fields) with its status; `Preference-Applied` when it is the minimal
    answer a client asked for (RFC 7240)."""
    return Response(orjson.dumps({**outcome.body, **extra} if extra else outcome.body), status_code=outcome.status,
                    media_type="application/json",
                    headers={"Preference-Applied": "return=minimal"} if outcome.minimal else None)
