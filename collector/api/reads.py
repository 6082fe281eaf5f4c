"""Read queries that can be stopped: every DuckDB cursor a request uses is registered, so it can be interrupted
(DuckDB's `interrupt()`) when the request's time budget runs out, when its client goes away, or when the server
shuts down. Without this a stuck or huge query kept a worker thread (and SIGTERM) waiting for as long as DuckDB
took, after the client had long gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Callable, Iterator, TypeVar

import duckdb
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from collector.api.errors import ApiError

T = TypeVar("T")
_POLL_SECONDS = 0.2


class QueryCancelled(ApiError):
    """The query was interrupted: over its time budget (503, retry later or ask for less) or its client left."""

    status = 503


class ActiveQueries:
    """The cursors of the requests in flight (app.state.queries)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursors: set[duckdb.DuckDBPyConnection] = set()

    @contextlib.contextmanager
    def track(self, cur: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            self._cursors.add(cur)
        try:
            yield cur
        finally:
            with self._lock:
                self._cursors.discard(cur)

    def interrupt_all(self) -> int:
        """Interrupt every running read (server shutdown); returns how many cursors were interrupted."""
        with self._lock:
            cursors = list(self._cursors)
        for cur in cursors:
            with contextlib.suppress(Exception):
                cur.interrupt()
        return len(cursors)

    def __len__(self) -> int:
        return len(self._cursors)


def active_queries(request: Request) -> ActiveQueries:
    return request.app.state.queries


async def run_read(request: Request, fn: Callable[[duckdb.DuckDBPyConnection], T], *, timeout: float) -> T:
    """Run `fn(cursor)` in a worker thread; interrupt it when `timeout` seconds pass or the client disconnects.

    DuckDB's interrupt stops the running statement; it is repeated until `fn` returns, so a function that runs
    several statements (the SLI engine) stops at the next one too.
    """
    store = request.app.state.store
    registry = active_queries(request)
    cur = await run_in_threadpool(store.cursor)  # it may wait for the writer's derive: not on the event loop
    try:
        with registry.track(cur):
            task = asyncio.ensure_future(run_in_threadpool(fn, cur))
            deadline = time.monotonic() + timeout
            reason = None
            try:
                while True:
                    done, _ = await asyncio.wait({task}, timeout=_POLL_SECONDS)
                    if done:
                        return task.result()
                    if time.monotonic() > deadline:
                        reason = f"the query took longer than {timeout:g} s; ask for fewer windows, SLIs or levels"
                        break
                    if await request.is_disconnected():
                        reason = "the client disconnected"
                        break
            finally:
                while not task.done():  # also when this request itself is cancelled
                    cur.interrupt()
                    await asyncio.wait({task}, timeout=0.05)
                if not task.cancelled() and reason is not None:
                    task.exception()  # retrieved: the interrupt is the expected outcome
            raise QueryCancelled(reason)
    finally:
        cur.close()
