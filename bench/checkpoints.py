"""A database's checkpoints counted from outside its process: a drop of its write-ahead log's size.

Why: an HTTP run of the ingest bench (200,000 events) ends near the point where the collector's WAL reaches its
checkpoint threshold (~220,000 events at 128 MiB), so a run may hold a checkpoint (~1 s during which the writer
waits, docs/performance.md, thirtieth round) or none; counting them says whether a slow run held one. DuckDB
empties the WAL when a checkpoint has written it into the database file, so a sample smaller than the one before
marks a checkpoint; one that starts and ends between two samples of an empty WAL is not seen (none does: a
checkpoint writes a WAL of some size, and takes longer than a sampling period).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path


class WalWatch:
    """The checkpoints of the database at `db`: `sample()` from the caller's own loop, or `with WalWatch(db):` to
    sample every `every` seconds on a thread. `checkpoints`: (perf_counter time seen, WAL bytes before) each."""

    def __init__(self, db: Path, every: float = 0.05) -> None:
        self.wal = Path(f"{db}.wal")
        self.every = every
        self.checkpoints: list[tuple[float, int]] = []
        self._last = 0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self, now: float | None = None) -> None:
        try:
            size = self.wal.stat().st_size
        except OSError:  # not created yet, or removed by the checkpoint
            size = 0
        if size < self._last:
            self.checkpoints.append((time.perf_counter() if now is None else now, self._last))
        self._last = size

    def __enter__(self) -> "WalWatch":
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
