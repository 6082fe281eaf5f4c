"""Where each microsecond per event goes, on the HTTP path and the bulk path (py-spy, sampling every thread).

    .venv/bin/python bench/profile_ingest.py                       # this checkout
    .venv/bin/python bench/profile_ingest.py --code /path/to/old   # another checkout of the project, same venv

HTTP: a real `observatory serve` (auth on) runs under `py-spy record`; 4 clients post NDJSON batches of 1,000
events. Bulk: `observatory ingest --db` of an NDJSON file runs under `py-spy record`. Every sample (all threads,
idle ones left out) is attributed to the innermost frame that belongs to one of the stages below; the CPU time of
each stage divided by the events acknowledged gives CPU-µs per event. `--code` runs another checkout's code
(PYTHONPATH) with this checkout's virtualenv, which is how the "before" column of docs/performance.md is made.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import Server, data_files, post_all  # noqa: E402

PY_SPY = str(Path(sys.executable).parent / "py-spy")
RATE = 200  # samples per second per thread

# (stage, substrings of a frame "function (file:line)"), innermost match wins; the order breaks ties in one frame.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("redaction", ("contract/redaction.py",)),
    ("exact path (pydantic)", ("contract/validation.py", "pydantic")),
    ("contract (generated checks)", ("<collector.contract.vectorized.codegen>", "vectorized/codegen.py")),
    ("contract (batch, columns)", ("contract/vectorized/", "contract/bulk.py")),
    ("derived tables + counters SQL", ("storage/derive.py",)),
    ("counters", ("metrics/counters.py",)),
    ("writer: insert, dedup, commit", ("ingest/writer.py",)),
    ("file reading", ("ingest/files.py",)),
    ("body: gzip, split, parse", ("contract/body.py",)),
    ("response, ack", ("ingest/submit.py",)),
    ("auth", ("api/auth.py",)),
    ("route", ("collector/api/",)),
    ("gauges refresh (SQL)", ("metrics/refresher.py", "slo/sli/")),
    ("HTTP server", ("uvicorn", "starlette", "fastapi", "h11", "httptools", "anyio", "asyncio")),
]


# Leaf frames of a thread that waits rather than works (py-spy's own idle detection misses some of them).
IDLE = ("wait (threading.py", "select (selectors.py", "_worker (concurrent/futures/thread.py", "get (queue.py",
        "_take (collector/ingest/writer.py", "sleep", "run_forever", "_run_once (asyncio/base_events.py")


def stage_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, needles in STAGES:
            if any(n in frame for n in needles):
                return name
    return "other (startup, imports, threads)"


def summarise(raw: Path, keep: Path | None = None) -> dict[str, float]:
    """CPU seconds per stage from py-spy's raw (collapsed) output."""
    out: dict[str, float] = collections.defaultdict(float)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if any(frames[-1].startswith(i) or i in frames[-1] for i in IDLE):
            continue
        out[stage_of(frames)] += int(count) / RATE
    return dict(out)


def record(cmd: list[str], out: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(out.with_suffix(".log"), "ab")
    return subprocess.Popen([PY_SPY, "record", "--format", "raw", "--rate", str(RATE), "-o", str(out),
                             "--", *cmd], env=env, stdout=log, stderr=subprocess.STDOUT)


def env_for(code: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code)
    return env


def profile_http(code: Path, lines: list[str], work: Path) -> dict:
    env = env_for(code)
    raw = work / "http.txt"

    class Profiled(Server):
        def _popen(self, cmd: list[str]) -> subprocess.Popen:
            return record(cmd, raw, env)

    bodies = ["\n".join(lines[i:i + 1000]).encode() for i in range(0, len(lines), 1000)]
    with Profiled(work, python=[sys.executable, "-m", "collector.cli"], env=env) as srv:
        url = f"http://127.0.0.1:{srv.port}/v1/events"
        headers = {"Authorization": f"Bearer {srv.token}", "Content-Type": "application/x-ndjson"}
        t0 = time.perf_counter()
        acked = post_all(url, headers, bodies, 4)["acked"]
        seconds = time.perf_counter() - t0
    return {"events": acked, "seconds": seconds, "stages": summarise(raw)}


def profile_bulk(code: Path, ndjson: Path, work: Path) -> dict:
    env = env_for(code)
    raw = work / "bulk.txt"
    db = work / "bulk.duckdb"
    t0 = time.perf_counter()
    proc = record([sys.executable, "-m", "collector.cli", "ingest", str(ndjson), "--db", str(db), "--no-progress"],
                  raw, env)
    proc.wait()
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        raise RuntimeError(raw.with_suffix(".log").read_text()[-2000:])
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    con.close()
    return {"events": events, "seconds": seconds, "stages": summarise(raw)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose code is profiled (default: this one)")
    ap.add_argument("--http-events", type=int, default=60_000)
    ap.add_argument("--bulk-events", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    args = ap.parse_args()
    _, ndjson, n = data_files(args.bulk_events, args.data_dir, args.seed)
    lines = []
    with open(ndjson) as fh:
        for line in fh:
            lines.append(line.rstrip("\n").replace('"id":"', '"id":"prof-', 1))
            if len(lines) >= args.http_events:
                break
    work = Path(tempfile.mkdtemp(prefix="profile-ingest-", dir=args.data_dir))
    try:
        res = {"code": str(args.code), "http": profile_http(args.code, lines, work),
               "bulk": profile_bulk(args.code, ndjson, work)}
    finally:
        for f in ("http.txt", "bulk.txt", "http.log", "bulk.log"):
            if (work / f).exists():
                shutil.copy(work / f, Path("/tmp") / f"profile-{f}")
        shutil.rmtree(work, ignore_errors=True)
    for path in ("http", "bulk"):
        r = res[path]
        print(f"{path}: {r['events']:,} events in {r['seconds']:.1f} s")
        for stage, cpu in sorted(r["stages"].items(), key=lambda x: -x[1]):
            print(f"  {1e6 * cpu / r['events']:8.1f} CPU-us/event  {stage}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
