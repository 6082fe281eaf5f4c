"""What the hardening of issue 13 costs and buys, as figures (no assertions; docs/security.md).

1. Memory: a real collector's resident set before and after N parallel unauthenticated POSTs that declare and
   stream a large body to the Alertmanager webhook (the issue measured +1 GB for one 300 MB body, 2.1 GB peak
   for four), and the bytes the server let through before answering.
2. Validation: events per second of `validate_items` (the HTTP path's contract check, now with the identifier
   and shape checks), median of 5 runs over 5,000 example events.

    python bench/bench_security.py [--mb 300] [--parallel 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.security.rawhttp import stream_until_answer  # noqa: E402
from tests.support import Collector, create_token  # noqa: E402


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise KeyError(field)


def memory(mb: int, parallel: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.yaml"
        create_token(tokens, "t", "ingest")
        col = Collector(Path(tmp) / "b.duckdb", tokens_file=tokens).start()
        try:
            pid = col.proc.pid
            rss0 = _kib(pid, "VmRSS")
            results: list[tuple[int | None, int]] = []

            def attack() -> None:
                results.append(stream_until_answer(col.port, "/v1/alertmanager",
                                                   {"Content-Type": "application/json"}, limit=mb * 1024 * 1024))

            t0 = time.perf_counter()
            threads = [threading.Thread(target=attack) for _ in range(parallel)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            dt = time.perf_counter() - t0
            peak = _kib(pid, "VmHWM")
            print(f"memory: {parallel} x {mb} MB unauthenticated bodies -> statuses {sorted(str(s) for s, _ in results)}, "
                  f"sent before the answer {max(b for _, b in results) / 2**20:.1f} MiB max, "
                  f"RSS {rss0 / 1024:.0f} MiB -> peak {peak / 1024:.0f} MiB (+{(peak - rss0) / 1024:.0f} MiB), "
                  f"{dt:.2f} s")
        finally:
            col.stop()


def validation() -> None:
    from collector.contract.examples import EXAMPLES, example_event
    from collector.contract.validation import validate_items

    items = [example_event(t, i) for i in range(250) for t in EXAMPLES]
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        validate_items(items)
        rates.append(len(items) / (time.perf_counter() - t0))
    print(f"validation: {statistics.median(rates):,.0f} events/s (validate_items, {len(items)} events, median of 5)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=300)
    ap.add_argument("--parallel", type=int, default=4)
    a = ap.parse_args()
    memory(a.mb, a.parallel)
    validation()
