"""Prometheus exposition from an in-memory snapshot.

Counters are persisted in DuckDB (`metric_counters`) in the same transaction as the events they count, loaded at
start (so a restart continues instead of dropping to zero), and then kept in memory; the writer adds each
committed batch's increments. Gauges that need SQL are computed by `GaugeRefresher` on a timer and after ingest.
A scrape only copies these dictionaries: it never touches the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable

import duckdb
import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from collector.storage.derive import DURATION_BUCKETS, CounterDelta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CounterSpec:
    help: str
    labels: tuple[str, ...]


# Persisted counters (name without the _total suffix is what prometheus_client wants for the family).
COUNTERS: dict[str, CounterSpec] = {
    "notebook_run_attempts_total": CounterSpec(
        "Run attempts by outcome, counted once when the attempt's first terminal event is ingested.",
        ("team", "trigger", "environment", "outcome")),
    "notebook_kernel_sessions_total": CounterSpec("Kernel sessions started.", ("team",)),
    "notebook_kernel_crashes_total": CounterSpec(
        "Unexpected kernel deaths and crash/OOM restarts.", ("team", "reason")),
    "notebook_reproducibility_checks_total": CounterSpec(
        "Reproducibility comparisons (explicit checks and reruns compared with their baseline).", ("team", "result")),
    "notebook_quality_checks_total": CounterSpec("Data quality checks by result.", ("team", "result")),
    "notebook_secret_exposures_total": CounterSpec(
        "Secret exposure incidents: reported detections plus events redacted at ingest.", ("team",)),
    "notebook_platform_probes_total": CounterSpec("Availability probes of the notebook UI/API.", ("target", "result")),
    "observatory_events_ingested_total": CounterSpec("Events stored (duplicates excluded).", ("source", "type")),
    "observatory_events_rejected_total": CounterSpec("Events rejected and dead-lettered, by reason.", ("reason",)),
    "observatory_events_duplicate_total": CounterSpec("Events received again and not stored twice.", ()),
}
HISTOGRAM = "notebook_run_duration_seconds"
HISTOGRAM_HELP = "Duration of run attempts (all outcomes), observed when the first terminal event is ingested."
OTHER = "__other__"


class LabelCapper:
    """Bounds the number of distinct values per label; values past the cap are folded into `__other__`."""

    def __init__(self, caps: dict[str, int]) -> None:
        self.caps = caps
        self.seen: dict[str, set[str]] = defaultdict(set)

    def observe(self, name: str, value: str) -> None:
        self.seen[name].add(value)

    def __call__(self, name: str, value: str) -> str:
        value = value[:128]
        cap = self.caps.get(name)
        if cap is None:
            return value
        seen = self.seen[name]
        if value in seen:
            return value
        if len(seen) >= cap:
            return OTHER
        seen.add(value)
        return value


Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs


def _json(labels: Labels) -> str:
    return orjson.dumps(dict(labels), option=orjson.OPT_SORT_KEYS).decode()


class CounterStore:
    """The in-memory counter snapshot plus its persistence; only the writer thread mutates it.

    In memory the labels are sorted tuples (cheap to group at scrape time); in DuckDB a canonical JSON object.
    """

    def __init__(self, caps: dict[str, int] | None = None) -> None:
        self._values: dict[tuple[str, Labels], float] = {}
        self._lock = threading.Lock()
        self.version = 0  # bumped on every change: the exposition cache key
        self.capper = LabelCapper(caps or {"team": 500, "source": 500, "target": 200})

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        values = {}
        for name, labels, value in con.execute("SELECT name, labels, value FROM metric_counters").fetchall():
            lab = tuple(sorted(orjson.loads(labels).items()))
            values[(name, lab)] = value
            for k, v in lab:
                if k in self.capper.caps:
                    self.capper.observe(k, v)
        with self._lock:
            self._values = values
            self.version += 1

    def fold(self, deltas: Iterable[CounterDelta]) -> dict[tuple[str, Labels], float]:
        """Cap label values and sum deltas that now share a key."""
        out: dict[tuple[str, Labels], float] = defaultdict(float)
        for d in deltas:
            labels = tuple(sorted((k, self.capper(k, v)) for k, v in d.labels))
            out[(d.name, labels)] += d.value
        return out

    @staticmethod
    def persist(con: duckdb.DuckDBPyConnection, folded: dict[tuple[str, Labels], float]) -> None:
        if not folded:
            return
        import pyarrow as pa

        tbl = pa.table({
            "name": [k[0] for k in folded], "labels": [_json(k[1]) for k in folded], "value": list(folded.values()),
        })
        con.register("counter_deltas", tbl)
        con.execute(
            "INSERT INTO metric_counters SELECT * FROM counter_deltas "
            "ON CONFLICT (name, labels) DO UPDATE SET value = metric_counters.value + EXCLUDED.value"
        )
        con.unregister("counter_deltas")

    def apply(self, folded: dict[tuple[str, Labels], float]) -> None:
        with self._lock:
            for k, v in folded.items():
                self._values[k] = self._values.get(k, 0.0) + v
            self.version += 1

    def snapshot(self) -> dict[tuple[str, Labels], float]:
        with self._lock:
            return dict(self._values)

    def value(self, name: str, **labels: str) -> float:
        """Sum of a counter over all series matching `labels` (used by tests and the CLI)."""
        return sum(v for (n, lab), v in self.snapshot().items()
                   if n == name and all(dict(lab).get(k) == val for k, val in labels.items()))


GaugeSource = Callable[[duckdb.DuckDBPyConnection], Iterable[Metric]]


class GaugeRefresher:
    """Computes SQL-backed gauges off the scrape path: on a timer, and soon after a committed batch."""

    def __init__(self, cursor_factory: Callable[[], duckdb.DuckDBPyConnection], interval: float = 15.0,
                 min_gap: float = 1.0) -> None:
        self._sources: dict[str, GaugeSource] = {}
        self._cache: dict[str, list[Metric]] = {}
        self._cursor_factory = cursor_factory
        self._interval = interval
        self._min_gap = min_gap
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_refresh: float = 0.0
        self.version = 0
        self.last_duration: float = 0.0

    def register(self, name: str, fn: GaugeSource) -> None:
        self._sources[name] = fn

    def poke(self) -> None:
        self._wake.set()

    def refresh_now(self) -> None:
        t0 = time.perf_counter()
        cur = self._cursor_factory()
        try:
            for name, fn in list(self._sources.items()):
                try:
                    self._cache[name] = list(fn(cur))
                except Exception:  # a broken gauge source must not stop the others
                    log.exception("gauge source failed", extra={"gauge_source": name})
        finally:
            cur.close()
        self.last_duration = time.perf_counter() - t0
        self.last_refresh = time.time()
        self.version += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gauge-refresher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh_now()
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.wait(self._min_gap):
                return

    def metrics(self) -> list[Metric]:
        out: list[Metric] = []
        for ms in list(self._cache.values()):
            out.extend(ms)
        return out


class SnapshotCollector(Collector):
    """prometheus_client collector over the in-memory snapshot (never queries DuckDB)."""

    def __init__(self, counters: CounterStore, gauges: GaugeRefresher | None = None) -> None:
        self.counters = counters
        self.gauges = gauges

    def collect(self) -> Iterable[Metric]:
        snap = self.counters.snapshot()
        by_name: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for (name, labels), value in sorted(snap.items()):
            by_name[name].append((dict(labels), value))
        for name, spec in COUNTERS.items():
            fam = CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=list(spec.labels))
            for labels, value in by_name.get(name, []):
                fam.add_metric([labels.get(l, "") for l in spec.labels], value)
            yield fam
        yield self._histogram(by_name)
        if self.gauges:
            yield from self.gauges.metrics()

    @staticmethod
    def _histogram(by_name: dict[str, list[tuple[dict[str, str], float]]]) -> Metric:
        fam = HistogramMetricFamily(HISTOGRAM, HISTOGRAM_HELP, labels=["team", "trigger"])
        series: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for labels, v in by_name.get(HISTOGRAM + "_bucket", []):
            series[(labels["team"], labels["trigger"])][labels["le"]] = v
        sums = {(l["team"], l["trigger"]): v for l, v in by_name.get(HISTOGRAM + "_sum", [])}
        for key in sorted(series):
            per_le = series[key]
            cum = 0.0
            buckets = []
            for b in DURATION_BUCKETS:
                cum += per_le.get(str(b), 0.0)
                buckets.append((str(float(b)), cum))
            cum += per_le.get("+Inf", 0.0)
            buckets.append(("+Inf", cum))
            fam.add_metric(list(key), buckets, sums.get(key, 0.0))
        return fam


class LiveCollector(Collector):
    """The few values read at scrape time from process state (queue depth, last commit), never from DuckDB."""

    def __init__(self, fn: Callable[[], Iterable[Metric]]) -> None:
        self.fn = fn

    def collect(self) -> Iterable[Metric]:
        yield from self.fn()


class Exposition:
    """Encodes the snapshot once per change: the counter and SQL-gauge part is cached until the counters or the
    gauges change (thousands of series cost milliseconds to format), the small live part is encoded per scrape."""

    def __init__(self, counters: CounterStore, gauges: GaugeRefresher, live: Callable[[], Iterable[Metric]]) -> None:
        from prometheus_client import CollectorRegistry

        self.counters, self.gauges = counters, gauges
        self.static = CollectorRegistry(auto_describe=False)
        self.static.register(SnapshotCollector(counters, gauges))
        self.live = CollectorRegistry(auto_describe=False)
        self.live.register(LiveCollector(live))
        self._cache: dict[str, tuple[tuple[int, int], bytes]] = {}
        self._lock = threading.Lock()

    def render(self, accept: str | None) -> tuple[bytes, str]:
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        key = (self.counters.version, self.gauges.version)
        with self._lock:
            cached = self._cache.get(content_type)
            if cached is None or cached[0] != key:
                body = encoder(self.static)
                if body.endswith(b"# EOF\n"):
                    body = body[: -len(b"# EOF\n")]
                cached = (key, body)
                self._cache[content_type] = cached
        return cached[1] + encoder(self.live), content_type


def gauge(name: str, help_: str, labels: list[str], rows: Iterable[tuple]) -> GaugeMetricFamily:
    """Small helper for gauge sources: rows are (label values..., value); None values are skipped (absent)."""
    fam = GaugeMetricFamily(name, help_, labels=labels)
    for row in rows:
        if row[-1] is None:
            continue
        fam.add_metric([str(v) if v is not None else "unknown" for v in row[:-1]], float(row[-1]))
    return fam
