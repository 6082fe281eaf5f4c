"""Throughput of the ingest secret redactor (collector/redaction.py).

Prints strings per second for clean strings (the common case: one prefilter
search), for strings carrying a secret (prefilter + detectors + rebuild), for
redact_value on a whole event, and for the polars prefilter on a column.
Figures only, no assertions.

    python bench/bench_redaction.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.contract.redaction import PREFILTER_PATTERN, has_candidate, redact_text, redact_value  # noqa: E402

_rnd = random.Random(7)


def _fake(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rnd.choice(alphabet) for _ in range(n))


CLEAN = [
    "KeyError: 'customer_id'",
    "ZeroDivisionError: division by zero in compute_ratio()",
    "Cell 14 failed after 12.3 s: merge of daily_orders with dim_customers produced 0 rows",
    "ConnectionError: HTTPSConnectionPool(host='api.example.com', port=443): Max retries exceeded with url: /v1/data",
    "Traceback (most recent call last):\n  File \"/home/jovyan/work/etl.py\", line 42, in <module>\n"
    "    df = load(path)\nFileNotFoundError: [Errno 2] No such file or directory: 's3://bucket/raw/2024-01-01.parquet'",
    "kernel restarted: OOM while running cell 7 (max_memory_bytes=8589934592)",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "ok",
]
SECRET = [
    "boto3 failed with key AKIA" + _fake(16, string.ascii_uppercase + "234567") + " in eu-west-1",
    "could not connect to postgresql://etl:S3cr3t" + _fake(6) + "@db.internal:5432/warehouse",
    "git push rejected for ghp_" + _fake(36),
    'config: {"user": "etl", "password": "Tr0ub4dor' + _fake(4) + '", "port": 5432}',
    "Authorization: Bearer " + _fake(48),
    "id_token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJub3RlYm9vayJ9." + _fake(43),
]
EVENT = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "jupyter://hub-a",
    "type": "notebook.run.failed",
    "data": {
        "run_id": "r-1",
        "notebook_id": "nb-1",
        "team": "growth",
        "error_type": "KeyError",
        "error_message": "KeyError: 'customer_id'",
        "output_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "parameters": {"run_date": "2024-01-01", "limit": 1000, "region": "eu"},
        "cells": [{"index": i, "duration_seconds": 0.1, "status": "ok"} for i in range(5)],
    },
}
SKIP = frozenset({"id", "run_id", "notebook_id", "output_hash", "input_hash"})


def _rate(fn, items: list, seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for item in items:
            fn(item)
        n += len(items)
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = ap.parse_args()
    avg_clean = sum(map(len, CLEAN)) / len(CLEAN)
    avg_secret = sum(map(len, SECRET)) / len(SECRET)
    rows = []

    def report(what: str, rate: float, unit: str) -> None:
        rows.append((what, rate, unit))
        print(f"{what:<55} {rate:>12,.0f} {unit}/s")

    report(f"has_candidate, clean strings (avg {avg_clean:.0f} chars)",
           _rate(has_candidate, CLEAN, args.seconds), "strings")
    report(f"redact_text, clean strings (avg {avg_clean:.0f} chars)", _rate(redact_text, CLEAN, args.seconds),
           "strings")
    report(f"redact_text, strings with secrets (avg {avg_secret:.0f} chars)",
           _rate(redact_text, SECRET, args.seconds), "strings")
    report("redact_value, clean run.failed event",
           _rate(lambda e: redact_value(e, skip_keys=SKIP), [EVENT], args.seconds), "events")
    import polars as pl

    column = pl.Series((CLEAN * 12_500)[:100_000])
    t0 = time.perf_counter()
    reps = 0
    while time.perf_counter() - t0 < args.seconds:
        column.str.contains(PREFILTER_PATTERN)
        reps += 1
    report("polars str.contains(PREFILTER_PATTERN), clean", reps * len(column) / (time.perf_counter() - t0),
           "strings")
    from bench.report import machine, write_section

    lines = [f"Machine: {machine()}. Command: `python bench/bench_redaction.py --seconds {args.seconds}`.", "",
             "| path | rate |", "|---|---:|"]
    lines += [f"| {what} | {rate:,.0f} {unit}/s |" for what, rate, unit in rows]
    write_section("redaction", "\n".join(lines))


if __name__ == "__main__":
    main()
