"""Which thread holds the GIL, and for how long: in the bulk command, and in the collector under the HTTP bench.

    .venv/bin/python bench/gil_share.py                     # both, 3 repetitions, writes its section of performance.md
    .venv/bin/python bench/gil_share.py --no-write --reps 1 --bulk-events 200000

Why: the fifty-third round (bench/bench_cores.py) found that validation pays for a thread of its own process that
runs Python beside it, and inferred, by elimination, that the GIL the collector's other Python threads hold is the
rest of validation's extra cost there. It did not measure that inside the collector or the command. This does.
py-spy samples the process (`record --gil --threads --nonblocking`: only the thread that holds the GIL, without
stopping the process) at `--rate` Hz. The number of samples a thread holds, over the rate, is the time it held
the GIL. Over the window, that is its share of the wall clock. Each thread's CPU seconds over the same window come
from /proc, for the share of its CPU it spent holding the GIL (the rest is C code that let go of it: DuckDB's
statements, polars, Arrow's readers).

- `bulk`: `observatory ingest --db` of the bench's Parquet file (`--bulk-events`), started by py-spy. The window is
  the command's whole run.
- `http`: bench_ingest.py's closed loop (4 clients, 1,000-event NDJSON requests, auth on, the default answer) against
  a real `observatory serve`, `--http-events` events. py-spy attaches after the warm-up. The window runs from its
  start to the last answer.

Medians of `--reps` repetitions, per thread name (the collector's validation threads, `AnyIO worker thread`, are
summed). py-spy costs the sampled process a little (it reads its memory while it runs). Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import machine, write_section  # noqa: E402
from thread_cpu import _sample  # noqa: E402

SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def _spy(rate: int, out: Path, target: list[str]) -> list[str]:
    return [SPY, "record", "--gil", "--threads", "--nonblocking", "--rate", str(rate), "--format", "raw",
            "--output", str(out), *target]


def holders(folded: Path) -> dict[int, tuple[str, int, collections.Counter]]:
    """tid -> (thread name, samples holding the GIL, samples per innermost Python function) from py-spy's raw
    output. A thread's first samples may lack its name (sampled before Python named it): its tid joins them."""
    names: dict[int, str] = {}
    counts: collections.Counter = collections.Counter()
    leaves: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in folded.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        head = frames[0]  # "thread (TID): NAME" or "thread (TID)"
        tid = int(head.split("(", 1)[1].split(")", 1)[0], 0)
        if ": " in head:
            names[tid] = head.split(": ", 1)[1]
        counts[tid] += int(n)
        leaf = frames[-1].split(" (")[0] if len(frames) > 1 else "(no Python frame)"
        leaves[tid][leaf] += int(n)
    return {t: (names.get(t, f"thread {t}"), counts[t], leaves[t]) for t in counts}


def _cpu(pid: int) -> dict[int, float]:
    return {t: c for t, (_, c) in _sample(pid).items()}


def _by_name(held: dict[int, tuple[str, int, collections.Counter]], rate: int, cpu: dict[int, float],
             window: float) -> dict[str, dict]:
    """Per thread name: GIL seconds, CPU seconds over the window, threads, innermost functions while holding."""
    out: dict[str, dict] = {}
    for tid, (name, n, leaves) in held.items():
        row = out.setdefault(name, {"gil_s": 0.0, "cpu_s": 0.0, "threads": 0, "leaves": collections.Counter()})
        row["gil_s"] += n / rate
        row["cpu_s"] += cpu.get(tid, 0.0)
        row["threads"] += 1
        row["leaves"].update(leaves)
    for row in out.values():
        row["share"] = row["gil_s"] / window
    return out


def bulk_once(events: int, rate: int, data_dir: Path) -> dict:
    from bench_ingest import data_files

    parquet, _, _ = data_files(events, data_dir, 7)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gil.txt"
        cmd = [sys.executable, "-m", "collector.cli", "ingest", str(parquet), "--db", str(Path(tmp) / "b.duckdb"),
               "--no-progress"]
        t0 = time.perf_counter()
        spy = subprocess.Popen(_spy(rate, out, ["--", *cmd]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=ROOT)
        cpu: dict[int, float] = {}
        while spy.poll() is None:  # the command is py-spy's child: its threads' CPU until it ends
            kids = Path(f"/proc/{spy.pid}/task/{spy.pid}/children")
            with_kids = kids.read_text().split() if kids.exists() else []
            if with_kids:
                cpu.update(_cpu(int(with_kids[0])))
            time.sleep(0.05)
        window = time.perf_counter() - t0
        return {"window": window, "threads": _by_name(holders(out), rate, cpu, window)}


def http_once(n: int, rate: int, data_dir: Path) -> dict:
    import httpx

    from bench_ingest import _bodies, _server, data_files, post_all

    _, ndjson, _ = data_files(n, data_dir, 7)
    lines = ndjson.read_text().splitlines()[:n]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gil.txt"
        with _server(Path(tmp), None) as srv:
            url = f"http://127.0.0.1:{srv.port}/v1/events"
            headers = {"Authorization": f"Bearer {srv.token}", "Content-Type": "application/x-ndjson"}
            httpx.post(url, content="\n".join(lines[:10]).encode(), headers=headers, timeout=60).raise_for_status()
            cpu0 = _cpu(srv.pid)
            t0 = time.perf_counter()
            spy = subprocess.Popen(_spy(rate, out, ["--pid", str(srv.pid)]), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # py-spy attached
            res = post_all(url, headers, _bodies(lines, 1000), 4)
            window = time.perf_counter() - t0
            cpu1 = _cpu(srv.pid)
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        cpu = {t: c - cpu0.get(t, 0.0) for t, c in cpu1.items()}
        return {"window": window, "eps": res["acked"] / window, "threads": _by_name(holders(out), rate, cpu, window)}


def summarize(runs: list[dict]) -> list[dict]:
    """Per thread name, medians over the runs (a thread absent from a run counts as 0), busiest first."""
    names = {name for r in runs for name in r["threads"]}
    rows = []
    for name in names:
        got = [r["threads"].get(name) for r in runs]
        leaves: collections.Counter = collections.Counter()
        for g in got:
            if g:
                leaves.update(g["leaves"])
        med = lambda k: statistics.median(g[k] if g else 0.0 for g in got)  # noqa: E731
        rows.append({"name": name, "gil_s": med("gil_s"), "share": med("share"), "cpu_s": med("cpu_s"),
                     "threads": max((g["threads"] for g in got if g), default=0),
                     "leaves": [f for f, _ in leaves.most_common(3)]})
    return sorted(rows, key=lambda r: -r["gil_s"])


def table(title: str, runs: list[dict], rows: list[dict]) -> str:
    windows = ", ".join(f"{r['window']:.1f}" for r in runs)
    held = statistics.median(sum(t["share"] for t in r["threads"].values()) for r in runs)
    lines = [f"**{title}**: windows {windows} s; the GIL held {held:.0%} of the window (median)", "",
             "| thread | GIL held, s | share of the window | its CPU, s | held / CPU "
             "| innermost functions while holding |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if r["gil_s"] < 0.02:
            continue
        ratio = f"{r['gil_s'] / r['cpu_s']:.2f}" if r["cpu_s"] >= 0.05 else "–"
        who = r["name"] + (f" (×{r['threads']})" if r["threads"] > 1 else "")
        lines.append(f"| {who} | {r['gil_s']:.2f} | {r['share']:.1%} | {r['cpu_s']:.2f} | {ratio} | "
                     f"{', '.join(f'`{f}`' for f in r['leaves'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--bulk-events", type=int, default=1_000_000)
    ap.add_argument("--http-events", type=int, default=200_000)
    ap.add_argument("--only", choices=("bulk", "http"))
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    if not Path(SPY).exists():
        sys.exit("py-spy is needed: .venv/bin/pip install py-spy")
    runs: dict[str, list[dict]] = {"bulk": [], "http": []}
    for i in range(a.reps):  # the two alternated, each repetition a fresh process and database
        for kind in ("bulk", "http"):
            if a.only and kind != a.only:
                continue
            r = bulk_once(a.bulk_events, a.rate, a.data_dir) if kind == "bulk" else \
                http_once(a.http_events, a.rate, a.data_dir)
            runs[kind].append(r)
            print(f"{kind} {i + 1}: window {r['window']:.1f} s" + (f", {r['eps']:,.0f} events/s" if "eps" in r else ""),
                  flush=True)
    parts = [f"`python bench/gil_share.py{'' if a.reps == 3 else f' --reps {a.reps}'}` ({machine()}; py-spy at "
             f"{a.rate} Hz, {a.reps} repetitions, medians)"]
    if runs["bulk"]:
        parts.append(table(f"`observatory ingest --db`, {a.bulk_events:,} Parquet events", runs["bulk"],
                           summarize(runs["bulk"])))
    if runs["http"]:
        eps = statistics.median(r["eps"] for r in runs["http"])
        parts.append(table(f"`observatory serve` under the HTTP bench, {a.http_events:,} events "
                           f"({eps:,.0f} events/s while sampled)", runs["http"], summarize(runs["http"])))
    md = "\n\n".join(parts)
    print(md)
    if not a.no_write:
        write_section("gil_share", md)


if __name__ == "__main__":
    main()
