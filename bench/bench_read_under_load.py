"""Reads that wait for the deriver, while clients ingest, with and without a busy neighbour on the host.

    .venv/bin/python bench/bench_read_under_load.py                          # nice 0 and 19, 1 neighbour
    .venv/bin/python bench/bench_read_under_load.py --nice 0,10 --neighbours 0 --reps 3
    .venv/bin/python bench/bench_read_under_load.py --neighbours 0 --env now:OBSERVATORY_DERIVE_DELAY_SECONDS=0 \
        --env half:OBSERVATORY_DERIVE_DELAY_SECONDS=0.5

Why: two settings change when the deriver runs, and reads wait for it. `OBSERVATORY_DERIVE_DELAY_SECONDS` lets
acknowledged events wait before they are folded (a read folds at once whatever waits). `OBSERVATORY_DERIVER_NICE`
lowers the deriver thread's CPU priority. A nice value ranks the thread against every process of the host, so what
it does depends on what else runs there. Each run starts a real collector with the setting (`--nice` values, or
`--env` environments), optionally `--neighbours` CPU-bound processes at the default priority (a busy neighbour),
then 4 clients post `--events` events in 1,000-event requests (bench_ingest's closed loop) while a reader GETs
`/metrics` every 50 ms (it waits until what was acknowledged before it is derived). It prints the events/s
acknowledged and the read latencies, settings alternated. No assertions: it measures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import Server, _bodies, _env_arg, data_files, post_all  # noqa: E402


def _spin(stop: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    while not stop.is_set():  # type: ignore[attr-defined]
        sum(range(10_000))


def run(lines: list[str], workdir: Path, setting: dict[str, str], neighbours: int) -> dict:
    env = dict(os.environ, **setting, OBSERVATORY_METRICS_PUBLIC="true")
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(neighbours)]
    with Server(workdir, env=env) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        headers = {"Authorization": f"Bearer {srv.token}", "Content-Type": "application/x-ndjson"}
        for h in hogs:
            h.start()
        done, reads = threading.Event(), []

        def reader() -> None:
            with httpx.Client(timeout=120) as c:
                while not done.is_set():
                    t0 = time.perf_counter()
                    c.get(url + "/metrics").raise_for_status()
                    reads.append(time.perf_counter() - t0)
                    time.sleep(0.05)

        th = threading.Thread(target=reader)
        th.start()
        try:
            t0 = time.perf_counter()
            res = post_all(url + "/v1/events", headers, _bodies(lines, 1000), 4)
            seconds = time.perf_counter() - t0
        finally:
            done.set()
            th.join()
            stop.set()
            for h in hogs:
                h.join()
    reads.sort()
    return {"eps": res["acked"] / seconds, "reads": len(reads), "p50_ms": 1e3 * reads[len(reads) // 2],
            "max_ms": 1e3 * reads[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--nice", default="0,19", help="deriver nice increments to compare (comma-separated)")
    ap.add_argument("--env", type=_env_arg, action="append", metavar="LABEL[:NAME=VALUE,...]",
                    help="compare these environments instead of --nice (repeat the option)")
    ap.add_argument("--neighbours", type=int, default=1, help="CPU-bound processes beside the collector")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    args = ap.parse_args()
    _, ndjson, _ = data_files(max(args.events, 200_000), args.data_dir, 7)
    with open(ndjson) as f:
        lines = [line.rstrip("\n") for _, line in zip(range(args.events), f)]
    settings = dict(args.env) if args.env else {f"nice {int(x):2d}": {"OBSERVATORY_DERIVER_NICE": str(int(x))}
                                                for x in args.nice.split(",")}
    runs: dict[str, list[dict]] = {label: [] for label in settings}
    for rep in range(args.reps):
        for label, setting in settings.items():
            with tempfile.TemporaryDirectory(dir=args.data_dir) as d:
                r = run(lines, Path(d), setting, args.neighbours)
            runs[label].append(r)
            print(f"rep {rep + 1} {label}: {r['eps']:,.0f} events/s; /metrics while ingesting: {r['reads']} "
                  f"reads, p50 {r['p50_ms']:.0f} ms, max {r['max_ms']:.0f} ms", flush=True)
    print(f"\n{args.events:,} events, 4 clients x 1,000, {args.neighbours} busy neighbour(s), {args.reps} "
          f"repetitions alternated (medians)")
    for label, rs in runs.items():
        print(f"{label}: {statistics.median(r['eps'] for r in rs):,.0f} events/s; /metrics p50 "
              f"{statistics.median(r['p50_ms'] for r in rs):.0f} ms, "
              f"max {statistics.median(r['max_ms'] for r in rs):.0f} ms "
              f"(runs: {', '.join(format(r['eps'], ',.0f') for r in rs)})")


if __name__ == "__main__":
    main()
