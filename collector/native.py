"""What the native adapters (Jupyter Events, OpenLineage, OTLP logs) share: mapping errors, deterministic ids,
batches that remember which input record each event came from, and submission through the same validation,
redaction, dedup, dead-lettering and commit path as `POST /v1/events`."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from collector.redaction import redact_text
from collector.validation import Rejection, Validated, decode_body, validate_items


class MappingError(ValueError):
    """A record that claims to be ours but cannot be mapped; becomes a Rejection for that record only."""

    def __init__(self, path: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.error = {"path": path, "type": kind, "message": message}


@dataclass(slots=True)
class Ignored:
    reason: str


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def record_id(prefix: str, record: Any) -> str:
    """A deterministic event id from a record's content: the same record sent twice gets the same id."""
    digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)).hexdigest()
    return f"{prefix}-{digest[:40]}"


def native_rejection(index: int, raw: Any, error: dict[str, str] | list[dict[str, str]], *,
                     source: str | None = None, id: str | None = None, type: str | None = None) -> Rejection:
    """A mapping failure as a Rejection: the raw record (redacted, capped) is what the dead letter keeps."""
    errors = error if isinstance(error, list) else [error]
    if isinstance(raw, (bytes, bytearray)):
        payload = bytes(raw).decode("utf-8", "replace")
    elif isinstance(raw, str):
        payload = raw
    else:
        payload = orjson.dumps(raw, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    return Rejection(index, errors, redact_text(payload[:65_536])[0],
                     redact_text(source[:256])[0] if source else None,
                     redact_text(id[:256])[0] if id else None, type)


@dataclass
class NativeBatch:
    """Events mapped from native records, each remembering which input record it came from."""

    events: list[dict[str, Any] | Rejection] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)
    records: int = 0

    def add(self, record_index: int, item: dict[str, Any] | Rejection) -> None:
        if isinstance(item, Rejection):
            item.index = len(self.events)
        self.events.append(item)
        self.origin.append(record_index)

    def reject(self, record_index: int, raw: Any, error: dict[str, str] | list[dict[str, str]], **kw: Any) -> None:
        self.add(record_index, native_rejection(len(self.events), raw, error, **kw))

    def validate(self) -> Validated:
        """`validate_items` on the mapped events, with indexes given back in input-record terms."""
        validated = validate_items(self.events)
        validated.row_index = [self.origin[i] for i in validated.row_index]
        for r in validated.rejections:
            r.index = self.origin[r.index]
        validated.total = self.records
        return validated


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
                    "observatory_native_records_ignored", "Native-format records received and not mapped to an "
                    "event (other schemas or record kinds), by channel and reason.", ["channel", "reason"],
                    registry=registry)
                state.native_ignored_counter = counter
    for reason, n in reasons.items():
        counter.labels(channel, reason[:64]).inc(n)


async def submit_native(request: Request, batch: NativeBatch, channel: str) -> tuple[int, dict[str, Any], Response]:
    """Validate and commit a mapped batch through the shared ingest path.

    Returns (status, parsed body, the original Response). When every record was ignored nothing goes to the
    writer and the answer is 200 with zero counts.
    """
    from collector.api.ingest import submit_validated

    count_ignored(request, channel, batch.ignored)
    if not batch.events:
        body = {"request_id": None, "accepted": 0, "duplicates": 0, "rejected": 0, "batch_id": None, "results": []}
        return 200, body, JSONResponse(body)
    validated = await run_in_threadpool(batch.validate)
    response = await submit_validated(request, validated, channel=channel)
    try:
        body = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        body = {}
    return response.status_code, body, response


async def read_native_body(request: Request) -> bytes:
    """The request body, size-capped and un-gzipped with the same limits as POST /v1/events."""
    from collector.api.ingest import read_capped_body

    settings = request.app.state.settings
    body = await read_capped_body(request, settings.max_body_bytes)
    return decode_body(body, request.headers.get("content-type"), request.headers.get("content-encoding"),
                       settings.max_inflated_bytes)
