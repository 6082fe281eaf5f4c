"""What the collector's process built at start-up, kept out of Python's full garbage collections.

Why: a full (generation 2) collection walks every container object the process holds, and the collector holds
~113,000 of them once started (its modules, FastAPI's and pydantic's models, polars, pyarrow, DuckDB's client),
nearly all alive until it exits. Ingest's allocations trigger such a collection about once per 200,000 events
under load, and each one stopped every Python thread for 66-91 ms (measured in `observatory serve` under the ingest
bench's HTTP clients; 2.5-4 ms frozen; docs/performance.md, Ingest, forty-fifth round): a request being validated,
the writer between two DuckDB calls, a refresher pass waited for it.

`freeze()` runs one full collection, then moves every object left into CPython's permanent generation
(`gc.freeze`), which later collections skip: they walk only what was made after start-up. A frozen object is still
freed when nothing refers to it any more; only a reference cycle among frozen objects would stay. So it runs once
per process, when start-up is done (the collector app's lifespan, after the store has started; a process that
starts several apps, as the test suite does, freezes at the first). `OBSERVATORY_GC_FREEZE=false` leaves the
collector's garbage collection as Python's default.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_frozen: int | None = None  # objects frozen by this process's first call, once made


def freeze(enabled: bool = True) -> int:
    """Collect, then freeze what is left (see above), once per process; returns how many objects the process has
    frozen (0 when not `enabled` and never done)."""
    global _frozen
    with _lock:
        if _frozen is None and enabled:
            gc.collect()
            gc.freeze()
            _frozen = gc.get_freeze_count()
        return _frozen or 0
