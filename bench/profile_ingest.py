"""Where each microsecond per event goes, on the HTTP path and the bulk path (py-spy, sampling every thread).

    .venv/bin/pip install -e '.[bench]'                            # py-spy
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
    # Store.close: the CHECKPOINT at stop (DuckDB writing the WAL into the database file), reached from uvicorn's
    # shutdown; without its own stage it was charged to the HTTP server (47 of 65 µs per event in one run)
    ("final checkpoint (at stop)", ("ingest/store.py",)),
    ("HTTP server", ("uvicorn", "starlette", "fastapi", "h11", "httptools", "anyio", "asyncio")),
]


# Leaf frames of a thread that waits rather than works (py-spy's own idle detection misses some of them).
# `Runner.run` as the leaf is uvloop's event loop in C (no Python frame below it): waiting in epoll, mostly; what it
# does in C (httptools parsing, socket writes) is left out with it.
IDLE = ("wait (threading.py", "select (selectors.py", "_worker (concurrent/futures/thread.py", "get (queue.py",
        "_take (collector/ingest/writer.py", "sleep", "run_forever", "_run_once (asyncio/base_events.py",
        "Runner.run (asyncio/runners.py")


# Frames of an import: a module's first import (pydantic building the contract's models, the compiled checks) is
# start-up whatever module it is in; it was charged to "exact path (pydantic)" (2.2 of 26.4 GIL-µs per event at
# 100,000 HTTP events) and to "HTTP server".
IMPORTING = "(<frozen importlib._bootstrap"
OTHER = "other (startup, imports, threads)"


def stage_of(stack: list[str]) -> str:
    if any(IMPORTING in frame for frame in stack):
        return OTHER
    for frame in reversed(stack):
        for name, needles in STAGES:
            if any(n in frame for n in needles):
                return name
    return OTHER


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


NONBLOCKING: list[str] = []  # --nonblocking: sample without pausing the process
GIL = False  # --gil: sample only the thread holding the GIL (what serialises a process whose threads share it)


def record(cmd: list[str], out: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(out.with_suffix(".log"), "ab")
    return subprocess.Popen([PY_SPY, "record", "--format", "raw", "--rate", str(RATE), "-o", str(out), *NONBLOCKING,
                             *(["--gil"] if GIL else []), "--", *cmd], env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def env_for(code: Path) -> dict[str, str]:
    """The checkout's code first: PYTHONSAFEPATH keeps `python -m` from putting the working directory (this
    checkout) ahead of PYTHONPATH, which would profile this code under the other's name."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code)
    env["PYTHONSAFEPATH"] = "1"
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


def render(runs: dict[str, dict], cmd: str) -> str:
    """One table: CPU-µs per event by stage, before and after, HTTP and bulk."""
    cols = [(label, path) for label in runs for path in ("http", "bulk")]
    stages = sorted({st for r in runs.values() for p in ("http", "bulk") for st in r[p]["stages"]},
                    key=lambda st: -max(runs[lb][p]["stages"].get(st, 0) / runs[lb][p]["events"] for lb, p in cols))
    head = " | ".join(f"{lb} {p}" for lb, p in cols)
    out = [
        "Measured by `bench/profile_ingest.py` (py-spy sampling "
        + ("only the thread of the collector process that holds the GIL" if GIL else
           "every thread of the collector process") +
        f" at {RATE} Hz; a sample is charged to the innermost frame of a known stage; idle waits left out). "
        f"Command: `{cmd}`. " + ("GIL-held µs" if GIL else "CPU-µs") +
        " per acknowledged event; HTTP: 4 clients x 1,000-event NDJSON batches, auth on; bulk: "
        "`observatory ingest --db` of an NDJSON file. \"before\" is the code at the start of issue 11 (commit "
        "75a88d4, `git worktree add /tmp/before 75a88d4`: per-event pydantic on HTTP, DuckDB+polars vectorised "
        "statement on files, JSON extraction in the writer), run with the same virtualenv. The machine is shared: "
        "read the shares, not the absolute figures.",
        "",
        f"| stage | {head} |",
        "|---|" + "---|" * len(cols),
    ]
    for st in stages:
        cells = [f"{1e6 * runs[lb][p]['stages'].get(st, 0) / runs[lb][p]['events']:.1f}" for lb, p in cols]
        out.append(f"| {st} | {' | '.join(cells)} |")
    totals = [f"**{1e6 * sum(runs[lb][p]['stages'].values()) / runs[lb][p]['events']:.1f}**" for lb, p in cols]
    out.append(f"| total | {' | '.join(totals)} |")
    rates = [f"{runs[lb][p]['events'] / runs[lb][p]['seconds']:,.0f}/s" for lb, p in cols]
    out.append(f"| events/s while profiled | {' | '.join(rates)} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose code is profiled (default: this one)")
    ap.add_argument("--before", type=Path, help="also profile this checkout (the code before) and compare")
    ap.add_argument("--http-events", type=int, default=60_000)
    ap.add_argument("--bulk-events", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    ap.add_argument("--no-write", action="store_true", help="leave docs/performance.md alone")
    ap.add_argument("--gil", action="store_true",
                    help="count only samples of the thread holding the GIL: the time one Python thread at a time "
                         "can spend, which bounds the throughput of a process whose threads share the GIL "
                         "(printed only)")
    ap.add_argument("--keep", type=Path, help="copy py-spy's raw samples here (one file per code and path)")
    ap.add_argument("--nonblocking", action="store_true",
                    help="sample without pausing the collector (py-spy --nonblocking): on a machine where pausing "
                         "is slow the profiled process runs at a fraction of its speed and the per-event figures "
                         "swell; the samples may then be slightly inconsistent")
    args = ap.parse_args()
    global GIL, NONBLOCKING
    GIL = args.gil
    NONBLOCKING = ["--nonblocking"] if args.nonblocking else []
    _, ndjson, n = data_files(args.bulk_events, args.data_dir, args.seed)
    lines = []
    with open(ndjson) as fh:
        for line in fh:
            lines.append(line.rstrip("\n").replace('"id":"', '"id":"prof-', 1))
            if len(lines) >= args.http_events:
                break
    runs: dict[str, dict] = {}
    for label, code in ((("before", args.before),) if args.before else ()) + (("after", args.code),):
        work = Path(tempfile.mkdtemp(prefix="profile-ingest-", dir=args.data_dir))
        try:
            runs[label] = {"code": str(code), "http": profile_http(code, lines, work),
                           "bulk": profile_bulk(code, ndjson, work)}
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for path in ("http", "bulk"):
                    shutil.copy(work / f"{path}.txt", args.keep / f"{label}-{path}.txt")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for path in ("http", "bulk"):
            r = runs[label][path]
            print(f"{label} {path}: {r['events']:,} events in {r['seconds']:.1f} s")
            for stage, cpu in sorted(r["stages"].items(), key=lambda x: -x[1]):
                print(f"  {1e6 * cpu / r['events']:8.1f} CPU-us/event  {stage}")
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1))
    cmd = "python bench/profile_ingest.py" + (" --gil" if GIL else "") + (" --nonblocking" if NONBLOCKING else "") + \
        (" --before CHECKOUT" if args.before else "") + \
        f" --http-events {args.http_events} --bulk-events {args.bulk_events}"
    section = render(runs, cmd)
    print(section)
    if not args.no_write and not GIL:  # the docs' table is the CPU profile; a GIL profile is printed only
        from report import write_section

        write_section("profile", section)


if __name__ == "__main__":
    main()
