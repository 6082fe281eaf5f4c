"""What else a collector did during a bench's run, watched from outside its process: its checkpoints (`WalWatch`),
its gauge refresher's passes and its writer's waits for the deriver (`RefreshWatch`), each sampled on a thread of its
own (`Periodic`).

Why: an HTTP run of the ingest bench (200,000 events) ends near the point where the collector's WAL reaches its
checkpoint threshold (~220,000 events at 128 MiB) and lasts about the refresher's least gap between passes (5 s), so
a run may hold a checkpoint (~1 s during which the writer waits, docs/performance.md, thirtieth round), a refresher
pass (which folds what was ingested since the last one into the SLI tables on the same cores), both or neither.
Counting them says whether a slow run held either. The writer also stops committing while its deriver is its lag
bound behind (the largest group commit, 50,000 events by default; ingest/writer.py): the time it waited says whether
a slow run was held by the derived tables rather than by the insert. The writer's transactions by stage (commits,
derive passes; their count and seconds) are read from /metrics too, and where the collector's memory is (its resident
pages by kind, DuckDB's allocator, glibc's heap, Arrow's pool), so that a run's peak RSS can be split.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx


# prometheus_client writes a histogram's _count before its _sum, each per label set
_TRANSACTIONS = re.compile(
    r'^observatory_writer_transaction_duration_seconds_(?P<part>count|sum)\{stage="(?P<stage>\w+)"\} (?P<value>\S+)$')
# where the collector's memory is (collector/metrics/process_memory.py)
_MEMORY = re.compile(
    r'^(?P<name>process_resident_memory_bytes|'
    r'observatory_(?:resident_memory|malloc|duckdb_allocator|arrow_allocated)_bytes)'
    r'(?:\{\w+="(?P<label>\w+)"\})? (?P<value>\S+)$')


_MEMORY_KEYS = {"process_resident_memory_bytes": "rss", "observatory_resident_memory_bytes": "",
                "observatory_malloc_bytes": "malloc_", "observatory_duckdb_allocator_bytes": "duckdb_",
                "observatory_arrow_allocated_bytes": "arrow"}


class Periodic:
    """`sample()` every `every` seconds on a thread while the `with` block runs, once at its start and once at its
    end; or called from the caller's own loop."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        self.sample()

        def loop() -> None:
            while not self._done.wait(self.every):
                self.sample()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


class WalWatch(Periodic):
    """The checkpoints of the database at `db`: DuckDB empties the WAL when a checkpoint has written it into the
    database file, so a sample smaller than the one before marks one (one that starts and ends between two samples of
    an empty WAL is not seen; none does: a checkpoint writes a WAL of some size and takes longer than a sampling
    period). `checkpoints`: (perf_counter time seen, WAL bytes before) each."""

    def __init__(self, db: Path, every: float = 0.05) -> None:
        super().__init__(every)
        self.wal = Path(f"{db}.wal")
        self.checkpoints: list[tuple[float, int]] = []
        self._last = 0

    def sample(self, now: float | None = None) -> None:
        try:
            size = self.wal.stat().st_size
        except OSError:  # not created yet, or removed by the checkpoint
            size = 0
        if size < self._last:
            self.checkpoints.append((time.perf_counter() if now is None else now, self._last))
        self._last = size


class RefreshWatch(Periodic):
    """The gauge refresher of the collector on `port`, read from its /metrics (with `token`, read scope): the passes
    that ended (`observatory_sql_refresh_timestamp_seconds` moves when one does; 0 until the first) with their
    duration (the sources' `observatory_sql_refresh_last_duration_seconds` summed), and the gauges' age at each read
    (from the watch's start while no pass has ended). `during(end)`: the passes that began before `end` (a wall-clock
    time), for a watch kept open past a run so that a pass the run began is seen when it ends."""

    def __init__(self, port: int, token: str, every: float = 0.5) -> None:
        super().__init__(every)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.passes: list[tuple[float, float]] = []
        self.ages: list[float] = []
        # The writer's waits for its deriver (the counter, at each read; a collector before the thirty-sixth round
        # has none) and the deriver's lag behind the writer at each read, in events.
        self.deriver_waits: list[float] = []
        self.lags: list[float] = []
        # the writer's transactions by stage (commit, derive): (count, seconds) at each read
        self.transactions: dict[str, list[tuple[float, float]]] = {}
        # the memory gauges at each read, in bytes, keyed as _MEMORY_KEYS names them and by their label (those the
        # collector exposes: "rss", "anonymous", "malloc_in_use", "duckdb_free", "arrow", ...)
        self.memory: list[dict[str, float]] = []
        self._began = time.time()
        self._last = 0.0
        self._client = httpx.Client(timeout=30)

    def sample(self) -> None:
        ended, seconds = None, 0.0
        memory: dict[str, float] = {}
        for line in self._client.get(self.url, headers=self.headers).text.splitlines():
            if m := _MEMORY.match(line):
                memory[_MEMORY_KEYS[m["name"]] + (m["label"] or "")] = float(m["value"])
                continue
            if line.startswith("observatory_sql_refresh_timestamp_seconds "):
                ended = float(line.split()[-1])
            elif line.startswith("observatory_sql_refresh_last_duration_seconds{"):
                seconds += float(line.split()[-1])
            elif line.startswith("observatory_writer_deriver_wait_seconds_total "):
                self.deriver_waits.append(float(line.split()[-1]))
            elif line.startswith("observatory_writer_derive_lag_events "):
                self.lags.append(float(line.split()[-1]))
            elif line.startswith("observatory_writer_transaction_duration_seconds_"):
                m = _TRANSACTIONS.match(line)
                if m:
                    reads = self.transactions.setdefault(m["stage"], [])
                    if m["part"] == "count":
                        reads.append((float(m["value"]), 0.0))
                    elif reads:
                        reads[-1] = (reads[-1][0], float(m["value"]))
        if memory:
            self.memory.append(memory)
        if ended is None:
            return
        self.ages.append(time.time() - (ended or self._began))
        if ended and ended != self._last:
            if ended > self._began:
                self.passes.append((ended, seconds))
            self._last = ended

    def __enter__(self) -> "RefreshWatch":
        self._began = time.time()
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._client.close()

    def deriver_wait(self) -> float | None:
        """Seconds the writer waited for its deriver while the watch ran (None: the collector does not say)."""
        return self.deriver_waits[-1] - self.deriver_waits[0] if self.deriver_waits else None

    def writer_transactions(self, stage: str) -> tuple[int, float] | None:
        """How many transactions of `stage` (commit, derive) ended while the watch ran, and their seconds (None: the
        collector does not say)."""
        reads = self.transactions.get(stage)
        if not reads:
            return None
        return int(reads[-1][0] - reads[0][0]), reads[-1][1] - reads[0][1]

    def during(self, end: float) -> list[tuple[float, float]]:
        return [(ended, seconds) for ended, seconds in self.passes if ended - seconds < end]
