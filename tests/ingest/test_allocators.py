"""The process's allocators keep freed memory for the next batch (collector/ingest/allocators.py).

The settings are process-wide, so each case runs in a fresh interpreter. What is checked is the behaviour the
module exists for, counted by the kernel: a batch's per-event objects (JSON texts of a few hundred bytes, above
CPython's small-object allocator, and the Arrow column made of them), made again once the last batch's were freed,
fault in far fewer fresh pages when the allocators are set than with their defaults. Then that the collector sets
them at start and that `OBSERVATORY_TUNE_ALLOCATORS=false` leaves every default.

The probe used to be the validator itself; since the validator writes a batch's stored texts into one buffer
(vectorized/validator.py `json_texts`, fifteenth round), it faults about as little either way, so the probe is
now what other per-event paths still do (the exact path's rows, the JSON columns of cells and tags, the native
adapters' items).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import Collector, metric_sum, parse_metrics

ROOT = Path(__file__).resolve().parents[2]

# Makes and frees the JSON texts of a ~16,000-event batch and their Arrow column six times; prints what tune() set
# and the minor page faults of each pass.
_PROBE = """
import json, resource, sys, time
from collector.ingest import allocators
applied = allocators.tune(sys.argv[1] == "1")
import orjson
import pyarrow as pa
from tests.contract.test_bulk_equivalence import _gen_events
gen = _gen_events()
items = [orjson.loads(s) for s in gen.to_ndjson_lines(gen.generate(16_000, seed=5)).to_list()]
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    texts = [orjson.dumps(x) for x in items]
    column = pa.array(texts, pa.binary())
    assert len(column) == len(items) > 15_000
    del texts, column
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    time.sleep(0.05)  # longer than mimalloc's purge delay (10 ms): a pool that gives pages back has done so
print(json.dumps({"applied": applied, "pool": pa.default_memory_pool().backend_name, "faults": faults}))
"""


def _probe(tuned: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, "1" if tuned else "0"], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")
def test_a_batch_made_again_reuses_the_memory_the_last_one_freed():
    tuned, default = _probe(True), _probe(False)
    assert tuned["applied"]["glibc"] == "trim_threshold=268435456 mmap_threshold=33554432"
    assert tuned["pool"] == "system"
    assert default["applied"] == {} and default["pool"] != "system"
    # The first pass faults in its working set either way; the later ones show what was given back meanwhile.
    steady_tuned = sorted(tuned["faults"][2:])[1]
    steady_default = sorted(default["faults"][2:])[1]
    assert steady_tuned * 2 < steady_default, (tuned["faults"], default["faults"])


def test_tune_sets_once_per_process():
    code = ("from collector.ingest import allocators; a = allocators.tune(True); b = allocators.tune(False); "
            "print(a == b and bool(a))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("flag", ["true", "false"])
def test_the_collector_says_at_start_what_it_set(tmp_path: Path, flag: str):
    c = Collector(db=tmp_path / "o.duckdb", env={"OBSERVATORY_TUNE_ALLOCATORS": flag,
                                                 "OBSERVATORY_METRICS_PUBLIC": "true"}).start()
    try:
        lines = [json.loads(x) for x in c.logs().splitlines() if x.startswith("{")]
        # what the process keeps is visible where an operator looks (docs/operations.md, troubleshooting)
        rss = metric_sum(parse_metrics(httpx.get(c.url + "/metrics").text), "process_resident_memory_bytes")
    finally:
        c.stop()
    assert rss > 50 * 2**20
    [line] = [x for x in lines if x.get("msg") == "collector started"]
    if flag == "false":
        assert line["allocators"] == {}
    else:
        assert line["allocators"]["arrow_pool"] == "system"
