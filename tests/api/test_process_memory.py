"""The collector's memory beside DuckDB's buffer manager (collector/metrics/process_memory.py): the status parser by
table, the gauges against what the kernel, Arrow's pool and DuckDB's buffer manager say by other routes, and /metrics
exposing them on every scrape."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from collector.metrics import process_memory as pm
from tests.conftest import auth
from tests.support import parse_metrics

MIB = 1 << 20


@pytest.mark.parametrize("text, want", [
    # a Linux status text, abridged: kB are KiB, fields outside the three kinds ignored
    ("Name:\tpython\nVmRSS:\t  300 kB\nRssAnon:\t  200 kB\nRssFile:\t   96 kB\nRssShmem:\t    4 kB\nThreads:\t9\n",
     {"anonymous": 200 * 1024, "file": 96 * 1024, "shared": 4 * 1024}),
    ("RssAnon:\t0 kB\nRssFile:\t12 kB\n", {"anonymous": 0, "file": 12 * 1024}),  # a kernel without RssShmem
    ("Name:\tpython\nVmRSS:\t300 kB\n", {}),  # a kernel before 4.5: no split, nothing exposed
    ("", {}),
])
def test_resident_kinds_parsed_from_a_status_text(text, want):
    assert pm.resident_bytes(text) == want


# Run in a fresh interpreter so that no other test's allocations move the heap while it measures. The allocators are
# set as the collector sets them (Arrow on glibc), then 256 MiB are allocated through Arrow and touched.
_PROBE = textwrap.dedent("""
    import json, re
    from pathlib import Path
    import pyarrow as pa
    from collector.ingest import allocators
    from collector.metrics import process_memory as pm

    allocators.tune()

    def gauges():
        return {f.name: {tuple(s.labels.values()): s.value for s in f.samples} for f in pm.process_memory_metrics()}

    def rss_from_stat():  # /proc/self/statm's resident pages: the kernel's total, another file than status
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

    def smaps_anonymous():  # the page tables walked (smaps_rollup), not status's counters
        m = re.search(r"^Anonymous:\\s+(\\d+) kB", Path("/proc/self/smaps_rollup").read_text(), re.M)
        return int(m.group(1)) * 1024

    import duckdb
    con = duckdb.connect()
    duck_before = gauges()
    con.execute("CREATE TABLE t AS SELECT range AS a, range::VARCHAR AS b FROM range(3000000)")
    duck_held = gauges()
    duck_managed = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0]
    con.execute("DROP TABLE t")
    duck_after = gauges()
    con.close()

    before = gauges()
    buf = pa.allocate_buffer(256 << 20)
    memoryview(buf).cast("B")[::4096] = b"x" * len(range(0, 256 << 20, 4096))  # touch every page
    held = gauges()
    statm, anon = rss_from_stat(), smaps_anonymous()
    del buf
    after = gauges()
    print(json.dumps({"before": {k: list(v.items()) for k, v in before.items()},
                      "held": {k: list(v.items()) for k, v in held.items()},
                      "after": {k: list(v.items()) for k, v in after.items()},
                      "duck_before": {k: list(v.items()) for k, v in duck_before.items()},
                      "duck_held": {k: list(v.items()) for k, v in duck_held.items()},
                      "duck_after": {k: list(v.items()) for k, v in duck_after.items()},
                      "duck_managed": duck_managed, "statm": statm, "smaps_anonymous": anon}))
""")


def _probe() -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    raw = json.loads(out)
    return {**{k: {n: {tuple(lab): v for lab, v in fam} for n, fam in raw[k].items()}
               for k in ("before", "held", "after", "duck_before", "duck_held", "duck_after")},
            **{k: raw[k] for k in ("duck_managed", "statm", "smaps_anonymous")}}


needs_linux_glibc_jemalloc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or pm._mallinfo2() is None or pm._duckdb_mallctl() is None,
    reason="needs Linux, glibc and DuckDB's jemalloc")


@needs_linux_glibc_jemalloc
def test_gauges_follow_an_allocation_as_the_kernel_and_the_pool_see_it():
    got = _probe()
    held, before, after = got["held"], got["before"], got["after"]
    resident = held["observatory_resident_memory_bytes"]
    # the kinds add up to the kernel's resident total, read from another file (within what moves between the reads)
    assert abs(sum(resident.values()) - got["statm"]) < 8 * MIB, (resident, got["statm"])
    # anonymous as the page-table walk counts it (status's counters lag by per-CPU batches)
    assert abs(resident[("anonymous",)] - got["smaps_anonymous"]) < 8 * MIB
    grew = resident[("anonymous",)] - before["observatory_resident_memory_bytes"][("anonymous",)]
    assert 250 * MIB < grew < 300 * MIB, grew  # the touched buffer, now resident
    # Arrow's pool holds exactly the buffer (Arrow rounds to 64 bytes), and gives it back
    arrow = "observatory_arrow_allocated_bytes"
    assert held[arrow][()] - before[arrow][()] == 256 << 20
    assert after[arrow][()] == before[arrow][()]
    # glibc's heap has it in use while held (Arrow's system pool allocates through glibc), and no longer after
    heap = "observatory_malloc_bytes"
    assert held[heap][("in_use",)] - before[heap][("in_use",)] >= 256 << 20
    assert held[heap][("in_use",)] - after[heap][("in_use",)] >= 256 << 20
    # ... and not in DuckDB's allocator, which holds what DuckDB's buffer manager says it holds, and not in glibc's
    duck = "observatory_duckdb_allocator_bytes"
    assert abs(held[duck][("in_use",)] - before[duck][("in_use",)]) < 4 * MIB
    grew = got["duck_held"][duck][("in_use",)] - got["duck_before"][duck][("in_use",)]
    assert got["duck_managed"] > 20 * MIB and abs(grew - got["duck_managed"]) < 0.1 * got["duck_managed"], (
        grew, got["duck_managed"])
    assert got["duck_held"][heap][("in_use",)] - got["duck_before"][heap][("in_use",)] < 0.2 * grew
    # dropping the table gives its blocks back to DuckDB's allocator, which keeps their pages: in use falls, free
    # rises by as much
    assert got["duck_held"][duck][("in_use",)] - got["duck_after"][duck][("in_use",)] > 0.9 * got["duck_managed"]
    assert got["duck_after"][duck][("free",)] - got["duck_held"][duck][("free",)] > 0.5 * got["duck_managed"]


def test_a_platform_without_proc_glibc_or_duckdbs_jemalloc_exposes_only_arrows_pool(monkeypatch, tmp_path):
    monkeypatch.setattr(pm, "STATUS", tmp_path / "absent")
    monkeypatch.setattr(pm, "_mallinfo2", lambda: None)
    monkeypatch.setattr(pm, "_duckdb_mallctl", lambda: None)
    assert [f.name for f in pm.process_memory_metrics()] == ["observatory_arrow_allocated_bytes"]


@needs_linux_glibc_jemalloc
def test_metrics_exposes_where_the_memory_is_on_every_scrape(client):
    """Read per scrape (the live part), not cached with the counters: two scrapes around an allocation differ."""
    import pyarrow as pa

    first = parse_metrics(client.get("/metrics", headers=auth("read")).text)
    kinds = {dict(labels)["kind"] for (n, labels) in first if n == "observatory_resident_memory_bytes"}
    assert kinds == {"anonymous", "file", "shared"}
    for name in ("observatory_malloc_bytes", "observatory_duckdb_allocator_bytes"):
        assert {dict(labels)["state"] for (n, labels) in first if n == name} == {"in_use", "free"}, name
    assert first[("observatory_resident_memory_bytes", (("kind", "file"),))] > MIB  # Python's and DuckDB's code
    buf = pa.allocate_buffer(64 << 20)
    second = parse_metrics(client.get("/metrics", headers=auth("read")).text)
    key = ("observatory_arrow_allocated_bytes", ())
    # the buffer, within what the app's own threads allocate or free between the two scrapes (a start-up pass
    # freed 3,264 bytes of Arrow's memory there in one CI run)
    assert abs(second[key] - first[key] - (64 << 20)) < MIB
    del buf
    assert client.get("/metrics").status_code == 401
