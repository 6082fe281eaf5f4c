"""The single writer: one thread owns the DuckDB connection and commits many requests in one transaction.

HTTP handlers (and the file ingester) hand validated rows to `Writer.submit`, which returns a Future resolved only
after the transaction holding those rows has committed (DuckDB syncs its WAL on commit), so a 2xx answer means the
events survive `kill -9`. The queue is bounded in events: when it is full, `submit` raises `QueueFull` at once
(the API answers 429 with Retry-After) instead of buffering without limit.

Group commit: a transaction costs tens of milliseconds whatever its size (the derived-table upserts, the counters,
the WAL sync), so the writer waits up to `commit_delay` for requests that are still being validated (`arriving`)
before it commits what is queued, as PostgreSQL's commit_delay does when other transactions are in flight. With
nothing arriving it commits at once: an idle collector adds no latency.

Derived tables after the acknowledgement (`defer_derive`, the collector's way). A group commit's fixed costs are
mostly the derived tables' statements (run attempts, kernel sessions, notebooks, schedules, reproducibility
baselines: tens of milliseconds whatever the batch's size), and a client waits for its commit. So the collector's
writer commits a group's events, dead letters, duplicate and rejection counters and `ingest_batches` row, answers,
and hands the committed batch to a second thread, the deriver, which folds it into the derived tables in a
transaction of its own, on its own connection (at a lower CPU priority with `deriver_nice`), while the writer
commits the next groups: once the oldest pending batch has waited `derive_delay` (the collector's
`derive_delay_seconds`), and at once when half the lag bound waits, before a job, on stop, and when a reader asks:
`wait_derived`, which `Store.cursor` calls, so whatever was acknowledged is in the derived tables of every read after
it. A pass costs ~65 ms of CPU whatever it folds plus ~3.4 µs per event, so under load the delay lets each pass
fold more: it trades how far the derived tables run behind between reads, never what a read sees, for CPU. The
deriver's transaction folds every pending batch in one pass (`fold_batches`), with the result of folding each in
its own transaction, in order, and writes the derived rows, the counters they and their events cause and
`ingest_batches.derived` together; a batch committed and not derived when the process died is derived from its
stored events on the next start. Readers that keep state by batch read up to the last derived batch
(storage/queries.py: DERIVED_THROUGH). The bulk file ingest defers too, with a lag bound of a few chunks
(`max_lag_events`). Without `defer_derive` (tests, benches) each transaction does both, in the writer's thread.

The two threads' transactions overlap, so they never update the same rows: the writer's insert events, dead
letters and `ingest_batches` rows, the deriver's update the derived tables and mark older `ingest_batches` rows,
and each persists its counters in a part of its own (`metric_counter_parts`: DuckDB refuses to update a row that
another transaction updated after this one began). When
the deriver falls `max_lag_events` behind (`max_batch_events`, at most `max_queue_events`), the writer waits for it
before committing more (the queue then fills and clients get 429): what is pending is held in memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import duckdb
import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry import trace
from prometheus_client import Histogram

from collector import conventions as C
from collector.metrics.counters import CounterStore
from collector.storage.derive import CounterDelta, StoredBeforeLookback, event_deltas, fold_batches, \
    typed_from_stored, update_derived
from collector.contract.validation import Rejection
from collector.ingest import rederive
from collector.ingest.keys import StoredKeys
from collector.storage.schema import INGEST_SCHEMA, STORED_COLUMNS

log = logging.getLogger(__name__)
tracer = trace.get_tracer("collector.ingest.writer")
_NO_HASHES = np.empty(0, np.uint64)

def _lower_priority(increment: int) -> None:
    """Lower this thread's CPU priority by `increment` nice steps (Linux: a thread's own nice value, set with its
    id). The deriver's work waits for no client, so on a host of its own validation and commits go first and the
    deriver runs whenever they wait. A nice value ranks the thread against every process of the host, so beside a
    busy neighbour the deriver starves and the writer's lag bound then holds ingest back: off by default. Where
    threads have no nice value of their own, nothing changes."""
    if increment <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError as exc:
        log.warning("could not lower the deriver's priority (%s)", type(exc).__name__)


class QueueFull(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("ingest queue is full")
        self.retry_after = retry_after


class WriterStopped(Exception):
    """The writer is shutting down: nothing more is accepted (the API answers 503 with Retry-After)."""


class WriteFailed(Exception):
    """The transaction holding a request's rows failed and was rolled back; the client should retry."""


@dataclass(slots=True)
class WriteResult:
    statuses: list[str]  # per submitted row: "accepted" or "duplicate"
    batch_id: int


@dataclass(slots=True)
class _Write:
    table: pa.Table
    rejections: list[Rejection]
    channel: str
    request_id: str | None
    future: Future
    size: int
    span_context: trace.SpanContext | None = None


@dataclass(slots=True)
class _Job:
    fn: Callable[[duckdb.DuckDBPyConnection], Any]
    future: Future
    size: int = 1


def _transactions_histogram() -> Histogram:
    """A writer's own (a process may hold several writers: tests, the bulk command), both stages exposed from the
    start so that a rate over them begins at zero."""
    h = Histogram(C.WRITER_TRANSACTION_SECONDS, "Duration of the writer's transactions: group commits (stage=commit) "
                  "and the deriver's passes (stage=derive).", [C.STAGE], buckets=C.WRITER_TRANSACTION_BUCKETS,
                  registry=None)
    for stage in ("commit", "derive"):
        h.labels(stage)
    return h


@dataclass
class WriterStats:
    batches: int = 0
    events: int = 0
    last_commit_seconds: float = 0.0
    commit_seconds: deque = field(default_factory=lambda: deque(maxlen=1024))
    group_sizes: deque = field(default_factory=lambda: deque(maxlen=1024))
    # transactions that took the slower way (conventions.REDONE_REASONS): a group with a key whose hash the dedup
    # index holds, read back from the stored rows (ingest/keys.py); a derived row stored before its lookback bound
    redone: Counter = field(default_factory=Counter)
    derives: int = 0  # transactions that folded committed batches into the derived tables (defer_derive)
    derive_failures: int = 0  # batches whose derived rows could not be written (their events are stored)
    underived_batches: int = 0  # of those, stored ones not derived again since (`Writer.retry_derive`)
    # seconds the writer held its next commit or job for the deriver (its lag bound reached, or a job that reads
    # the derived tables): the derived tables, not the insert, were what ingest waited on
    deriver_wait_seconds: float = 0.0
    # Every transaction's duration by stage: the writer's group commits (`commit`) and the deriver's passes
    # (`derive`). The last commit's gauge misses what happens between two scrapes (a checkpoint's ~1 s stall); the
    # histogram's count and sum also say how many commits and passes a stretch of ingest took, and their mean.
    transactions: Histogram = field(default_factory=_transactions_histogram)


class Writer:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        counters: CounterStore,
        *,
        max_queue_events: int = 200_000,
        max_batch_events: int = 50_000,
        on_commit: list[Callable[[int, list[CounterDelta]], None]] | None = None,
        commit_delay: float = 0.0,
        defer_derive: bool = False,
        derive_delay: float = 0.0,
        deriver_nice: int = 0,
        max_lag_events: int | None = None,
    ) -> None:
        self.con = con
        self.keys = StoredKeys.load(con)  # dedup on (source, id): the stored keys, read once (ingest/keys.py)
        self.commit_delay = commit_delay
        self.defer_derive = defer_derive
        self.derive_delay = derive_delay
        self.deriver_nice = deriver_nice
        self._max_lag_events = max_lag_events
        self.counters = counters
        self.max_queue_events = max_queue_events
        self.max_batch_events = max_batch_events
        self.on_commit = on_commit or []
        self.stats = WriterStats()
        self.last_ingest_by_source: dict[str, float] = {}
        self._queue: deque[_Write | _Job] = deque()
        self._queued_events = 0
        self._arriving = 0  # requests being validated that will submit (see `arriving`)
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # the writer waits on it for work
        self._settled = threading.Condition(lock)  # readers wait on it for the derived tables (`wait_derived`)
        # Committed batches whose derived rows are not: (batch id, its inserted rows), in commit order.
        self._pending: list[tuple[int, pa.Table]] = []
        self._pending_events = 0
        self._deriving_events = 0  # the events of the batches the deriver has taken and not committed yet
        self._pending_since = 0.0  # when the oldest pending batch was pended
        self._derive_wanted = False
        self._pended = 0  # batches ever pended, and of those derived: `wait_derived` compares the two
        self._derived = 0
        self._stopping = False
        self._writer_done = False  # the writer thread has committed everything and left: the deriver drains, then
        self._thread: threading.Thread | None = None
        self._deriver: threading.Thread | None = None
        self._dcon: duckdb.DuckDBPyConnection | None = None  # the deriver's connection (defer_derive)

    # ---- producer side --------------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self._queued_events

    def submit(self, table: pa.Table, rejections: list[Rejection], *, channel: str = "http",
               request_id: str | None = None) -> Future:
        """Queue validated rows (`table` in INGEST_SCHEMA: stored columns plus typed fields) and rejections."""
        size = table.num_rows + len(rejections)
        fut: Future = Future()
        with self._cond:
            if self._stopping:
                raise WriterStopped("writer is shutting down")
            if self._queued_events and self._queued_events + size > self.max_queue_events:
                raise QueueFull(self._retry_after())
            ctx = trace.get_current_span().get_span_context()
            self._queue.append(_Write(table, rejections, channel, request_id, fut, size,
                                      ctx if ctx.is_valid else None))
            self._queued_events += size
            self._cond.notify_all()
        return fut

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around the work that ends in `submit` (validation): the writer may wait for it to join the group
        commit (at most `commit_delay`). Submit inside the block, so the writer never sees the request gone
        before it is queued."""
        with self._cond:
            self._arriving += 1
        try:
            yield
        finally:
            with self._cond:
                self._arriving -= 1
                self._cond.notify_all()

    def wait_derived(self, timeout: float = 10.0) -> bool:
        """Wait until every batch committed so far is in the derived tables (at once without `defer_derive`).
        Readers call it so that a read after an acknowledgement sees what was acknowledged; the deriver derives
        at once when asked. False when the deriver is not running (nothing will derive until it starts, which
        derives first) or `timeout` passed: the caller reads what is derived."""
        if threading.current_thread() in (self._thread, self._deriver):  # a job asking: everything before it
            return True  # is derived (the writer waited for the deriver); the deriver itself never waits
        with self._cond:
            target = self._pended
            if self._derived >= target:
                return True
            self._derive_wanted = True
            self._cond.notify_all()
            end = time.monotonic() + timeout
            while self._derived < target:
                left = end - time.monotonic()
                if left <= 0 or self._deriver is None or not self._deriver.is_alive():
                    return False
                self._settled.wait(min(left, 0.5))
            return True

    @property
    def max_lag_events(self) -> int:
        """Committed events the deriver may be behind before the writer waits for it: by default at most a group
        commit's and at most a full queue's, so the events held in memory (queued, then committed and not derived)
        stay within twice the queue's bound; the bulk file ingest sets a few chunks' worth (ingest/files.py)."""
        if self._max_lag_events is not None:
            return max(1, self._max_lag_events)
        return max(1, min(self.max_batch_events, self.max_queue_events))

    @property
    def derive_lag_events(self) -> int:
        """Events committed and not yet in the derived tables (the batches being derived included)."""
        return self._pending_events + self._deriving_events

    def execute(self, fn: Callable[[duckdb.DuckDBPyConnection], Any]) -> Future:
        """Run `fn(con)` in the writer thread inside its own transaction (for adapters with their own tables)."""
        fut: Future = Future()
        with self._cond:
            if self._stopping:
                raise WriterStopped("writer is shutting down")
            self._queue.append(_Job(fn, fut))
            self._queued_events += 1
            self._cond.notify_all()
        return fut

    def retry_derive(self, batch_ids: list[int] | None = None) -> Future:
        """Fold the batches the deriver gave up on (all waiting, or `batch_ids`) into the derived tables again, once
        the cause is fixed (ingest/rederive.py). A writer job: it runs once everything committed before it is
        derived, and nothing else writes the derived tables meanwhile. Resolves to `rederive.Retried` once committed,
        with its counters applied; raises `rederive.NotOutstanding` or `rederive.RetryFailed` (nothing changed)."""

        def committed(result: rederive.Retried) -> rederive.Retried:
            self.counters.apply(result.folded)
            self.stats.underived_batches = result.outstanding
            if result.batch_id is not None:
                for hook in self.on_commit:
                    try:
                        hook(result.batch_id, [])
                    except Exception:  # noqa: BLE001
                        log.exception("on_commit hook failed")
                log.warning("derived batch %s again as batch %d (%d events)",
                            ", ".join(map(str, result.batches)), result.batch_id, result.events)
            return result

        return self._job(lambda con: rederive.retry(con, self.counters, batch_ids), committed)

    def dismiss_derive(self, batch_ids: list[int], reason: str) -> Future:
        """Record that the waiting batches `batch_ids` will not be derived again (ingest/rederive.py: `dismiss`), as a
        writer job. Resolves to the batches dismissed once committed; raises `rederive.NotOutstanding` or ValueError
        (nothing changed)."""

        def committed(result: tuple[list[int], int]) -> list[int]:
            dismissed, self.stats.underived_batches = result
            log.warning("dismissed batch %s: its derived rows stay missing", ", ".join(map(str, dismissed)))
            return dismissed

        return self._job(lambda con: rederive.dismiss(con, batch_ids, reason), committed)

    def _job(self, fn: Callable[[duckdb.DuckDBPyConnection], Any], committed: Callable[[Any], Any]) -> Future:
        """`execute(fn)`, its result passed through `committed` in the writer thread once the job's transaction has
        committed (the in-memory state that must follow the database: counters, gauges)."""
        done: Future = Future()

        def settle(job: Future) -> None:
            exc = job.exception()
            if exc is None:
                try:
                    done.set_result(committed(job.result()))
                    return
                except Exception as after:  # noqa: BLE001 - the caller must not wait forever
                    exc = after
            done.set_exception(exc)

        self.execute(fn).add_done_callback(settle)
        return done

    def _retry_after(self) -> float:
        recent = list(self.stats.commit_seconds)[-32:]
        per_batch = (sum(recent) / len(recent)) if recent else 0.5
        batches_ahead = max(1.0, self._queued_events / max(1, self.max_batch_events))
        return max(1.0, round(per_batch * batches_ahead, 1))

    # ---- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.defer_derive:
            self._dcon = self.con.cursor()
            self._dcon.execute("SET TimeZone = 'UTC'")
        self._recover()  # before any request or read: what a previous process acknowledged is derived first
        self._thread = threading.Thread(target=self._run, name="duckdb-writer", daemon=True)
        self._thread.start()
        if self.defer_derive:
            self._deriver = threading.Thread(target=self._derive_loop, name="duckdb-deriver", daemon=True)
            self._deriver.start()

    def stop(self) -> None:
        """Commit what is queued and derive what is committed, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread:
            self._thread.join()
        if self._deriver:
            self._deriver.join()
        if self._dcon is not None:
            self._dcon.close()
            self._dcon = None

    # ---- consumer side --------------------------------------------------------------------------------------

    def _take(self) -> list[_Write | _Job] | None:
        """The next group of queued items; None on stop."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            deadline = time.monotonic() + self.commit_delay
            while self._arriving and self._queued_events < self.max_batch_events and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            taken: list[_Write | _Job] = []
            n = 0
            while self._queue and (not taken or n + self._queue[0].size <= self.max_batch_events):
                item = self._queue.popleft()
                taken.append(item)
                n += item.size
            return taken

    def _release(self, items: list) -> None:
        with self._cond:
            self._queued_events -= sum(i.size for i in items)

    def _derive_due(self, now: float) -> bool:
        """Whether the deriver folds what is pending now (under the lock)."""
        return bool(self._pending) and (self._writer_done or self._derive_wanted
                                        or 2 * self._pending_events >= self.max_lag_events
                                        or now - self._pending_since >= self.derive_delay)

    def _run(self) -> None:
        try:
            while True:
                items = self._take()
                if items is None:
                    return
                writes: list[_Write] = []
                for item in items + [None]:
                    if isinstance(item, _Write):
                        writes.append(item)
                        continue
                    if writes:
                        self._wait_for_deriver(self.max_lag_events)
                        self._commit_group(writes)
                        writes = []
                    if isinstance(item, _Job):
                        self._wait_for_deriver(1)  # a job sees the derived tables of everything committed before it
                        self._run_job(item)
                self._release(items)
        finally:
            with self._cond:
                self._writer_done = True
                self._cond.notify_all()

    def _wait_for_deriver(self, room: int) -> None:
        """Until fewer than `room` committed events wait for the deriver (with `room` 1: until all are derived)."""
        if not self.defer_derive:
            return
        with self._cond:
            if self.derive_lag_events < room:
                return
            self._derive_wanted = room == 1 or self._derive_wanted
            self._cond.notify_all()
            began = time.perf_counter()
            while self.derive_lag_events >= room and self._deriver is not None and self._deriver.is_alive():
                self._settled.wait(0.5)
            self.stats.deriver_wait_seconds += time.perf_counter() - began

    def _derive_loop(self) -> None:
        """The deriver: folds committed batches as they come (module docstring); drains and stops after the
        writer."""
        _lower_priority(self.deriver_nice)
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._derive_due(now):
                        break
                    if self._writer_done:
                        return
                    self._cond.wait(max(0.001, self._pending_since + self.derive_delay - now) if self._pending
                                    else None)
            self._derive()

    def _run_job(self, job: _Job) -> None:
        try:
            self.con.execute("BEGIN TRANSACTION")
            result = job.fn(self.con)
            self.con.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            self._rollback()
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def _rollback(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        try:
            (con or self.con).execute("ROLLBACK")
        except duckdb.Error:
            pass

    def _commit_group(self, writes: list[_Write]) -> None:
        try:
            if self.defer_derive:  # nothing derived here, so no lookback to miss
                results, batch_id, deltas = self._transaction_once(writes, exhaustive=False, derive=False)
            else:
                results, batch_id, deltas = self._transaction(writes)
        except Exception as exc:  # noqa: BLE001
            self._rollback()
            if len(writes) > 1:
                # One poison request must not fail its neighbours: retry each alone.
                for w in writes:
                    self._commit_group([w])
                return
            log.exception("writer transaction failed", extra={"request_id": writes[0].request_id})
            failed = WriteFailed("the write failed and was rolled back; retry")
            failed.__cause__ = exc
            writes[0].future.set_exception(failed)
            return
        for hook in self.on_commit:
            try:
                hook(batch_id, deltas)
            except Exception:  # noqa: BLE001
                log.exception("on_commit hook failed")
        for w, statuses in zip(writes, results):
            w.future.set_result(WriteResult(statuses, batch_id))

    def _insert_events(self, staged: pa.Table, keys: pl.DataFrame, now: datetime
                       ) -> tuple[int, pl.DataFrame | None, np.ndarray]:
        """Begin the transaction and insert the group's rows (`staged`, distinct keys `keys`) into `events`, but for
        keys stored already; returns (batch id, the keys inserted, their hashes for `StoredKeys.add` once committed).
        The keys are None when every row was inserted (the common case, which then costs no copy of them: ~0.35 ms
        of a 4,000-event group commit, on the path every client waits on).

        The stored keys are the index's to find (ingest/keys.py: a group with a key whose hash is held reads that
        key back from the batches that hold it; `redone["stored_key"]` counts such groups): `events` has no primary
        key since migration 0217, whose index cost more than half of a commit's CPU."""
        con = self.con
        con.execute("BEGIN TRANSACTION")
        batch_id = con.execute("SELECT nextval('batch_seq')").fetchall()[0][0]
        if not staged.num_rows:
            return batch_id, pl.DataFrame(schema={"source": pl.String, "id": pl.String}), _NO_HASHES
        hashes = self.keys.hashes(keys)
        stored = self.keys.stored(con, keys, hashes)
        inserted = None
        if stored is not None:
            self.stats.redone["stored_key"] += 1
            keep = ~stored
            staged, hashes, inserted = staged.filter(pa.array(keep)), hashes[keep], keys.filter(pl.Series(keep))
            if not staged.num_rows:
                return batch_id, inserted, hashes
        con.register("staged", staged)
        con.execute(f"INSERT INTO events ({STORED_COLUMNS}, ingested_at, batch_id) "
                    f"SELECT {STORED_COLUMNS}, ?::TIMESTAMPTZ, ? FROM staged", [now, batch_id])
        con.unregister("staged")  # not after a failed statement: the aborted transaction would refuse it
        return batch_id, inserted, hashes

    def _transaction(self, writes: list[_Write]) -> tuple[list[list[str]], int, list[CounterDelta]]:
        """The group's events and their derived rows in one transaction."""
        return self._bounded_then_exhaustive(lambda exhaustive: self._transaction_once(writes, exhaustive=exhaustive))

    def _bounded_then_exhaustive(self, fn: Callable[[bool], Any], con: duckdb.DuckDBPyConnection | None = None
                                 ) -> Any:
        """`fn(exhaustive=False)`; should a derived row be stored before its lookback bound, the transaction (on
        `con`, the writer's by default) is rolled back and done again exhaustively (`fn(True)`)."""
        try:
            return fn(False)
        except StoredBeforeLookback:  # a row stored long ago: the whole transaction again (below), exhaustively
            pass
        self.stats.redone["before_lookback"] += 1
        self._rollback(con)
        return fn(True)

    def _transaction_once(self, writes: list[_Write], *, exhaustive: bool, derive: bool = True
                          ) -> tuple[list[list[str]], int, list[CounterDelta]]:
        """Commit the group's events (and, with `derive`, their derived rows; without, the batch is pended for
        `_derive`)."""
        t0 = time.perf_counter()
        con = self.con
        now = datetime.now(timezone.utc)
        links = [trace.Link(w.span_context) for w in writes if w.span_context is not None]
        with tracer.start_as_current_span("writer.commit", links=links) as span:
            tables = [w.table for w in writes if w.table.num_rows]
            table = pa.concat_tables(tables) if tables else INGEST_SCHEMA.empty_table()
            # First occurrence of a (source, id) within the group wins; later ones are duplicates.
            # Set-based (polars), so a 100k-row file chunk costs no Python loop over its keys. Most groups hold
            # no key twice: `is_duplicated` says so (0.35 ms for 4,000 keys, against 0.85 for the mask of first
            # occurrences), and the mask is made only when a key is repeated (None: every row is a first).
            keys = pl.from_arrow(table.select(["source", "id"]))
            assert isinstance(keys, pl.DataFrame)
            first = keys.select(pl.struct("source", "id").is_first_distinct()).to_series() \
                if len(keys) and keys.is_duplicated().any() else None
            staged = table if first is None else table.filter(first.to_arrow())
            batch_id, inserted_keys, hashes = self._insert_events(staged, keys if first is None else keys.filter(first),
                                                                  now)
            n_inserted = staged.num_rows if inserted_keys is None else len(inserted_keys)
            # A row is accepted when it is its key's first occurrence in the group and its insert happened
            # (None: every row).
            accepted: pl.Series | None = first
            if n_inserted < staged.num_rows:
                assert inserted_keys is not None
                hit = keys.with_row_index("_i").join(inserted_keys, on=["source", "id"], how="semi")["_i"]
                done = pl.int_range(len(keys), eager=True, dtype=hit.dtype).is_in(hit)
                accepted = done if first is None else first & done
            deltas: list[CounterDelta] = []
            new = None
            if n_inserted:
                if n_inserted == staged.num_rows:  # every staged row went in
                    new = staged
                else:  # the insert skipped stored keys: `accepted` marks the rows that went in
                    assert accepted is not None
                    new = table.filter(accepted.to_arrow())
                deltas = update_derived(con, new, batch_id, exhaustive=exhaustive) if derive else []
            duplicates = len(keys) - n_inserted
            if duplicates:
                deltas.append(CounterDelta("observatory_events_duplicate_total", (), float(duplicates)))
            rejected = self._dead_letter(writes, now)
            for reason, n in rejected.items():
                deltas.append(CounterDelta("observatory_events_rejected_total", (("reason", reason),), float(n)))
            folded = self.counters.fold(deltas)
            self.counters.persist(con, folded)
            pend = new is not None and not derive
            con.execute(
                "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?)",
                [batch_id, now, n_inserted, duplicates, sum(rejected.values()), not pend],
            )
            con.execute("COMMIT")
            self.keys.add(hashes, batch_id)  # committed: its keys are stored (ingest/keys.py)
            span.set_attribute("batch.id", batch_id)
            span.set_attribute("batch.requests", len(writes))
            span.set_attribute("batch.events", n_inserted)
        if pend:  # before the requests are answered: a read after the answer waits for its derive
            self._pend(batch_id, new)
        # Committed: publish to the in-memory snapshot and answer the requests.
        self.counters.apply(folded)
        wall = time.time()
        if n_inserted:
            # every key's first occurrence was inserted, or those of `inserted_keys`
            sources = pc.unique(table.column("source")).to_pylist() if inserted_keys is None \
                else inserted_keys["source"].unique().to_list()
            for s in sources:
                self.last_ingest_by_source[s] = wall
        results: list[list[str]] = []
        if accepted is None:  # all accepted, the common case: no per-row strings made by polars
            results = [["accepted"] * w.table.num_rows for w in writes]
        else:
            status = pl.select(pl.when(accepted).then(pl.lit("accepted")).otherwise(pl.lit("duplicate"))).to_series()
            pos = 0
            for w in writes:
                n = w.table.num_rows
                results.append(status.slice(pos, n).to_list())
                pos += n
        elapsed = time.perf_counter() - t0
        self.stats.batches += 1
        self.stats.events += n_inserted
        self.stats.last_commit_seconds = elapsed
        self.stats.commit_seconds.append(elapsed)
        self.stats.group_sizes.append(len(writes))
        self.stats.transactions.labels("commit").observe(elapsed)
        return results, batch_id, deltas

    # ---- derived tables after the acknowledgement (defer_derive) ---------------------------------------------

    def _pend(self, batch_id: int, new: pa.Table) -> None:
        with self._cond:
            if not self._pending:
                self._pending_since = time.monotonic()
            # The fold reads the typed columns only: the stored text is not held while the batch waits.
            self._pending.append((batch_id, new.drop_columns(["data"]) if "data" in new.column_names else new))
            self._pending_events += new.num_rows
            self._pended += 1
            self._cond.notify_all()

    def _recover(self) -> None:
        """Pend the batches a previous process committed and did not derive (it died in between), from their
        stored events (the typed fields read back from `data`), then derive them before anything else. Count the
        batches given up on and not derived again since (`WriterStats.underived_batches`)."""
        self.stats.underived_batches = rederive.outstanding(self.con)
        ids = [b for (b,) in self.con.execute(
            "SELECT batch_id FROM ingest_batches WHERE NOT derived ORDER BY batch_id").fetchall()]
        for b in ids:
            try:  # a stored row must not keep the collector from starting
                rows = self.con.sql(typed_from_stored("(SELECT * FROM events WHERE batch_id = $b)"), params={"b": b})
                self._pend(b, rows.to_arrow_table().cast(INGEST_SCHEMA))
            except Exception as exc:  # noqa: BLE001
                self._give_up(b, exc)
        if ids:
            log.warning("deriving %d batches committed before the last stop and not derived", len(ids))
            self._derive()

    def _derive(self) -> None:
        """Fold every pending batch into the derived tables in one transaction; wake the readers waiting."""
        with self._cond:
            pending, self._pending = self._pending, []
            self._deriving_events, self._pending_events = self._pending_events, 0
            self._derive_wanted = False
        if not pending:
            return
        try:
            self._derive_batches(pending)
        finally:
            with self._cond:
                self._deriving_events = 0
                self._derived += len(pending)
                if self._derived >= self._pended:  # a reader that asked during this derive is answered by it
                    self._derive_wanted = False
                self._settled.notify_all()

    @property
    def _derive_con(self) -> duckdb.DuckDBPyConnection:
        """The deriver's connection (the writer's own without `defer_derive`)."""
        return self._dcon or self.con

    def _derive_batches(self, pending: list[tuple[int, pa.Table]]) -> None:
        try:
            deltas = self._bounded_then_exhaustive(lambda exhaustive: self._derive_once(pending, exhaustive),
                                                   self._derive_con)
        except Exception as exc:  # noqa: BLE001
            self._rollback(self._derive_con)
            if len(pending) > 1:  # one batch that cannot be derived must not hold back the others
                for p in pending:
                    self._derive_batches([p])
                return
            self._give_up(pending[0][0], exc, pending[0][1])
            return
        for hook in self.on_commit:
            try:
                hook(pending[-1][0], deltas)
            except Exception:  # noqa: BLE001
                log.exception("on_commit hook failed")

    def _give_up(self, batch_id: int, exc: Exception, rows: pa.Table | None = None) -> None:
        """A batch whose events are stored and acknowledged and whose derived rows cannot be written: marked
        derived all the same, so that readers and the SLI fold move past it, with the counters of its events as
        ingested (`rows`, when they could be read: those need nothing stored); recorded in `derive_failures` until
        `retry_derive` folds it in (ingest/rederive.py); counted and logged (the class only: a database message may
        quote an event's values)."""
        self.stats.derive_failures += 1
        log.error("deriving batch %d failed (%s): its events are stored, its derived rows are not",
                  batch_id, type(exc).__name__)
        con = self._derive_con
        folded: dict = {}
        try:
            con.execute("BEGIN TRANSACTION")
            if rows is not None:
                try:
                    folded = self.counters.fold(event_deltas(rows))
                except Exception:  # noqa: BLE001 - the rows themselves are at fault: the batch is marked anyway
                    folded = {}
                self.counters.persist(con, folded, "derived")
            con.execute("UPDATE ingest_batches SET derived = true WHERE batch_id = ?", [batch_id])
            rederive.record(con, batch_id, exc)
            underived = rederive.outstanding(con)
            con.execute("COMMIT")
        except duckdb.Error as mark_exc:  # the database itself fails: the next start derives it again
            self._rollback(con)
            log.error("marking batch %d derived failed (%s)", batch_id, type(mark_exc).__name__)
            return
        self.counters.apply(folded)
        self.stats.underived_batches = underived

    def _derive_once(self, pending: list[tuple[int, pa.Table]], exhaustive: bool) -> list[CounterDelta]:
        """The derived rows of `pending`, the counters they and their events cause and the batches marked derived,
        committed together. The batches are folded in one pass (`fold_batches`: one statement per table for all
        of them), whose result is what deriving each batch in its own transaction, in commit order, gives. The fold
        reads only the batches and the derived tables, never `events`, so the batches committed after them do not
        change its result."""
        con = self._derive_con
        first, last = pending[0][0], pending[-1][0]
        with tracer.start_as_current_span("writer.derive") as span:
            t0 = time.perf_counter()
            con.execute("BEGIN TRANSACTION")
            deltas = fold_batches(con, pending, exhaustive=exhaustive)
            folded = self.counters.fold(deltas)
            self.counters.persist(con, folded, "derived")
            # the batches between first and last that are not pending had nothing to derive
            con.execute("UPDATE ingest_batches SET derived = true WHERE batch_id BETWEEN ? AND ?", [first, last])
            con.execute("COMMIT")
            span.set_attribute("derive.batches", len(pending))
            span.set_attribute("derive.events", sum(t.num_rows for _, t in pending))
        self.counters.apply(folded)
        self.stats.derives += 1
        elapsed = time.perf_counter() - t0
        self.stats.commit_seconds.append(elapsed)
        self.stats.transactions.labels("derive").observe(elapsed)
        return deltas

    def _dead_letter(self, writes: list[_Write], now: datetime) -> dict[str, int]:
        rows = [
            {
                "received_at": now, "channel": w.channel, "request_id": w.request_id, "item_index": r.index,
                "source": r.source, "event_id": r.id, "type": r.type, "reason": r.reason,
                "errors": orjson.dumps(r.errors).decode(), "payload": r.payload,
            }
            for w in writes for r in w.rejections
        ]
        if not rows:
            return {}
        tbl = pa.Table.from_pylist(rows, schema=pa.schema([
            ("received_at", pa.timestamp("us", tz="UTC")), ("channel", pa.string()), ("request_id", pa.string()),
            ("item_index", pa.int32()), ("source", pa.string()), ("event_id", pa.string()), ("type", pa.string()),
            ("reason", pa.string()), ("errors", pa.string()), ("payload", pa.string()),
        ]))
        self.con.register("dl_rows", tbl)
        self.con.execute("INSERT INTO dead_letters BY NAME SELECT * FROM dl_rows")
        self.con.unregister("dl_rows")
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["reason"]] = counts.get(r["reason"], 0) + 1
        return counts
