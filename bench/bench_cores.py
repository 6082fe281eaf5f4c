"""What a second busy process or thread costs a first on this machine: are the 2 cores worth two of this work?

    .venv/bin/python bench/bench_cores.py                  # writes its section of docs/performance.md
    .venv/bin/python bench/bench_cores.py --no-write --reps 3 --seconds 4

Why: validation costs ~8 CPU-us per event inside the collector and ~6 alone (docs/performance.md, fiftieth round),
and the bulk command's main thread ~9 CPU-s where its validation alone takes ~5. Inside one process, part of that is
the GIL (bench/bench_gil_convoy.py). The rest was put down to the work sharing the 2 cores and their caches, which
no measurement had separated from the GIL. This one does: each workload runs alone, then beside a second busy
workload either in another process (no GIL in common: what the shared hardware costs) or on a second thread of
its own process (what the collector does), and what it gets done is counted per CPU second of its own thread.

Workloads (each repeats one unit of work until the time is up; set up before the common start, not timed):
- `spin`: pure Python bytecode (a loop of 10**5 additions), no memory traffic to speak of;
- `validate`: the collector's validator on 1,000-line NDJSON requests of the bench's events (the HTTP shape);
- `insert`: the writer's statement, 4,000 already-valid events (a group commit's worth) inserted into `events` of
  a fresh database file (the product's migrations) and committed, DuckDB on one thread (the collector on 2 cores).

A pair starts both at one wall-clock instant and times the same window in each. The figures are CPU-us per unit
(the thread's CPU clock over the units done; DuckDB runs on the calling thread at one thread) and units per wall
second; their ratio to the workload alone in the same repetition says what the neighbour costs. A workload that
only waits for a core (or for the GIL) keeps its CPU per unit and loses wall rate; one that shares caches or memory
bandwidth, or a host core's sibling, costs more CPU per unit. Medians of `--reps` repetitions, the configurations
alternated within each. No assertions: it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import machine, write_section  # noqa: E402

WORKLOADS = {"spin": "10**5 additions in Python", "validate": "1,000-line request validated",
             "insert": "4,000-event group inserted and committed"}
# (workload measured, its neighbour or None, where the neighbour runs): each row of the table
Config = tuple[str, "str | None", str]
CONFIGS: tuple[Config, ...] = (
    ("spin", None, ""), ("spin", "spin", "process"),
    ("validate", None, ""), ("validate", "spin", "process"), ("validate", "validate", "process"),
    ("validate", "insert", "process"), ("validate", "spin", "thread"), ("validate", "insert", "thread"),
    ("insert", None, ""), ("insert", "validate", "process"), ("insert", "insert", "process"),
    ("insert", "validate", "thread"))
UNITS = {"spin": 1, "validate": 1000, "insert": 4000}  # events (or loops) per unit
SETUP_SECONDS = 6.0  # imports, the validator's compiled checks, the staged rows: before the common start


def _unit(workload: str, workdir: Path) -> Callable[[], object]:
    """The workload's unit of work as a function of no arguments (its setup done here)."""
    if workload == "spin":
        def spin() -> None:
            x = 0
            for i in range(100_000):
                x += i
        return spin
    from bench_ingest import data_files, head_lines
    from collector.contract.vectorized import BulkValidator

    _, ndjson, _ = data_files(20000, ROOT / "var" / "bench", 7)
    lines = head_lines(ndjson, 4000)
    validator = BulkValidator()
    if workload == "validate":
        request = lines.slice(0, 1000)
        return lambda: validator.validate_lines(request)
    from collector.storage import db
    from collector.storage.schema import STORED_COLUMNS

    staged = validator.validate_lines(lines).table
    con = db.connect(workdir / "insert.duckdb")
    con.execute("SET threads = 1")
    con.register("staged", staged)
    batch = [0]

    def insert() -> None:
        batch[0] += 1
        con.execute("BEGIN TRANSACTION")
        con.execute(f"INSERT INTO events ({STORED_COLUMNS}, ingested_at, batch_id) "
                    f"SELECT {STORED_COLUMNS}, now(), $b FROM staged", {"b": batch[0]})
        con.execute("COMMIT")
    return insert


def _timed(unit: Callable[[], object], start: float, seconds: float, out: dict) -> None:
    """Run `unit` from wall-clock `start` for `seconds`: units done, this thread's CPU and the wall seconds."""
    delay = start - time.time()
    if delay < 0:
        raise SystemExit(f"setup took {-delay:.1f} s more than {SETUP_SECONDS} s: raise SETUP_SECONDS")
    time.sleep(delay)
    c0, w0, n = time.thread_time(), time.perf_counter(), 0
    while time.perf_counter() - w0 < seconds:
        unit()
        n += 1
    out.update(units=n, cpu=time.thread_time() - c0, wall=time.perf_counter() - w0)


def child(workload: str, beside: str | None, start: float, seconds: float) -> dict:
    """The workload's figures over the window, with `beside` (if any) run on a second thread of this process."""
    with tempfile.TemporaryDirectory(prefix="bench-cores-") as tmp:
        units = [_unit(w, Path(tmp)) for w in (workload, beside) if w is not None]
        for unit in units:
            unit()  # warm: first-call costs out of the window
        outs: list[dict] = [{} for _ in units]
        threads = [threading.Thread(target=_timed, args=(u, start, seconds, o)) for u, o in zip(units, outs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return outs[0]


def _run(config: Config, seconds: float) -> dict:
    """One configuration: the measured workload's figures (its neighbour's are not reported)."""
    workload, beside, where = config
    start = time.time() + SETUP_SECONDS
    children = [[workload] + (["--beside", beside] if where == "thread" else [])]
    if where == "process":
        children.append([beside])
    procs = [subprocess.Popen([sys.executable, __file__, "--child", *args, "--start", str(start),
                               "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)
             for args in children]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"{config}: a child failed")
    return json.loads(outs[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=6.0, help="the timed window of each configuration")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--child", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    ap.add_argument("--beside", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    ap.add_argument("--start", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.beside, a.start, a.seconds)))
        return
    load = os.getloadavg()[0]
    runs: dict[Config, list[dict]] = {c: [] for c in CONFIGS}
    for rep in range(a.reps):
        for config in CONFIGS if rep % 2 == 0 else CONFIGS[::-1]:
            r = _run(config, a.seconds)
            runs[config].append(r)
            print(f"rep {rep + 1} {config[0]:>8} beside {config[1] or 'nothing':>8} {config[2]:>7}: "
                  f"{r['cpu'] / r['units'] * 1e6 / UNITS[config[0]]:8.3f} CPU-us per unit's event (or loop), "
                  f"{r['units'] * UNITS[config[0]] / r['wall']:12,.0f} per wall s", flush=True)

    def cpu_per(config: Config, i: int) -> float:
        r = runs[config][i]
        return r["cpu"] / r["units"] * 1e6 / UNITS[config[0]]

    def rate(config: Config, i: int) -> float:
        r = runs[config][i]
        return r["units"] * UNITS[config[0]] / r["wall"]

    rows = []
    for config in CONFIGS:
        alone = (config[0], None, "")
        cpu = statistics.median(cpu_per(config, i) for i in range(a.reps))
        cpu_ratio = statistics.median(cpu_per(config, i) / cpu_per(alone, i) for i in range(a.reps))
        wall_ratio = statistics.median(rate(config, i) / rate(alone, i) for i in range(a.reps))
        busy = statistics.median(runs[config][i]["cpu"] / runs[config][i]["wall"] for i in range(a.reps))
        unit = "loop" if config[0] == "spin" else "event"
        beside = f"{config[1]}, another {config[2]}" if config[1] else "nothing"
        rows.append(f"| {config[0]} ({WORKLOADS[config[0]]}) | {beside} | "
                    f"{cpu:.3f} CPU-us per {unit} | {cpu_ratio:.2f} | "
                    f"{statistics.median(rate(config, i) for i in range(a.reps)):,.0f} | {wall_ratio:.2f} | "
                    f"{busy:.2f} |")
    md = "\n".join([
        "Measured by `bench/bench_cores.py` (module docstring: what and why).",
        "",
        f"Machine: {machine()}, load average {load:.2f} at the start. Command: `python bench/bench_cores.py "
        f"--reps {a.reps} --seconds {a.seconds:g}`. A pair starts together (two processes, or two threads of "
        f"one) and is timed over the same {a.seconds:g} s; medians of {a.reps} repetitions, the configurations "
        "alternated; ratios taken within a repetition against the workload alone.",
        "",
        "| workload | beside it | its thread's CPU per unit | CPU ratio to alone | per wall second "
        "| wall rate ratio to alone | share of a core its thread used |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])
    print(md)
    if not a.no_write:
        write_section("cores", md)


if __name__ == "__main__":
    main()
