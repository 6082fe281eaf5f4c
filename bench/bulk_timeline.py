"""Where the bulk command's wall clock goes: `observatory ingest --db` timed phase by phase, with its CPU in each.

    .venv/bin/python bench/bulk_timeline.py                            # the bench's 1M Parquet events, 3 runs
    .venv/bin/python bench/bulk_timeline.py --format ndjson --reps 5 --no-write

Why: the ingest bench's (b) is one figure, the whole command's wall clock, and its ratio to the raw insert (issue 11)
is held by two things that figure cannot tell apart: the CPU per event, and the part of the run in which the two
cores are not both busy. The command runs three streams at once in its steady state (validation on the main thread,
the writer's commits of whole row groups, the deriver's passes over the committed chunks), but not at its two ends:
before the first chunk is validated the writer has nothing to commit, and after the last one the validating thread
is idle while the writer and the deriver finish. This runs the real command (through this file, which wraps a few of
its functions to log when each validation, commit, derive pass and the store's close begin and end: bench/stages.py,
as `bench/http_cycle.py` does for HTTP), samples the process's CPU from /proc every 50 ms and the size of its WAL (a
drop is a checkpoint), and reports each phase of the run:

- start-up: from the process's launch to the ingest function's first line (the interpreter, imports, settings);
- opening: to the first validation (the store and its migrations, the validator's compiled checks, the first chunk
  read and, for Parquet, rendered);
- filling: to the writer's first commit (the first chunk validated while the writer waits);
- steady: to the end of the last validation (validation, commits and derive passes side by side);
- draining: to the store's close (the writer's last commits, the deriver's passes behind them);
- closing: the store's close (the deriver's last pass, the final checkpoint);
- exit: to the process's end (the summary printed, the interpreter's teardown).

Reported: medians over the runs of each phase's seconds and its cores busy (process CPU over wall), the CPU of each
stage summed over the run (the threads' own CPU clocks), and the checkpoints seen. Written to docs/performance.md
between `<!-- bench:bulk-timeline:start -->` and `<!-- bench:bulk-timeline:end -->` unless `--no-write`. Measures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from watch import WalWatch
from stages import MARKER, StageLog, collector_process, read

ROOT = Path(__file__).resolve().parents[1]
LOG = "BULK_TIMELINE_LOG"  # the command's stage log, when it runs through this file
PHASES = ("start-up", "opening", "filling", "steady", "draining", "closing", "exit")
STAGES = {"validate": "validation (main thread)", "commit": "the writer's commits", "derive": "the deriver's passes"}


def _install(path: str) -> None:
    """In the command's process: wrap the stages, each appending one line to `path` when it ends."""
    from collector.contract.vectorized.validator import BulkValidator
    from collector.ingest import files
    from collector.ingest.store import Store
    from collector.ingest.writer import Writer

    log = StageLog(path)
    ingest = files.ingest_files_to_db

    def begin(*a, **k):
        log.write("begin", f"{time.perf_counter():.6f}")
        return ingest(*a, **k)

    files.ingest_files_to_db = begin
    BulkValidator.validate_lines = log.timed("validate", BulkValidator.validate_lines)
    Writer._commit_group = log.timed("commit", Writer._commit_group)
    Writer._derive = log.timed("derive", Writer._derive)
    Store.close = log.timed("close", Store.close)


def _cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(path: Path, work: Path) -> dict:
    """One run of the command on `path`: its stage log, CPU samples, checkpoints and summary."""
    db, log = work / "timeline.duckdb", work / "stages.log"
    for p in (db, Path(f"{db}.wal"), log):
        p.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    launched = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), MARKER, "ingest", str(path),
                             "--db", str(db), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, **{LOG: str(log)}), cwd=work)
    samples: list[tuple[float, float]] = [(launched, 0.0)]
    wal = WalWatch(db)
    while proc.poll() is None:
        cpu = _cpu(proc.pid)
        now = time.perf_counter()
        if cpu is not None:
            samples.append((now, cpu))
        wal.sample(now)
        time.sleep(0.05)
    ended = time.perf_counter()
    out, err = proc.communicate()
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"ingest failed ({proc.returncode}): {err.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    samples.append((ended, total_cpu))
    rows = read(log)
    summary = json.loads(out)
    return {"launched": launched, "ended": ended, "rows": rows, "samples": samples, "checkpoints": wal.checkpoints,
            "events": summary["events"], "inner_seconds": summary["seconds"], "cpu": total_cpu}


def _cpu_at(samples: list[tuple[float, float]], t: float) -> float:
    """The process's cumulative CPU at `t`, interpolated between samples."""
    for (t0, c0), (t1, c1) in zip(samples, samples[1:]):
        if t0 <= t <= t1:
            return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
    return samples[-1][1]


def analyse(r: dict) -> dict:
    """The run's phases (seconds, cores busy), stage CPU and checkpoints."""
    rows = r["rows"]
    validate, commit = rows["validate"], rows["commit"]  # (sorted by start)
    close = rows["close"][0]
    bounds = [r["launched"], rows["begin"][0][0], validate[0][0], commit[0][0], max(v[1] for v in validate),
              close[0], close[1], r["ended"]]
    phases = {}
    for name, a, b in zip(PHASES, bounds, bounds[1:]):
        seconds = max(0.0, b - a)
        cpu = _cpu_at(r["samples"], b) - _cpu_at(r["samples"], a)
        phases[name] = {"seconds": seconds, "cores": cpu / seconds if seconds > 0 else 0.0}
    wall = r["ended"] - r["launched"]
    stage_cpu = {k: sum(x[2] for x in rows.get(k, [])) for k in STAGES}

    def phase_of(t: float) -> str:
        return next((n for n, a, b in zip(PHASES, bounds, bounds[1:]) if a <= t < b), PHASES[-1])

    return {"wall": wall, "eps": r["events"] / wall, "events": r["events"], "inner_seconds": r["inner_seconds"],
            "cpu": r["cpu"], "phases": phases, "stage_cpu": stage_cpu,
            "derive_passes": len(rows.get("derive", [])), "commits": len(commit),
            "checkpoints": [(round(t - r["launched"], 2), round(size / 2**20), phase_of(t))
                            for t, size in r["checkpoints"]]}


def render(runs: list[dict], path: Path, cmd: str) -> str:
    from report import machine

    med = statistics.median
    walls = [x["wall"] for x in runs]
    mid = sorted(runs, key=lambda x: x["wall"])[len(runs) // 2]
    out = [
        f"Measured by `bench/bulk_timeline.py` (command: `{cmd}`). Machine: {machine()}. `observatory ingest --db` of "
        f"{mid['events']:,} events ({path.name}), {len(runs)} run{'s' if len(runs) != 1 else ''}, each on a fresh "
        "database; medians over the runs. "
        f"Whole command **{med(walls):.2f} s** (runs {', '.join(f'{w:.2f}' for w in walls)}), "
        f"{med(x['eps'] for x in runs):,.0f} events/s, {med(x['cpu'] for x in runs):.1f} CPU-s "
        f"({med(x['cpu'] / x['events'] * 1e6 for x in runs):.1f} CPU-µs per event, "
        f"{med(x['cpu'] / x['wall'] for x in runs):.2f} cores busy on average); the command's own timer "
        f"{med(x['inner_seconds'] for x in runs):.2f} s.",
        "",
        "| phase | seconds | share of the run | cores busy | runs (seconds) |",
        "|---|---|---|---|---|",
    ]
    for name in PHASES:
        secs = [x["phases"][name]["seconds"] for x in runs]
        out.append(f"| {name} | {med(secs):.2f} | {med(secs) / med(walls):.0%} | "
                   f"{med(x['phases'][name]['cores'] for x in runs):.2f} | {', '.join(f'{s:.2f}' for s in secs)} |")
    out += ["", "CPU by stage (each stage's own thread clock, summed over the run): " + "; ".join(
        f"{label} {med(x['stage_cpu'][k] for x in runs):.2f} s" for k, label in STAGES.items())
        + f"; everything else (reading and rendering ahead, polars' and DuckDB's own threads, start-up) "
        f"{med(x['cpu'] - sum(x['stage_cpu'].values()) for x in runs):.2f} s. "
        f"{mid['commits']} commits and {mid['derive_passes']} derive passes in the median run; checkpoints seen "
        f"(a drop of the WAL, sampled every 50 ms; the close's own final checkpoint only when the WAL was not empty): "
        + (", ".join(f"{mib} MiB at {t} s ({phase})" for t, mib, phase in mid["checkpoints"]) or "none") + "."]
    return "\n".join(out) + "\n"


def main() -> None:
    if collector_process(LOG, _install):
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--format", choices=("parquet", "ndjson"), default="parquet")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_ingest as bi

    parquet, ndjson, _ = bi.data_files(args.events, args.data_dir, args.seed)
    path = parquet if args.format == "parquet" else ndjson
    runs = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.reps):
            runs.append(analyse(run_once(path, Path(d))))
            print(f"run {i + 1}: {runs[-1]['wall']:.2f} s", flush=True)
    cmd = "python bench/bulk_timeline.py" + ("" if args.events == 1_000_000 else f" --events {args.events}") + \
        ("" if args.format == "parquet" else f" --format {args.format}") + \
        ("" if args.reps == 3 else f" --reps {args.reps}")
    section = render(runs, path, cmd)
    print(section)
    if not args.no_write:
        from report import write_section

        write_section("bulk-timeline", section)
        print("written to docs/performance.md")


if __name__ == "__main__":
    main()
