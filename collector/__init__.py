"""Notebook Observatory's collector.

polars sizes its thread pool once, when it is first imported, from `POLARS_MAX_THREADS` (by default one thread per
core). The collector's polars calls are small (the columns of a 1,000-event request), issued by several threads at
once beside DuckDB's statements, and on 2 cores handing each call to a pool cost more than its parallelism gave:
HTTP ingest used 22.5 CPU-µs per event with polars' default against 21.5 with one thread, and acknowledged 55,518
against 57,031 events/s (6 alternated pairs, docs/performance.md, twenty-second round); the bulk command was the
same either way. So the collector's processes size it as DuckDB's workers are sized (`collector/cores.py`: the
cores less the collector's two busy threads, at least one). It is set here, before any module imports polars; a
`POLARS_MAX_THREADS` already in the environment wins.
"""

import os

from collector.cores import spare_cores

os.environ.setdefault("POLARS_MAX_THREADS", str(spare_cores()))
