"""Work run beside the caller's: on a DuckDB cursor of its own, in a worker thread, while the caller goes on.

DuckDB runs a statement without holding the GIL, so two independent chains of statements (the fold's run
attempts beside its events, the snapshot SLIs beside the others) take the time of the longer one on two cores
instead of the sum. A statement there costs ~0.3-4 ms however few rows it reads (planning, hash tables, pipeline
set-up: measured at 10M events), which is most of what a refresh does; overlapping them is the one saving left
that does not drop a statement.

The worker's cursor reads what is committed, never the caller's open transaction: what it reads must not be
written by the caller before the worker is done (the callers say why theirs is not). It gets the caller's time
zone (a cursor does not inherit it). When the caller's work fails or is interrupted, the worker's statement is
interrupted; while the caller only waits for the worker, an interrupt of the caller's cursor does not reach it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import duckdb

from collector.storage.sqltext import lit

T = TypeVar("T")

# Workers never wait for anything a caller holds (the fold lock, a transaction), so a queued one always runs.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sli-beside")


@contextmanager
def beside(cur: Any, work: Callable[[Any, bool], T], *, alone: bool = True) -> Iterator[Callable[[], T]]:
    """Run `work(cursor, own)` beside the body of the `with`; yields a function that waits for its result.

    `own` is True on the worker's cursor. When `alone` is False, or `cur` is not a DuckDB connection (a lake
    engine's cursor), `work(cur, False)` runs in line, before the body. An error of the body waits for the worker
    (interrupted, so nothing is left running on the connection) and is the one raised; otherwise the worker's
    error is raised by the function, or at the end of the block if the result was not asked for."""
    if not alone or not isinstance(cur, duckdb.DuckDBPyConnection):
        result = work(cur, False)
        yield lambda: result
        return
    zone = cur.execute("SELECT current_setting('TimeZone')").fetchone()[0]
    own = cur.cursor()

    def run() -> T:
        try:
            own.execute(f"SET TimeZone = {lit(zone)}")
            return work(own, True)
        finally:
            own.close()

    done = _POOL.submit(run)
    try:
        yield done.result
    except BaseException:
        # The body failed (or was interrupted: GET /v1/sli's timeout interrupts the caller's cursor): the worker's
        # statement is interrupted too, and waited for; the body's error is the one reported.
        while not done.done():  # again until it ends: an interrupt before its statement starts is lost
            try:
                own.interrupt()
            except duckdb.Error:  # already closed: the worker is ending
                break
            wait([done], timeout=0.05)
        done.exception()
        raise
    done.result()
