"""The cores this process may run on, and how many of them the collector's thread pools get.

One policy for both pools the collector sizes: DuckDB's workers (`storage.db.collector_threads`) and polars' pool
(`collector/__init__.py`). The collector keeps two streams of statements busy on its own (the writer and the
deriver, or the SLI fold's two sides), each also running on the thread that issued it; a pool's extra workers
would split small statements across cores those streams already hold (docs/performance.md: ninth round for DuckDB,
twenty-second for polars)."""

from __future__ import annotations

import os

STREAMS = 2  # the collector's own threads that keep a core busy at once


def usable_cores() -> int:
    """The cores this process may run on (a container's cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def spare_cores(streams: int = STREAMS) -> int:
    """The usable cores less `streams`, at least one: the size of a pool beside the collector's own threads."""
    return max(1, usable_cores() - streams)
