"""The storage service of one collector process: the DuckDB file, its single writer, the counter snapshot and
the SQL-backed gauge refresher. The API, the CLI's direct-to-file ingest and the tests all go through this.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Callable, Iterator

import duckdb
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector import conventions as C
from collector.settings import Settings
from collector.metrics import duckdb_memory
from collector.metrics.counters import CounterStore
from collector.metrics.exposition import Exposition
from collector.metrics.refresher import GaugeRefresher
from collector.storage import db
from collector.storage.derive import CounterDelta
from collector.ingest.writer import Writer
from slo.sli.fold import database_path, remember_path

log = logging.getLogger(__name__)


class Store:
    def __init__(self, settings: Settings, *, streams: int = 2, max_lag_events: int | None = None) -> None:
        """`streams`: how many statement streams run at once (storage.db.collector_threads): the collector's writer
        and refresher by default. The writer acknowledges a request once its events are committed and the deriver
        folds them into the derived tables after (ingest/writer.py, `defer_derive`); every cursor waits for that
        fold, so no read misses what was acknowledged before it. `max_lag_events`: how far the deriver may fall
        behind (Writer.max_lag_events)."""
        self.settings = settings
        self.started_at = time.time()
        self.con = db.connect_configured(settings, threads=db.collector_threads(settings.duckdb_threads, streams))
        self.path = database_path(self.con)  # (None: an in-memory database)
        self.counters = CounterStore({"team": settings.label_cap_team, "source": settings.label_cap_source,
                                      "target": 200})
        self.counters.load(self.con)
        self.writer = Writer(
            self.con, self.counters,
            max_queue_events=settings.max_queue_events, max_batch_events=settings.max_batch_events,
            on_commit=[self._after_commit], commit_delay=settings.commit_delay_seconds, defer_derive=True,
            derive_delay=settings.derive_delay_seconds, deriver_nice=settings.deriver_nice,
            max_lag_events=max_lag_events,
        )
        # Where the last accepted event of each source came from survives a restart.
        for source, ts in self.con.execute(
            "SELECT source, epoch(max(ingested_at)) FROM events GROUP BY source"
        ).fetchall():
            self.writer.last_ingest_by_source[source] = ts
        self.refresher = GaugeRefresher(self.cursor, interval=settings.gauge_refresh_seconds,
                                        min_gap=settings.gauge_min_gap_seconds,
                                        max_age=settings.gauge_max_age_seconds)
        self.refresher.register(duckdb_memory.SOURCE)
        self.exposition = Exposition(self.counters, self.refresher, self._live_metrics)
        self.commit_hooks: list[Callable[[int, list[CounterDelta]], None]] = []

    def start(self) -> None:
        self.writer.start()
        self.refresher.start()

    def close(self) -> None:
        """Stop the refresher (interrupting its pass) and the writer (committing what it acknowledged), then
        checkpoint. What was acknowledged is durable in the WAL either way: a checkpoint or a close that DuckDB
        refuses (a statement still running on the connection after the refresher's bound) is logged, not raised, and
        the WAL replays at the next start."""
        self.refresher.stop()
        self.writer.stop()
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.warning("no checkpoint at shutdown (%s): the WAL replays at the next start", type(exc).__name__)
        try:
            self.con.close()
        except duckdb.Error as exc:
            log.warning("the database connection did not close at shutdown (%s)", type(exc).__name__)

    def cursor(self, settled: bool = True) -> duckdb.DuckDBPyConnection:
        """A cursor on the database. `settled`: first wait until what was acknowledged is in the derived tables
        (Writer.wait_derived; blocks for up to one derive, so call it off the event loop); false only for reads
        of `events` alone that must not wait (readiness)."""
        if settled:
            self.writer.wait_derived()
        cur = self.con.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        remember_path(cur, self.path)  # (the SLI fold's key for it, known: no catalogue query per cursor)
        return cur

    @contextlib.contextmanager
    def read_cursor(self, settled: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self.cursor(settled)
        try:
            yield cur
        finally:
            cur.close()

    def _after_commit(self, batch_id: int, deltas: list[CounterDelta]) -> None:
        self.refresher.poke()
        for hook in self.commit_hooks:
            hook(batch_id, deltas)

    def builtin_metric_names(self) -> set[str]:
        """Family names the collector itself exposes (gauge sources may not claim them)."""
        from collector.metrics.counters import COUNTERS, HISTOGRAM

        return {n.removesuffix("_total") for n in COUNTERS} | {HISTOGRAM} | {m.name for m in self._live_metrics()}

    def _live_metrics(self) -> list[Metric]:
        w = self.writer
        depth = GaugeMetricFamily(C.INGEST_QUEUE_DEPTH, "Events waiting for the writer.", value=w.queue_depth)
        last = GaugeMetricFamily(
            C.LAST_EVENT_TIMESTAMP,
            "Wall-clock time an event from this source was last accepted.", labels=["source"])
        for source, ts in sorted(w.last_ingest_by_source.items()):
            last.add_metric([self.counters.capper("source", source)], ts)
        commit = GaugeMetricFamily(C.WRITER_LAST_COMMIT_SECONDS,
                                   "Duration of the writer's most recent transaction.", value=w.stats.last_commit_seconds)
        lag = GaugeMetricFamily(C.WRITER_DERIVE_LAG_EVENTS, "Events committed and acknowledged whose derived rows "
                                "(run attempts, kernel sessions, ...) the writer has not written yet.",
                                value=w.derive_lag_events)
        keys = GaugeMetricFamily(C.WRITER_KEY_INDEX_KEYS, "Stored events' keys in the writer's dedup index (built from "
                                 "the database at start).", value=w.keys.count)
        key_bytes = GaugeMetricFamily(C.WRITER_KEY_INDEX_BYTES, "Memory the writer's dedup index holds: 17-20 bytes "
                                      "per stored event, outside DuckDB's memory limit.", value=w.keys.nbytes)
        failed = CounterMetricFamily(C.WRITER_DERIVE_FAILURES, "Batches whose events are stored but whose derived rows "
                                     "could not be written (logged with the batch id).", value=w.stats.derive_failures)
        underived = GaugeMetricFamily(
            C.WRITER_UNDERIVED_BATCHES, "Batches the deriver gave up on whose derived rows are still missing (run "
            "counters and SLIs over run attempts undercount them) until `observatory derive retry` folds them in (or "
            "`dismiss` records that they will not be).",
            value=w.stats.underived_batches)
        waited = CounterMetricFamily(
            C.WRITER_DERIVER_WAIT_SECONDS, "Seconds the writer held its next commit for the deriver (its lag bound "
            "reached, or a job that reads the derived tables): ingest waited on the derived tables.",
            value=w.stats.deriver_wait_seconds)
        redone = CounterMetricFamily(
            C.WRITER_TRANSACTIONS_REDONE, "Writer transactions that took the slower way: a group held a key whose "
            "hash the dedup index holds, read back from the stored rows (stored_key), a derived row was stored before "
            "its lookback bound (before_lookback).",
            labels=["reason"])
        for reason in C.REDONE_REASONS:
            redone.add_metric([reason], w.stats.redone[reason])
        refresh = GaugeMetricFamily(C.SQL_REFRESH_TIMESTAMP,
                                    "When the SQL-backed gauges were last computed.", value=self.refresher.last_refresh)
        up = GaugeMetricFamily(C.START_TIME, "Process start time.", value=self.started_at)
        return [depth, last, commit, *w.stats.transactions.collect(), lag, keys, key_bytes, failed, underived, waited,
                redone, refresh, *self.refresher.health_metrics(), up]
