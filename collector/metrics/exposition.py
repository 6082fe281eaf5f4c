"""Prometheus exposition from an in-memory snapshot: persisted counters (collector/metrics/counters.py), the
SQL-backed gauges of the refresher (collector/metrics/refresher.py) and a few live process values.

A scrape only copies these dictionaries: it never touches the database.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.conventions import safe_label_value
from collector.metrics.counters import COUNTERS, HISTOGRAM, HISTOGRAM_HELP, CounterStore
from collector.metrics.process_memory import process_memory_metrics
from collector.metrics.refresher import GaugeRefresher
from collector.storage.derive import DURATION_BUCKETS


def safe_labels(fam: Metric) -> Metric:
    """The family with every label value passed through `safe_label_value`; a sample whose safe labels equal an
    earlier one's is dropped (an exposition never repeats a series)."""
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    samples = []
    for smp in fam.samples:
        labels = {k: safe_label_value(v) for k, v in smp.labels.items()}
        key = (smp.name, tuple(sorted(labels.items())))
        if key in seen:
            continue
        seen.add(key)
        samples.append(smp._replace(labels=labels))
    fam.samples = samples
    return fam


class SnapshotCollector(Collector):
    """prometheus_client collector over the in-memory snapshot (never queries DuckDB)."""

    def __init__(self, counters: CounterStore, gauges: GaugeRefresher | None = None) -> None:
        self.counters = counters
        self.gauges = gauges

    def collect(self) -> Iterable[Metric]:
        snap = self.counters.snapshot()
        # Label values are made safe here as well as at counting time: rows persisted before that rule (or by
        # an older version) must not carry a secret or a control character into the exposition. Series that
        # become equal are summed, never exported twice.
        merged: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        for (name, labels), value in snap.items():
            merged[(name, tuple((k, safe_label_value(v)) for k, v in labels))] += value
        by_name: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for (name, labels), value in sorted(merged.items()):
            by_name[name].append((dict(labels), value))
        for name, spec in COUNTERS.items():
            fam = CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=list(spec.labels))
            for labels, value in by_name.get(name, []):
                fam.add_metric([labels.get(l, "") for l in spec.labels], value)
            yield fam
        yield self._histogram(by_name)
        if self.gauges:
            for fam in self.gauges.metrics():
                yield safe_labels(fam)

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
        for fam in self.fn():
            yield safe_labels(fam)


class Exposition:
    """Encodes the snapshot once per change: the counter and SQL-gauge part is cached until the counters or the
    gauges change (thousands of series cost milliseconds to format), the small live part is encoded per scrape."""

    def __init__(self, counters: CounterStore, gauges: GaugeRefresher, live: Callable[[], Iterable[Metric]]) -> None:
        from prometheus_client import CollectorRegistry, ProcessCollector

        self.counters, self.gauges = counters, gauges
        self.static = CollectorRegistry(auto_describe=False)
        self.static.register(SnapshotCollector(counters, gauges))
        self.live = CollectorRegistry(auto_describe=False)
        self.live.register(LiveCollector(live))
        # process_resident_memory_bytes, process_cpu_seconds_total, ...: what every Prometheus exporter offers, and
        # how an operator sees the memory the process keeps for the next batch (collector/ingest/allocators.py).
        ProcessCollector(registry=self.live)
        # ... and where that memory is, beside DuckDB's own gauges (collector/metrics/process_memory.py)
        self.live.register(LiveCollector(process_memory_metrics))
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
