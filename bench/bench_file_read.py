"""What the bulk command's reading of a file costs before validation: its chunks as `observatory ingest --db` makes
them (NDJSON read and split into lines; Parquet read and rendered as JSON lines), nothing validated or stored.

    .venv/bin/python bench/bench_file_read.py                          # this checkout
    .venv/bin/python bench/bench_file_read.py --before /tmp/before      # and another, alternated

Why: reading is on the command's validating thread (NDJSON) or on the core the writer and the deriver share (the
Parquet read-ahead), so its CPU is the command's. Until the forty-ninth round each chunk's buffers (~57 MiB of text
at 122,880 events) were larger than glibc's mmap threshold (collector/ingest/allocators.py): every chunk was mapped
afresh and faulted in page by page. Each run is a fresh process (`collector/ingest/files.py` of the checkout given,
first on PYTHONPATH, same virtualenv, the allocators set as the command sets them) that reads the whole file and
reports its CPU (user + system) and minor page faults (`report.run_in_checkout`, which checks the checkout's code is
the one imported); medians of `--reps` alternated runs. Written to
docs/performance.md ("Reading a file") unless `--no-write`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import collector  # noqa: E402,F401 - sizes polars' pool as the collector's processes do

from bench_ingest import data_files  # noqa: E402
from report import machine, run_in_checkout, write_section  # noqa: E402

# Runs in the child: the checkout's own reader, as ingest_files_to_db drives it (`_rendered` renders Parquet).
CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from collector.ingest import allocators, files
from collector.storage.db import ROW_GROUP_ROWS
allocators.tune()
inp = files._inspect(Path(sys.argv[1]))
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
chunks = events = 0
for ch in files._rendered(files._chunks(inp, ROW_GROUP_ROWS)):
    chunks += 1
    events += len(ch.data)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu_s": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, "sys_s": r1.ru_stime - r0.ru_stime,
                  "faults": r1.ru_minflt - r0.ru_minflt, "seconds": time.perf_counter() - t0, "chunks": chunks,
                  "events": events}))
"""


def read_once(path: Path, code: Path) -> dict:
    return run_in_checkout(CHILD, [str(path)], code, cwd=code)


def _rev(code: Path) -> str:
    """The commit a checkout is at (what the table names), or its path when git cannot say."""
    out = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or str(code)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--before", type=Path, metavar="CHECKOUT", help="also read with this checkout's code, alternated")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/performance.md alone")
    args = ap.parse_args()
    parquet, ndjson, n = data_files(args.events, args.data_dir, args.seed)
    codes = {"this checkout": ROOT, **({f"before ({_rev(args.before)})": args.before} if args.before else {})}
    rows = []
    for path in (ndjson, parquet):
        runs: dict[str, list[dict]] = {label: [] for label in codes}
        for rep in range(args.reps):
            for label, code in reversed(codes.items()):
                r = read_once(path, code)
                runs[label].append(r)
                print(f"{path.name} {label} rep {rep + 1}: CPU {r['cpu_s']:.2f} s (system {r['sys_s']:.2f}), "
                      f"{r['faults']:,} page faults, {r['chunks']} chunks", flush=True)
        for label, rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs) for k in ("cpu_s", "sys_s", "faults")}
            rows.append(f"| {path.suffix[1:]} | {label} | **{med['cpu_s']:.2f}** | {med['sys_s']:.2f} | "
                        f"{med['faults']:,.0f} | {med['faults'] / n:.2f} | "
                        f"{', '.join(format(r['cpu_s'], '.2f') for r in rs)} |")
            print(rows[-1])
    section = "\n".join([
        "Measured by `bench/bench_file_read.py` (module docstring: what and why).",
        "",
        f"Machine: {machine()}. Command: "
        f"`python bench/bench_file_read.py{' --before CHECKOUT' if args.before else ''} --reps {args.reps}`. "
        f"The bench's {n:,} events read as `observatory ingest --db` reads them (chunks of 122,880 events; Parquet "
        "rendered as JSON lines), nothing validated; a fresh process per run, alternated; medians.",
        "",
        "| file | code | CPU s | system s | minor page faults | per event | CPU runs |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])
    if not args.no_write:
        write_section("file-read", section)


if __name__ == "__main__":
    main()
