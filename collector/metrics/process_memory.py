"""Where the collector's resident memory is, beside what DuckDB says it holds (collector/metrics/duckdb_memory.py).

Why: under `OBSERVATORY_DUCKDB_MEMORY_LIMIT=512MB` the collector's RSS runs 300-450 MiB above the limit at
saturation, and `process_resident_memory_bytes` alone cannot say what the rest is (with these gauges: DuckDB within
its limit; above it the libraries' code, glibc's heap and Python's objects, docs/performance.md, forty-sixth round).
They split it by what the kernel and the allocators can tell, on every scrape, in process and with no query: ~0.07
ms idle; at saturation 3.5 ms at the median and 18 ms at most (glibc's `mallinfo2` counts the free chunks of each arena
under that arena's lock, so a thread allocating there waits meanwhile; once per scrape, it costs nothing measurable):

* the resident pages by kind (Linux's `/proc/self/status`): anonymous (the heaps), file (the mapped code of Python,
  DuckDB, polars and pyarrow, which no memory limit covers) and shared;
* glibc's heap (`mallinfo2`, summed over its arenas): in use, and free but kept for the next batch (the trim threshold
  of collector/ingest/allocators.py). Arrow's buffers (its system pool) and Python's larger objects are in it;
* DuckDB's allocator: its Linux wheels embed a jemalloc of their own (symbols prefixed `duckdb_je_`) through which
  its blocks and most of its working memory go, so DuckDB's memory is not in glibc's heap. Its `mallctl` is
  exported and answers in microseconds without a query: in use (`stats.allocated`), and resident but free
  (`stats.resident` beyond it: pages kept for reuse, its metadata);
* Arrow's pool: what pyarrow holds right now (part of glibc's heap in use).

What none of them covers is the rest: `anonymous` minus DuckDB's allocator and glibc's `in_use` is glibc's free chunks
as far as they are resident (its `free` bounds them; the kernel cannot say which are), Python's own object arenas,
polars' allocator (another jemalloc, which exports nothing) and the threads' stacks. docs/operations.md shows how to
read them together. A platform without `/proc`, glibc or DuckDB's jemalloc (macOS) exposes only what it has.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Iterable

import pyarrow as pa
from prometheus_client.core import GaugeMetricFamily, Metric

from collector import conventions as C
from collector.ingest.allocators import glibc

STATUS = Path("/proc/self/status")
# /proc/self/status's fields, by the `kind` label they are exposed under
RESIDENT_KINDS = {"RssAnon": "anonymous", "RssFile": "file", "RssShmem": "shared"}


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (malloc.h, glibc 2.33+): every field a size_t."""
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _mallinfo2() -> ctypes._CFuncPtr | None:
    """glibc's `mallinfo2`, or None where the C library is not a glibc that has it (musl, macOS, glibc < 2.33)."""
    libc = glibc()
    fn = getattr(libc, "mallinfo2", None) if libc is not None else None
    if fn is not None:
        fn.restype, fn.argtypes = _MallInfo2, []
    return fn


@functools.cache
def _duckdb_mallctl() -> ctypes._CFuncPtr | None:
    """`duckdb_je_mallctl` of the loaded DuckDB module, or None where its wheel has no jemalloc (or hides it)."""
    try:
        import _duckdb as native  # DuckDB's compiled module, already loaded by `import duckdb`
        fn = getattr(ctypes.CDLL(native.__file__), "duckdb_je_mallctl", None)
    except (ImportError, OSError, AttributeError):
        return None
    if fn is not None:
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p,
                       ctypes.c_size_t]
    return fn


def duckdb_allocator_bytes() -> dict[str, int] | None:
    """DuckDB's jemalloc: `in_use` (allocated) and `free` (resident beyond that), from fresh statistics (jemalloc
    caches them until its `epoch` is advanced). None without it, or when it refuses (a build without statistics)."""
    fn = _duckdb_mallctl()
    if fn is None:
        return None
    epoch, size = ctypes.c_uint64(1), ctypes.c_size_t(8)
    if fn(b"epoch", ctypes.byref(epoch), ctypes.byref(size), ctypes.byref(epoch), 8) != 0:
        return None
    got = {}
    for name in ("stats.allocated", "stats.resident"):
        value, size = ctypes.c_size_t(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
        if fn(name.encode(), ctypes.byref(value), ctypes.byref(size), None, 0) != 0:
            return None
        got[name] = value.value
    return {"in_use": got["stats.allocated"], "free": max(got["stats.resident"] - got["stats.allocated"], 0)}


def resident_bytes(status: str) -> dict[str, int]:
    """The resident kinds in a `/proc/<pid>/status` text, in bytes (the kernel writes kB, meaning KiB)."""
    out: dict[str, int] = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        kind = RESIDENT_KINDS.get(key)
        if kind is not None:
            out[kind] = int(rest.split()[0]) * 1024
    return out


def malloc_bytes() -> dict[str, int] | None:
    """glibc's heap over all arenas: `in_use` (small and large chunks handed out, including those served by mmap)
    and `free` (chunks freed and kept, the top of each heap included). None without glibc's mallinfo2."""
    fn = _mallinfo2()
    if fn is None:
        return None
    info = fn()
    return {"in_use": info.uordblks + info.hblkhd, "free": info.fordblks}


def _family(name: str, help_: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, help_, labels=[label])
    for value_label, value in values.items():
        fam.add_metric([value_label], value)
    return fam


def process_memory_metrics() -> Iterable[Metric]:
    """The gauge families above, each only where the platform gives its source."""
    try:
        resident = resident_bytes(STATUS.read_text())
    except OSError:
        resident = {}
    if resident:
        yield _family(C.RESIDENT_MEMORY_BYTES, "The collector's resident memory by kind (Linux's RssAnon, RssFile, "
                      "RssShmem): file is mapped library code, which no memory limit covers.", C.MEMORY_KIND, resident)
    heap = malloc_bytes()
    if heap is not None:
        yield _family(C.MALLOC_BYTES, "glibc's heap over its arenas: in use (request bodies, Arrow's buffers, "
                      "Python's larger objects; not DuckDB's blocks) and free but kept for the next batch.",
                      C.MEMORY_STATE, heap)
    duck = duckdb_allocator_bytes()
    if duck is not None:
        yield _family(C.DUCKDB_ALLOCATOR_BYTES, "DuckDB's own allocator (the jemalloc its wheel embeds): in use (its "
                      "blocks, within OBSERVATORY_DUCKDB_MEMORY_LIMIT, and its working memory) and resident but free "
                      "(pages kept for reuse).", C.MEMORY_STATE, duck)
    yield GaugeMetricFamily(C.ARROW_ALLOCATED_BYTES, "Bytes Arrow's default memory pool holds (request and batch "
                            "columns in flight).", value=pa.default_memory_pool().bytes_allocated())
