"""The one way into storage for every channel: validated rows go to the writer, the answer comes after COMMIT.

`POST /v1/events`, the native formats (Jupyter, OpenLineage, OTLP) and `observatory ingest --db` all call
`enqueue`/`submit`, so per-event results, dead-lettering and backpressure are the same everywhere. Errors are
domain exceptions (`QueueFull`, `WriterStopped`, `WriteFailed`); the web layer maps them to 429/503 once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from opentelemetry import trace

from collector.contract.vectorized import BulkResult
from collector.ingest.writer import WriteResult

if TYPE_CHECKING:
    from collector.ingest.store import Store

tracer = trace.get_tracer("collector.ingest")


@dataclass(slots=True)
class Outcome:
    """What a request learns about its events once they are committed."""

    body: dict[str, Any]
    minimal: bool = False  # `results` lists only the events not accepted (`outcome`)

    @property
    def status(self) -> int:
        """200 when at least one event was stored or was a duplicate; 422 when every event was rejected."""
        return 200 if self.body["accepted"] or self.body["duplicates"] or not self.body["rejected"] else 422


def enqueue(store: "Store", validated: BulkResult, *, channel: str, request_id: str | None) -> Future:
    """Hand validated rows and rejections to the writer; raises QueueFull or WriterStopped at once."""
    return store.writer.submit(validated.table, validated.rejections, channel=channel, request_id=request_id)


def outcome(validated: BulkResult, written: WriteResult, request_id: str | None, *, minimal: bool = False
            ) -> Outcome:
    """Per-event results in input order: accepted, duplicate (same source and id stored) or rejected.

    `minimal` (a client's `Prefer: return=minimal`, RFC 7240): only the events not accepted are listed, with the
    same counts. A client that only acts on rejections then neither waits for nor parses a result per event: at
    1,000-event requests the full list is ~90 KB of JSON, built on the event loop and parsed by the client while
    the next request waits (docs/performance.md, twenty-third round)."""
    statuses = written.statuses
    accepted = statuses.count("accepted")
    table = validated.table
    if minimal and accepted == len(statuses):
        rows: list[tuple[int, str, str, str]] = []
    elif minimal:
        at = [i for i, s in enumerate(statuses) if s != "accepted"]
        keep = pa.array(at, pa.int64())
        rows = list(zip(validated.row_index.take(keep).to_pylist(), [statuses[i] for i in at],
                        table.column("source").take(keep).to_pylist(), table.column("id").take(keep).to_pylist()))
    else:
        rows = list(zip(validated.row_index.to_pylist(), statuses, table.column("source").to_pylist(),
                        table.column("id").to_pylist()))
    results: list[dict[str, Any]] = [
        {"index": idx, "status": status, "code": 201 if status == "accepted" else 200, "source": src, "id": eid}
        for idx, status, src, eid in rows]
    for r in validated.rejections:
        results.append({"index": r.index, "status": "rejected", "code": 422, "source": r.source, "id": r.id,
                        "errors": r.errors})
    if validated.rejections:
        results.sort(key=lambda r: r["index"])
    return Outcome({
        "request_id": request_id, "accepted": accepted, "duplicates": len(statuses) - accepted,
        "rejected": len(validated.rejections), "batch_id": written.batch_id, "results": results,
    }, minimal)


def empty_outcome(request_id: str | None, *, minimal: bool = False) -> Outcome:
    """A request whose records were all ignored: nothing went to the writer."""
    return Outcome({"request_id": request_id, "accepted": 0, "duplicates": 0, "rejected": 0, "batch_id": None,
                    "results": []}, minimal)


async def committed(fut: Future, validated: BulkResult, request_id: str | None, *, minimal: bool = False
                    ) -> Outcome:
    """Wait for the commit of an enqueued request; the caller answers only after this returns."""
    with tracer.start_as_current_span("ingest.await_commit"):
        written = await asyncio.wrap_future(fut)
    return outcome(validated, written, request_id, minimal=minimal)


async def submit(store: "Store", validated: BulkResult, *, channel: str, request_id: str | None,
                 minimal: bool = False) -> Outcome:
    """Enqueue and wait for the commit."""
    return await committed(enqueue(store, validated, channel=channel, request_id=request_id), validated, request_id,
                           minimal=minimal)
