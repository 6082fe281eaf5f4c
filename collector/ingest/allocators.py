"""The process's memory allocators, set for ingest's allocation pattern: freed memory is kept for the next batch.

Why: every batch allocates and frees buffers of hundreds of KB to tens of MB (request bodies, parsed items, Arrow
columns, polars frames, orjson texts), the same sizes again and again. With their defaults,

* glibc gives memory back to the OS as soon as 128 KiB is free at the top of a heap (its trim threshold) and serves
  large blocks (above a threshold that starts at 128 KiB) with fresh `mmap`s, unmapped when freed;
* pyarrow's default pool (mimalloc) gives freed pages back to the OS after 10 ms.

So each batch faulted in, zeroed by the kernel, the pages the previous batch had just given back: ~1.7 page faults
per event in `observatory ingest --db`, whose system time was a quarter of its CPU. Measured in alternated runs
(docs/performance.md, twelfth round), with the settings below HTTP ingest's collector CPU per event fell by a fifth
and the bulk command's system time by more than half.

What is set, once per process, before the first batch (`observatory serve`, `ingest`, `demo`; the collector's
`collector started` log line shows it as `allocators`):

* glibc (`mallopt`): a trim threshold of `TRIM_THRESHOLD` and a fixed mmap threshold of `MMAP_THRESHOLD`
  (glibc's largest, half its 64 MiB per-thread heap), so blocks up to 32 MiB are reused from the heaps;
* pyarrow: the system pool (glibc, with the settings above) instead of mimalloc, which cannot be told to keep its
  pages once it is loaded (its options are read from the environment when pyarrow is imported).

The bulk command's readers keep each buffer under the mmap threshold too (`files.READ_BYTES`, `lines.RENDER_ROWS`):
a buffer above it is mapped afresh and faulted in page by page every time (1M NDJSON events read and split in 1.50
CPU-s with 425,000 page faults, 0.41 with 21,000 in 8 MiB blocks: docs/performance.md, forty-ninth round).

DuckDB and polars bring their own allocators and are left as they are. The price is memory the process keeps
after a burst (at most `TRIM_THRESHOLD` per heap top) instead of giving it back. At saturation that price does not
show: under a 512MB DuckDB limit the collector peaked at 847-931 MiB with these settings and at 1,065-1,080 MiB with
the defaults, mimalloc holding more than glibc keeps (docs/performance.md, Ingest, forty-third round).
`OBSERVATORY_TUNE_ALLOCATORS=false` keeps every default.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import pyarrow as pa

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 256 << 20  # as fast as 64 MiB or 1 GiB on the HTTP path (measured), room for a bulk chunk
MMAP_THRESHOLD = 32 << 20  # glibc refuses more (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)

_applied: dict[str, str] | None = None


def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (mallopt's parameters above are glibc's; collector/metrics/process_memory.py
    reads its heap through it), else None."""
    if platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def applied() -> dict[str, str]:
    """What `tune` set in this process (empty when it was not called or set nothing)."""
    return dict(_applied or {})


def tune(enabled: bool = True) -> dict[str, str]:
    """Set the allocators as described above (once per process; later calls return what the first did).

    Returns what was set, for the start-up log: an empty dict when `enabled` is false or nothing applies."""
    global _applied
    if _applied is not None:
        return _applied
    done: dict[str, str] = {}
    if enabled:
        libc = glibc()
        if libc is not None and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 \
                and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1:
            done["glibc"] = f"trim_threshold={TRIM_THRESHOLD} mmap_threshold={MMAP_THRESHOLD}"
        if pa.default_memory_pool().backend_name != "system":
            pa.set_memory_pool(pa.system_memory_pool())
        done["arrow_pool"] = pa.default_memory_pool().backend_name
    _applied = done
    return done
