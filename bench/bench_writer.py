"""The single writer alone, in process: CPU-µs per event and where a group commit's time goes, per stage.

    .venv/bin/python bench/bench_writer.py                 # 200k events, 5 repetitions
    .venv/bin/python bench/bench_writer.py --reps 3 --events 100000

Why a separate bench: bench_ingest.py measures the whole product (HTTP server, validation, writer) end to end,
which on a shared 2-core machine mixes the writer's cost with everything else. This validates the events once,
then replays the same validated batches through `Writer._transaction` on a fresh database per repetition, at the
two shapes of the issue: HTTP (1,000-event requests, group commits of 4) and bulk (122,880-event chunks, one per
commit). It reports, as medians over repetitions:

- writer CPU-µs per event (process CPU: the writer thread plus DuckDB's worker threads), the figure of
  bench_ingest.breakdown();
- per 4,000-event commit (HTTP shape), the wall ms of each stage, measured by a connection proxy that times every
  statement by its kind: the insert into `events`, each derived-table statement, the counters, COMMIT, and the rest
  (polars aggregation and Python) as the remainder.

The HTTP shape is also measured the collector's way (`http_deferred`, `defer_derive`): each group's events are
committed (what a client waits for), then its derived rows in the writer's next transaction; the wall ms of each
part per commit are reported apart, and the CPU per event covers both.

With `--fold-groups 1,4,8` it measures instead the deriver alone: the HTTP shape's groups committed without their
derived rows, then folded K groups per pass (one transaction, `storage/derive.py: fold_batches`), wall and CPU
µs per event for each K, alternated: what folding all that is pending at once saves. `--baselines 1000000` stores
that many reproducibility baselines first: what a pass costs on top of a long history. `--stages` adds each
pass's time by stage, its statements by kind and the rest (polars, Python) as the remainder: where a pass's fixed
cost goes. `--plans` times instead the polars plans of such passes alone, with no database
(`storage/derive.py: fold_plans`).

With `--bulk-chunks 50000,100000,150000,300000` it measures instead the bulk shape's writer at each chunk size (the
same validated events cut into chunks of that many rows, one per commit): wall µs per event including the final
checkpoint, and the shares of the insert and of COMMIT. COMMIT's share falls once a commit holds more than a
row group (122,880 rows), as if DuckDB wrote a large transaction's whole row groups to the database file rather than
through the WAL: the writer's cost per event depends on the chunk size (docs/performance.md, tenth round).

No assertions: it measures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import Future
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import data_files, head_lines, process_cpu as _cpu  # noqa: E402
from collector.ingest import allocators  # noqa: E402
from collector.storage.db import ROW_GROUP_ROWS  # noqa: E402


def _stage(sql: str) -> str:
    """A statement's stage, from its text."""
    full = " ".join(sql.split()).upper()
    s = full[:120]
    if s.startswith("INSERT INTO EVENTS"):
        return "insert events"
    if s.startswith("COMMIT"):
        return "commit"
    for table in ("RUN_ATTEMPTS", "KERNEL_SESSIONS", "NOTEBOOKS", "SCHEDULES", "REPRO_BASELINES",
                  "METRIC_COUNTERS", "INGEST_BATCHES", "DEAD_LETTERS"):
        if s.startswith(f"INSERT INTO {table}"):
            return f"sql {table.lower()}"
        if s.startswith(f"UPDATE {table}"):
            return f"sql {table.lower()} (update)"
        if s.startswith(f"MERGE INTO {table}"):
            return f"sql {table.lower()} (merge)"
    if "FROM BATCH_RUNS" in full:
        return "sql first_terminal"
    if "FROM KERNEL_SESSIONS_STORED" in full or "FROM BATCH_KERNELS" in full:
        return "sql kernel_sessions (lookup)"
    if "REPRO_NEW" in full:
        return "sql repro_compare"
    if s.startswith("BEGIN") or "NEXTVAL" in s:
        return "begin"
    return "sql other"


class _TimedRelation:
    def __init__(self, rel: Any, key: str, sink: dict[str, float]) -> None:
        self._rel, self._key, self._sink = rel, key, sink

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._rel, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*a, **k)
            finally:
                self._sink[self._key] += time.perf_counter() - t0
        return call


class TimedConnection:
    """Passes everything to a DuckDB connection and adds each statement's wall time to `sink[stage]`."""

    def __init__(self, con: Any, sink: dict[str, float]) -> None:
        self._con, self.sink = con, sink

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def execute(self, sql: str, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            self._con.execute(sql, *a, **k)
            return self
        finally:
            self.sink[_stage(sql)] += time.perf_counter() - t0

    def sql(self, sql: str, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return _TimedRelation(self._con.sql(sql, *a, **k), _stage(sql), self.sink)
        finally:
            self.sink[_stage(sql)] += time.perf_counter() - t0

    def register(self, *a: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._con.register(*a)
        finally:
            self.sink["register"] += time.perf_counter() - t0

    def fetchall(self) -> Any:
        return self._con.fetchall()

    @property
    def description(self) -> Any:
        return self._con.description


def validated(ndjson: Path, n: int) -> Any:
    """The first n lines of the file, validated in 1,000-event chunks and in the bulk command's (whole row groups)."""
    from collector.contract import vectorized as bulk

    lines = head_lines(ndjson, n)
    out = {}
    for label, chunk in (("http", 1000), ("bulk", ROW_GROUP_ROWS)):
        v = bulk.BulkValidator()
        out[label] = [v.validate_lines(lines.slice(k, chunk), offset=k) for k in range(0, len(lines), chunk)]
        v.close()
    return len(lines), out


def run_shape(results: list, group: int, db: Path, timed: bool, deferred: bool = False) -> dict:
    """Replay validated batches through the writer; CPU per event, and per-commit stage timings if `timed`.
    `deferred`: each group's events committed alone, then derived in a transaction of their own (the
    collector's writer), the two timed apart."""
    from collector.ingest.files import _open_store
    from collector.ingest.writer import _Write

    chunk = max(r.table.num_rows for r in results)
    store = _open_store(db, max(chunk * group, 1))
    stages: list[dict[str, float]] = []
    walls: list[float] = []
    derives: list[float] = []
    try:
        raw = store.writer.con
        events = 0
        c0 = _cpu()
        for k in range(0, len(results), group):
            sink: dict[str, float] = defaultdict(float)
            if timed:
                store.writer.con = TimedConnection(raw, sink)  # type: ignore[assignment]
            writes = [_Write(r.table, r.rejections, "file", None, Future(), r.table.num_rows)
                      for r in results[k:k + group]]
            t0 = time.perf_counter()
            if deferred:
                store.writer._transaction_once(writes, exhaustive=False, derive=False)
                wall = time.perf_counter() - t0
                store.writer._derive()
                derives.append(time.perf_counter() - t0 - wall)
            else:
                store.writer._transaction(writes)
                wall = time.perf_counter() - t0
            store.writer.con = raw
            events += sum(r.table.num_rows for r in results[k:k + group])
            walls.append(wall)
            sink["total"] = wall
            stages.append(dict(sink))
        cpu = _cpu() - c0
    finally:
        c1 = _cpu()
        store.close()  # its CHECKPOINT: work a larger checkpoint_threshold would only defer to here
        close_cpu = _cpu() - c1
        for p in db.parent.glob(db.name + "*"):
            p.unlink()
    out: dict = {"cpu_us_per_event": 1e6 * cpu / events, "close_cpu_us_per_event": 1e6 * close_cpu / events,
                 "commits": len(walls),
                 "commit_ms_median": 1e3 * statistics.median(walls)}
    if deferred:
        out["derive_ms_median"] = 1e3 * statistics.median(derives)
    if timed:
        keys = sorted({k for s in stages for k in s})
        out["stage_ms_median"] = {k: 1e3 * statistics.median(s.get(k, 0.0) for s in stages) for k in keys}
        out["stage_ms_mean"] = {k: 1e3 * statistics.mean(s.get(k, 0.0) for s in stages) for k in keys}
    return out


def bulk_chunks(ndjson: Path, n: int, sizes: list[int], reps: int, data_dir: Path) -> None:
    """The bulk shape's writer per chunk size, alternated over `reps` repetitions; medians printed."""
    import pyarrow as pa

    from collector.contract import vectorized as bulk

    v = bulk.BulkValidator()
    val = v.validate_lines(head_lines(ndjson, n))
    v.close()
    work = Path(tempfile.mkdtemp(prefix="bench-writer-chunks-", dir=data_dir))
    runs: dict[int, list[dict[str, float]]] = defaultdict(list)
    try:
        for _ in range(reps):
            for size in sizes:
                parts = [val.table.slice(k, size) for k in range(0, val.table.num_rows, size)]
                results = [bulk.BulkResult(t, pa.array(range(t.num_rows), pa.int64()), [], t.num_rows) for t in parts]
                t0 = time.perf_counter()
                r = run_shape(results, 1, work / f"c-{size}.duckdb", True)
                wall = time.perf_counter() - t0  # the commits and the final checkpoint
                per = {"wall_us": 1e6 * wall / n, "cpu_us": r["cpu_us_per_event"] + r["close_cpu_us_per_event"],
                       **{f"{k}_us": 1e3 * r["stage_ms_mean"].get(k, 0.0) * len(parts) / n
                          for k in ("insert events", "commit")}}
                runs[size].append(per)
                print(f"chunk {size:>9,}: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items()), flush=True)
    finally:
        for p in work.glob("*"):
            p.unlink()
        work.rmdir()
    print(f"\n{n:,} events, {reps} repetitions alternated (medians, µs per event)")
    for size in sizes:
        med = {k: statistics.median(r[k] for r in runs[size]) for k in runs[size][0]}
        print(f"chunk {size:>9,}: " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))


# The key of fill_baselines' row `i`: this bench's notebooks (`nb-00000` to `nb-00050`) and hashes of its form
FILL_KEY = ("'nb-' || lpad((i % 51)::VARCHAR, 5, '0') AS notebook_id, 'sha256:' || hash('i', i) AS input_hash, "
            "'sha256:' || hash('p', i % 97) AS parameters_hash, 'sha256:' || hash('e', i % 11) AS env_hash")


def fill_baselines(con: Any, n: int, table: str = "repro_baselines", key: str = FILL_KEY) -> None:
    """`n` reproducibility baselines in `table` (repro_baselines, or the SLI fold's sli_repro_baselines), stored and
    checkpointed: a long history. Their keys (`key`, SQL of the row number `i`) take the forms of the bench's own
    events, with other input hashes: a key column whose range the events' do not overlap would let DuckDB skip
    every row group of the fill by its min/max, which a real history does not allow. This bench's mix stores
    ~12,800 baselines per 100,000 events, so 1,000,000 is the history of a collector that has seen ~8M events.
    Written through either schema: with the key's digest column since migrations 0210/0211, without it before
    (another checkout's)."""
    if not n:
        return
    cols = {c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = $t",
                                      {"t": table}).fetchall()}
    digest = ""
    if "key_hash" in cols:
        from collector.storage.schema import BASELINE_KEY_HASH

        digest = f"{BASELINE_KEY_HASH} AS key_hash, "
    con.execute(f"""
        INSERT INTO {table} BY NAME SELECT {digest}* FROM (
            SELECT {key}, 'hist-run-' || i AS run_id, 1 AS attempt, 'sha256:' || hash('o', i) AS output_hash,
                   TIMESTAMPTZ '2026-01-01' + to_seconds(i) AS ended_at
            FROM range($n) t(i))""", {"n": n})
    con.execute("CHECKPOINT")


def fold_passes(ndjson: Path, n: int, ks: list[int], reps: int, data_dir: Path, baselines: int = 0,
                stages: bool = False) -> None:
    """The deriver alone: the HTTP shape's groups (4 x 1,000 events) committed without their derived rows, then
    folded k groups per pass (`Writer._derive`, one transaction), for each k, alternated. What a pass costs per event
    as the deriver takes more of what is pending at once (the collector's deriver takes all of it). With
    `baselines`, on top of that many stored reproducibility baselines (`fill_baselines`). With `stages`, each pass's
    statements timed by stage (`TimedConnection`), and the rest of the pass (polars, Python) as the remainder: where
    a pass's fixed cost goes."""
    from collector.ingest.files import _open_store
    from collector.ingest.writer import _Write

    _, batches = validated(ndjson, n)
    http = batches["http"]
    runs: dict[int, list[tuple[float, float, int]]] = defaultdict(list)
    sinks: dict[int, list[dict[str, float]]] = defaultdict(list)
    work = Path(tempfile.mkdtemp(prefix="bench-fold-", dir=data_dir))
    try:
        for _ in range(reps):
            for k in ks:
                db = work / f"f-{k}.duckdb"
                store = _open_store(db, 4000)
                w = store.writer
                fill_baselines(w.con, baselines)
                wall = cpu = 0.0
                passes = 0
                try:
                    for g in range(0, len(http), 4):
                        w._transaction_once([_Write(r.table, r.rejections, "file", None, Future(), r.table.num_rows)
                                             for r in http[g:g + 4]], exhaustive=False, derive=False)
                        if len(w._pending) >= k or g + 4 >= len(http):
                            raw, sink = w.con, defaultdict(float)
                            if stages:  # the deriver's statements run on the writer's connection here
                                w.con = TimedConnection(raw, sink)  # type: ignore[assignment]
                            t0, c0 = time.perf_counter(), _cpu()
                            w._derive()
                            sink["total"] = time.perf_counter() - t0
                            wall += sink["total"]
                            cpu += _cpu() - c0
                            w.con = raw
                            sinks[k].append(sink)
                            passes += 1
                finally:
                    store.close()
                    for p in work.glob(db.name + "*"):
                        p.unlink()
                runs[k].append((wall, cpu, passes))
                print(f"{k:3d} groups per pass: {passes} passes, {1e6 * wall / n:.1f} wall-us and "
                      f"{1e6 * cpu / n:.1f} CPU-us per event, {1e3 * wall / passes:.1f} ms per pass", flush=True)
    finally:
        work.rmdir()
    print(f"\n{n:,} events, 4 x 1,000-event groups, {baselines:,} stored baselines, {reps} repetitions "
          "alternated (medians)")
    for k in ks:
        wall = statistics.median(r[0] for r in runs[k])
        cpu = statistics.median(r[1] for r in runs[k])
        print(f"{k:3d} groups per pass: {1e6 * wall / n:.1f} wall-us, {1e6 * cpu / n:.1f} CPU-us per event, "
              f"{1e3 * wall / runs[k][0][2]:.1f} ms per pass")
        if stages:
            med = {s: 1e3 * statistics.median(p.get(s, 0.0) for p in sinks[k]) for s in {s for p in sinks[k] for s in p}}
            med["python + polars (rest)"] = 2 * med["total"] - sum(med.values())
            print("      ms per pass by stage (medians over passes): " + ", ".join(
                f"{s} {v:.1f}" for s, v in sorted(med.items(), key=lambda kv: -kv[1])))


def fold_plans_alone(ndjson: Path, n: int, ks: list[int], reps: int) -> None:
    """The deriver's polars part alone: for each k, `pl.collect_all` of what a pass folding k of the HTTP shape's
    groups (4 x 1,000 events, one batch each) aggregates (`storage/derive.py: fold_plans`), no database; medians of
    `reps` x 7 timings, the ks alternated. What a change to collector/storage/batch.py saves, without the SQL
    statements' noise around it."""
    import polars as pl
    import pyarrow as pa

    from collector.storage.derive import ENGINE, fold_plans

    _, batches = validated(ndjson, n)
    http = batches["http"]
    groups = [pa.concat_tables([r.table for r in http[g:g + 4]]) for g in range(0, len(http), 4)]
    times: dict[int, list[float]] = defaultdict(list)
    for _ in range(reps * 7):
        for k in ks:
            pending = [(i, t) for i, t in enumerate(groups[:k])]
            t0 = time.perf_counter()
            pl.collect_all(list(fold_plans(pending).values()), engine=ENGINE)
            times[k].append(time.perf_counter() - t0)
    print(f"the deriver's polars plans alone ({pl.thread_pool_size()} polars threads), median of {reps * 7}:")
    for k in ks:
        print(f"{k:3d} groups ({sum(t.num_rows for t in groups[:k]):,} events): "
              f"{1e3 * statistics.median(times[k]):.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--bulk-chunks", default=None, metavar="N,N,...",
                    help="only the bulk shape's writer per chunk size (rows per commit)")
    ap.add_argument("--fold-groups", default=None, metavar="K,K,...",
                    help="only the deriver: fold K committed 4,000-event groups per pass, for each K")
    ap.add_argument("--plans", action="store_true",
                    help="with --fold-groups: only the deriver's polars plans, no database (fold_plans_alone)")
    ap.add_argument("--stages", action="store_true",
                    help="with --fold-groups: each pass's statements timed by stage (where its fixed cost goes)")
    ap.add_argument("--baselines", type=int, default=0, metavar="N",
                    help="with --fold-groups: N reproducibility baselines stored before the passes (a long history)")
    args = ap.parse_args()
    allocators.tune()  # as the collector's processes do
    _, ndjson, _ = data_files(max(args.events, 200_000), args.data_dir, args.seed)
    if args.fold_groups and args.plans:
        fold_plans_alone(ndjson, args.events, [int(x) for x in args.fold_groups.split(",")], args.reps)
        return
    if args.fold_groups:
        fold_passes(ndjson, args.events, [int(x) for x in args.fold_groups.split(",")], args.reps, args.data_dir,
                    args.baselines, args.stages)
        return
    if args.bulk_chunks:
        bulk_chunks(ndjson, args.events, [int(x) for x in args.bulk_chunks.split(",")], args.reps, args.data_dir)
        return
    n, batches = validated(ndjson, args.events)
    work = Path(tempfile.mkdtemp(prefix="bench-writer-", dir=args.data_dir))
    reps: dict[str, list[dict]] = {"http": [], "http_deferred": [], "bulk": [], "http_timed": []}
    try:
        for rep in range(args.reps):
            for label, group, timed in (("http", 4, False), ("http_deferred", 4, False), ("bulk", 1, False),
                                        ("http_timed", 4, True)):
                r = run_shape(batches["http" if label.startswith("http") else "bulk"], group,
                              work / f"w-{label}-{rep}.duckdb", timed, deferred=label == "http_deferred")
                reps[label].append(r)
                print(f"rep {rep + 1} {label:13s}: {r['cpu_us_per_event']:6.1f} CPU-us/event, "
                      f"commit median {r['commit_ms_median']:.1f} ms"
                      + (f", derive median {r['derive_ms_median']:.1f} ms" if "derive_ms_median" in r else ""),
                      flush=True)
    finally:
        for p in work.glob("*"):
            p.unlink()
        work.rmdir()
    med = {label: statistics.median(r["cpu_us_per_event"] for r in rs) for label, rs in reps.items() if rs}
    commit = {label: statistics.median(r["commit_ms_median"] for r in rs) for label, rs in reps.items() if rs}
    stage_keys = sorted({k for r in reps["http_timed"] for k in r["stage_ms_median"]})
    stages = {k: statistics.median(r["stage_ms_mean"].get(k, 0.0) for r in reps["http_timed"]) for k in stage_keys}
    accounted = sum(v for k, v in stages.items() if k != "total")
    stages["python + polars (rest)"] = stages["total"] - accounted
    print(f"\n{n:,} events, {args.reps} repetitions (medians)")
    derive = statistics.median(r["derive_ms_median"] for r in reps["http_deferred"])
    print(f"writer CPU-us per event: HTTP shape {med['http']:.1f} (deferred: {med['http_deferred']:.1f}), "
          f"bulk shape {med['bulk']:.1f}")
    print(f"commit wall ms (median): HTTP 4x1,000 {commit['http']:.1f}, bulk {ROW_GROUP_ROWS:,} {commit['bulk']:.1f}")
    print(f"HTTP 4x1,000 deferred (the collector's way), wall ms (median): events committed (what a client waits "
          f"for) {commit['http_deferred']:.1f}, then derived {derive:.1f}")
    print("per 4,000-event commit, mean ms per stage (median over repetitions):")
    for k, v in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {k:28s} {v:7.1f}")
    if args.json:
        args.json.write_text(json.dumps({"events": n, "reps": reps, "cpu_us": med, "commit_ms": commit,
                                         "stages_ms": stages}, indent=1))


if __name__ == "__main__":
    main()
