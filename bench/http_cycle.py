"""Where the HTTP bench's request cycle goes: each stage of the four clients' lock-step, timed in the collector.

    .venv/bin/python bench/http_cycle.py                             # 200,000 events, the bench's (a)
    .venv/bin/python bench/http_cycle.py --events 600000 --parts 4   # past the first checkpoints, by quarter
    .venv/bin/python bench/http_cycle.py --prefer return=minimal     # the clients asking for the minimal answer

The closed loop of bench_ingest.http_run (4 clients, 1,000-event NDJSON requests, auth on, a real `observatory
serve`), with the collector started through this file, which wraps a few of its functions to log when each stage
of each request and each transaction begins and ends (perf_counter, one clock for every process on the machine)
and the CPU time of the thread doing it:

- a request's validation (`collector.api.ingest._prepare`, on a worker thread);
- the writer's group commits (`Writer._commit_group`: the insert of the group's events, `_insert_events`,
  then dead letters, counters, `ingest_batches`, COMMIT, the answers), and the deriver's passes (`Writer._derive`);
- in the bench's clients, each request's send and answer and the parse of the answer.

From these it prints the cycle: from a group commit's end to its next one's start, the time until the first
request of the next group is being validated (the answers, the clients' turnaround, the next requests' arrival),
the validation of the group (first start to last end), and the commit itself; per part of the run (`--parts`), so
that the checkpoints DuckDB runs inside a commit every 128 MB of WAL show (a commit's longest). The wrappers cost a
few microseconds per request; the throughput printed is that of the wrapped collector. Written to
docs/performance.md between `<!-- bench:http_cycle:start -->` and `<!-- bench:http_cycle:end -->` unless
`--no-write`. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from stages import MARKER, StageLog, collector_process, read

ROOT = Path(__file__).resolve().parents[1]
LOG = "HTTP_CYCLE_LOG"  # the collector's stage log, when it runs through this file


def _install(path: str) -> None:
    """In the collector's process: wrap the stages, each appending one line to `path` when it ends."""
    import collector.api.ingest as api
    from collector.ingest.writer import Writer

    log = StageLog(path)
    if hasattr(api, "_prepare_many"):  # requests waiting for validation are validated in one call
        api._prepare_many = log.timed("validate", api._prepare_many)
    else:
        api._prepare = log.timed("validate", api._prepare)
    Writer._commit_group = log.timed("commit", Writer._commit_group)
    Writer._insert_events = log.timed("insert", Writer._insert_events)
    Writer._derive = log.timed("derive", Writer._derive)


def _ms(xs: list[float]) -> str:
    return f"{1e3 * statistics.median(xs):.1f}" if xs else "–"


def analyse(rows: dict[str, list[tuple[float, ...]]], parts: int) -> list[dict]:
    """The cycle's stages, medians per part of the run (by when each group commit began)."""
    commits = [c for c in rows.get("commit", []) if c[1] - c[0] > 0]
    validations, inserts = rows.get("validate", []), rows.get("insert", [])
    derives, clients = rows.get("derive", []), rows.get("client", [])
    if len(commits) < 3:
        return []
    t0, t1 = commits[0][0], commits[-1][1]
    out = []
    for p in range(parts):
        lo, hi = t0 + (t1 - t0) * p / parts, t0 + (t1 - t0) * (p + 1) / parts
        mine = [c for c in commits if lo <= c[0] < hi]
        turn, span, cycle = [], [], []
        for prev, nxt in zip(commits, commits[1:]):
            if not lo <= nxt[0] < hi:
                continue
            cycle.append(nxt[0] - prev[0])
            between = [v for v in validations if prev[1] <= v[0] <= nxt[0]]
            if between:
                turn.append(min(v[0] for v in between) - prev[1])
                span.append(max(v[1] for v in between) - min(v[0] for v in between))
        vs = [v for v in validations if lo <= v[0] < hi]
        ins = [i for i in inserts if lo <= i[0] < hi]
        ds = [d for d in derives if lo <= d[0] < hi]
        cl = [c for c in clients if lo <= c[0] < hi]
        out.append({
            "part": p + 1, "seconds": hi - lo, "groups": len(mine),
            "cycle_ms": _ms(cycle), "turnaround_ms": _ms(turn), "validation_span_ms": _ms(span),
            "validation_ms": _ms([v[1] - v[0] for v in vs]), "validation_cpu_ms": _ms([v[2] for v in vs]),
            "commit_ms": _ms([c[1] - c[0] for c in mine]), "insert_ms": _ms([i[1] - i[0] for i in ins]),
            "longest_commit_ms": f"{1e3 * max(c[1] - c[0] for c in mine):.0f}" if mine else "–",
            "client_parse_ms": _ms([c[2] - c[1] for c in cl]),
            "derive_passes": len(ds), "derive_ms": _ms([d[1] - d[0] for d in ds]),
            "derive_cpu_ms": _ms([d[2] for d in ds]),
            "deriver_busy": f"{sum(d[1] - d[0] for d in ds) / (hi - lo):.0%}",
        })
    return out


def run(events: int, prefer: str | None, log: Path, data_dir: Path, seed: int) -> dict:
    """The bench's (a) against a collector started through this file; the clients' send, answer and parse logged."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    import httpx

    import bench_ingest as bi

    lines = bi.head_lines(bi.data_files(events, data_dir, seed)[1], events).to_pylist()
    lines = [x if isinstance(x, str) else x.decode() for x in lines]
    lock = threading.Lock()
    original = httpx.Client.post

    def post(self, *a, **k):  # the clients' side of each request
        t0 = time.perf_counter()
        r = original(self, *a, **k)
        t1 = time.perf_counter()
        doc = r.json()
        t2 = time.perf_counter()
        with lock, open(log, "a") as fh:
            fh.write(f"client {t0:.6f} {t1:.6f} {t2:.6f}\n")
        r.json = lambda: doc
        return r

    httpx.Client.post = post
    launcher = [sys.executable, str(Path(__file__).resolve()), MARKER]
    original_server = bi._server
    bi._server = lambda workdir, code, env=None: bi.Server(workdir, python=launcher,
                                                            env=dict(os.environ, **(env or {}), **{LOG: str(log)}))
    try:
        with tempfile.TemporaryDirectory() as d:
            return bi.http_run(lines, Path(d), prefer=prefer)
    finally:
        httpx.Client.post, bi._server = original, original_server


def render(result: dict, stages: list[dict], events: int, prefer: str | None, cmd: str) -> str:
    head = ["part", "groups", "cycle", "turnaround", "validation of the group", "one request's validation (CPU)",
            "group commit (insert)", "longest commit", "client's parse of an answer", "derive passes (CPU)",
            "deriver busy"]
    out = [
        f"Measured by `bench/http_cycle.py` (command: `{cmd}`): {events:,} events, 4 clients posting 1,000-event "
        f"NDJSON requests back to back, auth on{', `Prefer: ' + prefer + '`' if prefer else ''}; "
        f"{result['eps']:,.0f} events/s acknowledged, collector {result['server_cpu_us']:.1f} CPU-µs per event. "
        "Medians in ms per part of the run; a cycle is from one group commit's start to the next's; the "
        "turnaround from a commit's end to the first validation of the next group (the answers, the clients' "
        "parse and next post, the request's arrival).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for s in stages:
        out.append(
            f"| {s['part']} | {s['groups']} | {s['cycle_ms']} | {s['turnaround_ms']} | {s['validation_span_ms']} | "
            f"{s['validation_ms']} ({s['validation_cpu_ms']}) | {s['commit_ms']} ({s['insert_ms']}) | "
            f"{s['longest_commit_ms']} | {s['client_parse_ms']} | {s['derive_passes']} x {s['derive_ms']} "
            f"({s['derive_cpu_ms']}) | {s['deriver_busy']} |")
    return "\n".join(out) + "\n"


def main() -> None:
    if collector_process(LOG, _install):
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--parts", type=int, default=1, help="report the run in this many parts of equal time")
    ap.add_argument("--prefer", default=None, help="the clients' Prefer header, e.g. return=minimal")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "stages.log"
        result = run(args.events, args.prefer, log, args.data_dir, args.seed)
        stages = analyse(read(log), max(1, args.parts))
    cmd = "python bench/http_cycle.py" + ("" if args.events == 200_000 else f" --events {args.events}") + \
        ("" if args.parts == 1 else f" --parts {args.parts}") + (f" --prefer {args.prefer}" if args.prefer else "")
    section = render(result, stages, args.events, args.prefer, cmd)
    print(section)
    if not args.no_write:
        sys.path.insert(0, str(ROOT / "bench"))
        from report import write_section

        write_section("http_cycle", section)
        print("written to docs/performance.md")


if __name__ == "__main__":
    main()
