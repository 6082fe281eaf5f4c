"""Notebook Observatory's collector.

polars sizes its thread pool once, when it is first imported, from `POLARS_MAX_THREADS` (by default one thread per
core). The collector's polars calls are small (the columns of a 1,000-event request), issued by several threads at
once beside DuckDB's statements, and on 2 cores handing each call to a pool cost more than its parallelism gave:
HTTP ingest used 22.5 CPU-µs per event with polars' default against 21.5 with one thread, and acknowledged 55,518
against 57,031 events/s (6 alternated pairs, docs/performance.md, twenty-second round); the bulk command was the
same either way. So the collector's processes size it as DuckDB's workers are sized (the cores less the
collector's two busy threads, at least one: `spare_cores`, which `storage.db.collector_threads` uses for DuckDB too).
It is set here, before any module imports polars; a `POLARS_MAX_THREADS` already in the environment wins.
"""

import os

STREAMS = 2  # the collector's own threads that keep a core busy at once (the writer and the deriver, or the SLI
# fold's two sides), each also running its statements on the thread that issued them: a pool's extra workers would
# split small statements across cores those threads already hold (docs/performance.md: ninth round for DuckDB,
# twenty-second for polars)


def usable_cores() -> int:
    """The cores this process may run on (a container's cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def spare_cores(streams: int = STREAMS) -> int:
    """The usable cores less `streams`, at least one: the size of a thread pool beside the collector's own threads."""
    return max(1, usable_cores() - streams)


os.environ.setdefault("POLARS_MAX_THREADS", str(spare_cores()))
