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

    @property
    def status(self) -> int:
        """200 when at least one event was stored or was a duplicate; 422 when every event was rejected."""
        return 200 if self.body["accepted"] or self.body["duplicates"] or not self.body["rejected"] else 422


def enqueue(store: "Store", validated: BulkResult, *, channel: str, request_id: str | None) -> Future:
    """Hand validated rows and rejections to the writer; raises QueueFull or WriterStopped at once."""
    return store.writer.submit(validated.table, validated.rejections, channel=channel, request_id=request_id)


def outcome(validated: BulkResult, written: WriteResult, request_id: str | None) -> Outcome:
    """Per-event results in input order: accepted, duplicate (same source and id stored) or rejected."""
    results: list[dict[str, Any]] = [
        {"index": idx, "status": status, "code": 201 if status == "accepted" else 200, "source": src, "id": eid}
        for idx, status, src, eid in zip(validated.row_index.to_pylist(), written.statuses,
                                         validated.table.column("source").to_pylist(),
                                         validated.table.column("id").to_pylist())]
    for r in validated.rejections:
        results.append({"index": r.index, "status": "rejected", "code": 422, "source": r.source, "id": r.id,
                        "errors": r.errors})
    if validated.rejections:
        results.sort(key=lambda r: r["index"])
    accepted = sum(1 for s in written.statuses if s == "accepted")
    return Outcome({
        "request_id": request_id, "accepted": accepted, "duplicates": len(written.statuses) - accepted,
        "rejected": len(validated.rejections), "batch_id": written.batch_id, "results": results,
    })


def empty_outcome(request_id: str | None) -> Outcome:
    """A request whose records were all ignored: nothing went to the writer."""
    return Outcome({"request_id": request_id, "accepted": 0, "duplicates": 0, "rejected": 0, "batch_id": None,
                    "results": []})


async def committed(fut: Future, validated: BulkResult, request_id: str | None) -> Outcome:
    """Wait for the commit of an enqueued request; the caller answers only after this returns."""
    with tracer.start_as_current_span("ingest.await_commit"):
        written = await asyncio.wrap_future(fut)
    return outcome(validated, written, request_id)


async def submit(store: "Store", validated: BulkResult, *, channel: str, request_id: str | None) -> Outcome:
    """Enqueue and wait for the commit."""
    return await committed(enqueue(store, validated, channel=channel, request_id=request_id), validated, request_id)
