"""Persisted counters: the in-memory snapshot the writer folds each committed batch into, and its table.

Counters are persisted in DuckDB (`metric_counters`) in the same transaction as the events they count, loaded at
start (so a restart continues instead of dropping to zero), and then kept in memory. Label values are capped per
label (`__other__` past the cap).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

import duckdb
import orjson

from collector import conventions as C
from collector.storage.derive import CounterDelta

@dataclass(frozen=True)
class CounterSpec:
    help: str
    labels: tuple[str, ...]


# Persisted counters (name without the _total suffix is what prometheus_client wants for the family).
COUNTERS: dict[str, CounterSpec] = {
    C.RUN_ATTEMPTS_TOTAL: CounterSpec(
        "Run attempts by outcome, counted once when the attempt's first terminal event is ingested.",
        ("team", "trigger", "environment", "outcome")),
    C.KERNEL_SESSIONS_TOTAL: CounterSpec("Kernel sessions started.", ("team",)),
    C.KERNEL_CRASHES_TOTAL: CounterSpec(
        "Unexpected kernel deaths and crash/OOM restarts.", ("team", "reason")),
    C.REPRODUCIBILITY_CHECKS_TOTAL: CounterSpec(
        "Reproducibility comparisons (explicit checks and reruns compared with their baseline).", ("team", "result")),
    C.QUALITY_CHECKS_TOTAL: CounterSpec("Data quality checks by result.", ("team", "result")),
    C.SECRET_EXPOSURES_TOTAL: CounterSpec(
        "Secret exposure incidents: reported detections plus events redacted at ingest.", ("team",)),
    C.PLATFORM_PROBES_TOTAL: CounterSpec("Availability probes of the notebook UI/API.", ("target", "result")),
    C.EVENTS_INGESTED_TOTAL: CounterSpec("Events stored (duplicates excluded).", ("source", "type")),
    C.EVENTS_REJECTED_TOTAL: CounterSpec("Events rejected and dead-lettered, by reason.", ("reason",)),
    C.EVENTS_DUPLICATE_TOTAL: CounterSpec("Events received again and not stored twice.", ()),
}
HISTOGRAM = C.RUN_DURATION_SECONDS
HISTOGRAM_HELP = "Duration of run attempts (all outcomes), observed when the first terminal event is ingested."
OTHER = C.OTHER


class LabelCapper:
    """Bounds the number of distinct values per label; values past the cap are folded into `__other__`."""

    def __init__(self, caps: dict[str, int]) -> None:
        self.caps = caps
        self.seen: dict[str, set[str]] = defaultdict(set)

    def observe(self, name: str, value: str) -> None:
        self.seen[name].add(value)

    def __call__(self, name: str, value: str) -> str:
        value = C.safe_label_value(value)
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
CAPPED_MEMORY = 65_536  # label sets `CounterStore.fold` remembers as capped


def _json(labels: Labels) -> str:
    return orjson.dumps(dict(labels), option=orjson.OPT_SORT_KEYS).decode()


class CounterStore:
    """The in-memory counter snapshot plus its persistence; the writer's threads (writer, deriver) mutate it.

    In memory the labels are sorted tuples (cheap to group at scrape time); in DuckDB a canonical JSON object.
    """

    def __init__(self, caps: dict[str, int] | None = None) -> None:
        self._values: dict[tuple[str, Labels], float] = {}
        self._lock = threading.Lock()
        self._fold_lock = threading.Lock()  # the writer and the deriver fold at once; the capper's seen sets grow
        self.version = 0  # bumped on every change: the exposition cache key
        self.capper = LabelCapper(caps or {"team": 500, "source": 500, "target": 200})
        self._capped: dict[Labels, Labels] = {}  # a delta's label set -> as exported (`fold`)

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
        with self._fold_lock:  # the seen sets grew: what `fold` remembered may no longer be what capping gives
            self._capped.clear()

    def fold(self, deltas: Iterable[CounterDelta]) -> dict[tuple[str, Labels], float]:
        """Cap label values and sum deltas that now share a key.

        Batches repeat the same label sets many times (every histogram bucket of a team, every counter of a
        source), so each distinct label set is capped and sorted once and remembered (`_capped`) across calls:
        capping a value redacts it (`safe_label_value`, ~3 µs), and a derive pass of the HTTP bench's meets ~2,000
        label sets (~7 ms of the pass, holding the GIL that validation needs). Remembering gives the same result as
        capping every delta: a value, once let through, stays in the seen set, and one folded into `__other__`
        stays folded while the set is full (the seen set only grows). The memory is bounded: past
        `CAPPED_MEMORY` label sets (values past the caps are distinct inputs too) it starts afresh.
        """
        out: dict[tuple[str, Labels], float] = defaultdict(float)
        with self._fold_lock:
            capped = self._capped
            for d in deltas:
                labels = capped.get(d.labels)
                if labels is None:
                    if len(capped) >= CAPPED_MEMORY:
                        capped.clear()
                    labels = capped[d.labels] = tuple(sorted((k, self.capper(k, v)) for k, v in d.labels))
                out[(d.name, labels)] += d.value
        return out

    @staticmethod
    def persist(con: duckdb.DuckDBPyConnection, folded: dict[tuple[str, Labels], float], part: str = "events"
                ) -> None:
        """Add `folded` to the stored totals, in `part` (`events`: the writer's transactions; `derived`: the
        deriver's, which run at the same time and so must never update the same rows; migration 0209)."""
        if not folded:
            return
        import pyarrow as pa

        tbl = pa.table({
            "name": [k[0] for k in folded], "labels": [_json(k[1]) for k in folded], "value": list(folded.values()),
        })
        con.register("counter_deltas", tbl)
        con.execute(
            "INSERT INTO metric_counter_parts SELECT ?, * FROM counter_deltas "
            "ON CONFLICT (part, name, labels) DO UPDATE SET value = metric_counter_parts.value + EXCLUDED.value",
            [part],
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
