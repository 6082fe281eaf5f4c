"""SQL-backed gauges, computed off the scrape path: on a timer and soon after a committed batch."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import duckdb
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector import conventions as C

log = logging.getLogger(__name__)


GaugeFn = Callable[[duckdb.DuckDBPyConnection], Iterable[Metric]]


@dataclass(frozen=True)
class GaugeSource:
    """A function computing metric families from SQL, and the family names it may emit (declared up front, as
    prometheus_client's `describe()`, so that two sources claiming one name are refused at registration)."""

    name: str
    metrics: frozenset[str] | tuple[str, ...]
    fn: GaugeFn


class DuplicateMetric(ValueError):
    """Two gauge sources (or a source and a built-in family) claim the same metric name."""


# At most this share of wall-clock time goes to refreshing: after a refresh that took d seconds the next one waits
# at least d * (1 / MAX_DUTY - 1). Under sustained ingest every commit pokes the refresher; without the bound a
# refresh of all SLIs (most of a second on 2 cores) would run back to back and take the CPU the writer needs
# (measured: two thirds of the collector's CPU during bench_ingest's HTTP run; at a fifth of the time, still the
# largest stage of bench/profile_ingest.py's HTTP profile, since a refresh runs DuckDB on both cores). Scrapes come
# every 15 s or so: gauges a few seconds old lose nothing.
#
# Unless they get old: a refresh folds everything ingested since the previous one, so under sustained heavy ingest
# each takes longer than the last, each rest too, and the gauges fall further behind at every pass (a 1M-event
# flood: refreshed at 9 s, then not before 46 s, after a fold of 6 s). `max_age` bounds the rest instead, so that a
# pass starts at most `max_age` after the previous one started; the duty then grows with the ingest rate (it
# converges while a fold takes less time than the ingest of what it folds).
MAX_DUTY = 0.1


class GaugeRefresher:
    """Computes SQL-backed gauges off the scrape path: on a timer, and soon after a committed batch (at most
    MAX_DUTY of the time, unless the gauges would get older than `max_age`)."""

    def __init__(self, cursor_factory: Callable[[], duckdb.DuckDBPyConnection], interval: float = 15.0,
                 min_gap: float = 1.0, max_age: float = 60.0) -> None:
        self._sources: dict[str, GaugeSource] = {}
        self._owners: dict[str, str] = {}  # metric family name -> source name
        self._cache: dict[str, list[Metric]] = {}
        self._cursor_factory = cursor_factory
        self._interval = interval
        self._min_gap = min_gap
        self._max_age = max_age
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: duckdb.DuckDBPyConnection | None = None  # the pass's cursor, for `stop` to interrupt
        self._lock = threading.Lock()
        self.last_refresh: float = 0.0
        self.version = 0
        self.last_duration: float = 0.0
        # per source, as Prometheus reports its rule groups: a source that fails keeps exposing its last values, so
        # its own success time (not the pass's) says how old they are
        self.last_success: dict[str, float] = {}
        self.source_seconds: dict[str, float] = {}
        self.failures: dict[str, int] = {}

    def register(self, source: GaugeSource, *, reserved: Iterable[str] = ()) -> None:
        """Add a source; a metric name already claimed (by another source or in `reserved`) is an error."""
        if source.name in self._sources:
            raise DuplicateMetric(f"gauge source {source.name!r} is already registered")
        taken = set(reserved)
        for metric in source.metrics:
            owner = self._owners.get(metric) or ("the collector" if metric in taken else None)
            if owner:
                raise DuplicateMetric(f"gauge source {source.name!r} emits {metric!r}, already emitted by {owner}")
        for metric in source.metrics:
            self._owners[metric] = source.name
        self._sources[source.name] = source

    def poke(self) -> None:
        self._wake.set()

    def refresh_now(self) -> None:
        t0 = time.perf_counter()
        cur = self._cursor_factory()
        with self._lock:
            self._running = cur
        try:
            for name, source in list(self._sources.items()):
                if self._stop.is_set():  # stopping: what is not computed is not needed
                    return
                started = time.perf_counter()
                try:
                    families = list(source.fn(cur))
                except Exception:  # a broken gauge source must not stop the others
                    if self._stop.is_set():  # interrupted by `stop`: not the source's failure
                        return
                    log.exception("gauge source failed", extra={"gauge_source": name})
                    self.failures[name] = self.failures.get(name, 0) + 1
                    continue
                finally:
                    self.source_seconds[name] = time.perf_counter() - started
                self.last_success[name] = time.time()
                undeclared = [f.name for f in families if f.name not in source.metrics]
                if undeclared:
                    log.error("gauge source emitted undeclared metrics; dropped",
                              extra={"gauge_source": name, "metrics": undeclared})
                self._cache[name] = [f for f in families if f.name in source.metrics]
        finally:
            with self._lock:
                self._running = None
            cur.close()
        self.last_duration = time.perf_counter() - t0
        self.last_refresh = time.time()
        self.version += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gauge-refresher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the refresher, interrupting a pass in progress. A pass may take long (the first fold of a large
        history into the SLI tables: ~30 s at 10M events), and while its transaction is open the store can neither
        checkpoint nor close its connection; the fold commits slice by slice, so an interrupted one goes on from its
        last slice at the next start. DuckDB's interrupt stops the running statement only, so it is repeated until
        the pass returns."""
        self._stop.set()
        self._wake.set()
        if not self._thread:
            return
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            with self._lock:
                cur = self._running
            if cur is not None:
                with contextlib.suppress(duckdb.Error):
                    cur.interrupt()
            self._thread.join(timeout=0.05)

    def rest_after(self, waited: float) -> float:
        """The rest before the next pass, once `waited` seconds went by after the last one waiting for a poke:
        MAX_DUTY's, but never so long that the next pass starts more than `max_age` after the last one did."""
        duty = self.last_duration * (1 / MAX_DUTY - 1)
        return max(self._min_gap, min(duty, self._max_age - self.last_duration - waited))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh_now()
            t0 = time.monotonic()
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.wait(self.rest_after(time.monotonic() - t0)):
                return

    def metrics(self) -> list[Metric]:
        out: list[Metric] = []
        for ms in list(self._cache.values()):
            out.extend(ms)
        return out

    def health_metrics(self) -> list[Metric]:
        """The refresher's own state per source, for the ObservatoryGaugesStale ticket and the on-call dashboard: a
        source never computed has a success time of 0 (its gauges are absent, which is as old as it gets)."""
        success = GaugeMetricFamily(C.SQL_REFRESH_LAST_SUCCESS, "When this source's SQL-backed gauges were last "
                                    "computed without error (0: never).", labels=[C.GAUGE_SOURCE])
        seconds = GaugeMetricFamily(C.SQL_REFRESH_LAST_DURATION, "How long this source took in the refresher's last "
                                    "pass.", labels=[C.GAUGE_SOURCE])
        failed = CounterMetricFamily(C.SQL_REFRESH_FAILURES, "Passes in which this source raised (its gauges keep "
                                     "the values of its last success; the error is logged).", labels=[C.GAUGE_SOURCE])
        for name in sorted(self._sources):
            success.add_metric([name], self.last_success.get(name, 0.0))
            seconds.add_metric([name], self.source_seconds.get(name, 0.0))
            failed.add_metric([name], self.failures.get(name, 0))
        return [success, seconds, failed]
