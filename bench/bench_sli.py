"""SLI benchmark: full computation over N stored events, initial fold, incremental refresh after 10,000 new events
(at the history's `now`; 30 s later, 15 s after a pass, as the gauge refresher's passes follow each other; at the
first pass after the hourly schedules' next slots come due; 30 s later after a scheduler restart).

    .venv/bin/python bench/bench_sli.py                 # 10M events (builds var/bench_sli.duckdb once, ~minutes)
    .venv/bin/python bench/bench_sli.py --events 1000000 --no-write

The history (60 days, 20 teams, 1,000 notebooks, 200 hourly schedules) is generated with numpy and committed
through the real writer (collector.ingest.writer: dedup, derive.py, counters) in 200k-event batches, bypassing only HTTP
parsing and pydantic validation. Each measured phase runs in a fresh subprocess so that its peak RSS
(ru_maxrss) is its own. Figures go to docs/performance.md between the sli markers (other sections untouched).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START, END = "<!-- bench:sli:start -->", "<!-- bench:sli:end -->"
TEAMS = [f"team-{i:02d}" for i in range(20)]
N_NB = 1000
N_SCHED = 200
# When each incremental phase's refresh runs, after the history's `now` (the last fold's), and when the pass before it
# ran (None: the computation at `now` was the last). The gauge refresher's passes come 5-60 s apart, so its windows end
# later each time and the kept sums and durations slide by what left and entered them ("later": a pass 15 s after one
# that itself came 15 s after `now`, as a refresher's passes follow each other). Once an hour the 200 hourly
# schedules' next slots come due (slot + grace), and that pass also enumerates and decides them and looks for misses
# ("boundary": the first pass after they come due, 15 s after the one before). "restart": a pass as "later", after
# a scheduler restarted and registered its 200 schedules again, unchanged, among the 10,000 events: the fold stages
# the registrations first, and as none changes a slot its sides fold apart (slo/sli/fold.py `_fold_slice`; until the
# forty-fourth round a batch holding a registration folded both in one transaction, `_fold_joined`, whose changes the
# kept states take in the computation's slide: a path that raised until the forty-third round). "incremental"
# keeps the history's `now`: the fold and the computation alone, as the table has reported it since the fourth round.
STEP = timedelta(seconds=15)


def _due(now: datetime, grace: float) -> timedelta:
    """How long after `now` the next slot of the bench's hourly schedules (minute 0) comes due: slot + grace."""
    g = timedelta(seconds=grace)
    slot = (now - g).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return slot + g - now


LATER: dict[str, Callable[[datetime, float], tuple[timedelta | None, timedelta]]] = {
    "incremental": lambda now, grace: (None, timedelta(0)),
    "later": lambda now, grace: (STEP, 2 * STEP),
    "boundary": lambda now, grace: (_due(now, grace) + timedelta(seconds=1) - STEP,
                                    _due(now, grace) + timedelta(seconds=1)),
    "restart": lambda now, grace: (STEP, 2 * STEP),
}
REGISTERING = {"restart"}  # LATER phases whose new events hold the schedules' registrations again


GEN_SQL = """
WITH p AS (SELECT $t0::BIGINT AS t0, $span::BIGINT AS span),
att AS (
    SELECT i, (i % 1000) AS nbi,
           hash(i, $seed) AS h,
           p.t0 + (hash(i, $seed, 1) % (p.span * 1000000)) AS st0
    FROM range($n_att) r(i), p
),
att2 AS (
    SELECT i, nbi, 'nb-' || nbi AS nb, 'team-' || lpad((nbi % 20)::VARCHAR, 2, '0') AS team,
           CASE WHEN nbi < $n_sched THEN (st0 // 3600000000) * 3600000000 + (h % 120000000) ELSE st0 END AS st,
           exp(5 + 1.2 * sqrt(-2 * ln((hash(i, $seed, 2) % 1000000 + 1) / 1000001.0))
                       * cos(2 * pi() * (hash(i, $seed, 3) % 1000000) / 1000000.0)) AS dur,
           CASE WHEN h % 100 < 90 THEN 'succeeded' WHEN h % 100 < 96 THEN 'failed'
                WHEN h % 100 < 98 THEN 'timed_out' ELSE 'cancelled' END AS outcome,
           CASE WHEN nbi < $n_sched THEN 'scheduled' ELSE ['manual', 'api', 'ci'][(1 + (h // 100) % 3)::BIGINT] END AS trig,
           (h // 1000) % 5 AS grp, CASE WHEN (h // 10000) % 100 < 97 THEN 'o' ELSE 'x' END AS oh,
           CASE WHEN (h // 100000) % 100 = 0 THEN 3600 + (h // 10000000) % (5 * 3600) ELSE 0 END AS late_s
    FROM att
),
runs AS (
    SELECT 'notebook.run.started' AS type, st AS t, st AS arrive, team, nb, $prefix || 'run-' || i AS run_id,
           NULL AS kernel_id, trig,
           json_object('run_id', $prefix || 'run-' || i, 'notebook_id', nb)::VARCHAR AS data
    FROM att2
    UNION ALL
    SELECT 'notebook.run.' || outcome, st + (dur * 1e6)::BIGINT, st + (dur * 1e6)::BIGINT + late_s * 1000000, team,
           nb, $prefix || 'run-' || i, NULL, trig,
           json_object('run_id', $prefix || 'run-' || i, 'notebook_id', nb, 'duration_seconds', round(dur, 3),
                       'input_hash', 'i' || grp, 'parameters_hash', 'p', 'env_hash', 'e',
                       'output_hash', nb || '-' || grp || '-' || oh)::VARCHAR
    FROM att2
),
kern AS (
    SELECT i, 'team-' || lpad((hash(i, $seed, 5) % 20)::VARCHAR, 2, '0') AS team,
           p.t0 + (hash(i, $seed, 6) % (p.span * 1000000)) AS ks,
           (60 + hash(i, $seed, 7) % (8 * 3600)) * 1000000 AS klen, hash(i, $seed, 8) % 100 < 3 AS died
    FROM range($n_k) r(i), p
),
kev AS (
    SELECT 'notebook.kernel.started' AS type, ks AS t, ks AS arrive, team, NULL AS nb, NULL AS run_id,
           $prefix || 'k-' || i AS kernel_id, NULL AS trig,
           json_object('kernel_id', $prefix || 'k-' || i)::VARCHAR AS data FROM kern
    UNION ALL
    SELECT CASE WHEN died THEN 'notebook.kernel.died' ELSE 'notebook.kernel.shutdown' END, ks + klen, ks + klen,
           team, NULL, NULL, $prefix || 'k-' || i, NULL,
           json_object('kernel_id', $prefix || 'k-' || i, 'reason', CASE WHEN died THEN 'oom' ELSE 'culled' END)::VARCHAR
    FROM kern
),
other AS (
    SELECT i, k, hash(i, $seed, k) AS h, p.t0 + (hash(i, $seed, k, 1) % (p.span * 1000000)) AS t,
           (hash(i, $seed, k, 2) % 1000) AS nbi
    FROM (SELECT 1 AS k, $n_probe AS n UNION ALL SELECT 2, $n_q UNION ALL SELECT 3, $n_rep UNION ALL SELECT 4, $n_art) c,
         LATERAL (SELECT * FROM range(c.n)) r(i), p
),
oev AS (
    SELECT CASE k WHEN 1 THEN 'platform.probe' WHEN 2 THEN 'notebook.quality.checked'
                  WHEN 3 THEN 'notebook.reproducibility.checked' ELSE 'notebook.artifact.published' END AS type,
           t, t AS arrive, 'team-' || lpad((nbi % 20)::VARCHAR, 2, '0') AS team,
           CASE WHEN k = 1 THEN NULL ELSE 'nb-' || nbi END AS nb, NULL AS run_id, NULL AS kernel_id, NULL AS trig,
           CASE k WHEN 1 THEN json_object('target', 'hub', 'ok', h % 100 < 97)
                  WHEN 2 THEN json_object('notebook_id', 'nb-' || nbi, 'check', 'rows',
                                          'result', CASE WHEN h % 100 < 97 THEN 'pass' ELSE 'fail' END)
                  WHEN 3 THEN json_object('notebook_id', 'nb-' || nbi,
                                          'result', CASE WHEN h % 100 < 97 THEN 'match' ELSE 'mismatch' END)
                  ELSE json_object('notebook_id', 'nb-' || nbi, 'artifact', 's3://a/' || nbi, 'sla_seconds', 86400)
           END::VARCHAR AS data
    FROM other
),
reg AS (
    SELECT 'notebook.registered' AS type, p.t0 - 1000000 AS t, p.t0 - 1000000 AS arrive,
           'team-' || lpad((i % 20)::VARCHAR, 2, '0') AS team, 'nb-' || i AS nb, NULL AS run_id, NULL AS kernel_id,
           NULL AS trig,
           json_object('notebook_id', 'nb-' || i, 'owner', 'o', 'team', 'team-' || lpad((i % 20)::VARCHAR, 2, '0'),
                       'tags', CASE WHEN i % 4 = 0 THEN json_object() ELSE json_object('description', 'd') END,
                       'critical', i % 10 = 0, 'has_tests', i % 20 = 0)::VARCHAR AS data
    FROM range($n_reg) r(i), p
    UNION ALL
    SELECT 'notebook.schedule.registered', coalesce($sched_t, p.t0 - 1000000), coalesce($sched_t, p.t0 - 1000000),
           'team-' || lpad((i % 20)::VARCHAR, 2, '0'), 'nb-' || i, NULL, NULL, NULL,
           json_object('notebook_id', 'nb-' || i, 'cron', '0 * * * *', 'grace_seconds', 900)::VARCHAR
    FROM range($n_sched_reg) r(i), p
),
alle AS (SELECT * FROM runs UNION ALL SELECT * FROM kev UNION ALL SELECT * FROM oev UNION ALL SELECT * FROM reg)
SELECT 'bench://gen' AS source, $prefix || 'e-' || row_number() OVER () AS id, type,
       make_timestamptz(t::BIGINT) AS time, NULL::VARCHAR AS subject, team, NULL::VARCHAR AS owner, nb AS notebook_id,
       run_id, CASE WHEN run_id IS NULL THEN NULL ELSE 1 END::INTEGER AS attempt, kernel_id, trig AS trigger,
       'prod' AS environment, data, 0::INTEGER AS redactions
FROM alle
ORDER BY arrive
"""


def generate(n_events: int, now: datetime, seed: int = 7, prefix: str = "", registry: bool = True,
             schedules_at: datetime | None = None) -> pa.Table:
    """The event mix as an Arrow table (INGEST_SCHEMA) in arrival order (~1% of terminal events arrive 1-6 h late).
    `schedules_at`: the schedules' registrations at that time (default: before the history's first event)."""
    import duckdb

    from collector.storage.derive import typed_from_stored
    from collector.storage.schema import INGEST_SCHEMA

    span = 60 * 86400
    t0 = int((now - timedelta(seconds=span)).timestamp() * 1e6)
    scale = n_events / 8_900_000  # the mix below is 8.9M events at scale 1
    params = {"t0": t0, "span": span, "seed": seed, "prefix": prefix, "n_sched": N_SCHED,
              "n_att": int(2_000_000 * scale), "n_k": int(1_200_000 * scale), "n_probe": int(1_700_000 * scale),
              "n_q": int(500_000 * scale), "n_rep": int(100_000 * scale), "n_art": int(200_000 * scale),
              "n_reg": N_NB if registry else 0, "n_sched_reg": N_SCHED if registry else 0,
              "sched_t": None if schedules_at is None else int(schedules_at.timestamp() * 1e6)}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # the writer takes batches with the typed fields the validator would have filled (read back from `data`)
    tbl = con.sql(typed_from_stored(f"({GEN_SQL})"), params=params).to_arrow_table()
    con.close()
    return tbl.cast(INGEST_SCHEMA)


def new_events(now: datetime, phase_name: str) -> pa.Table:
    """A phase's 10,000 new events: the newest of the same mix (~the last 2 days), and for a REGISTERING phase the
    scheduler's 200 registrations again, unchanged, as it restarts (in place of as many of those events)."""
    mix = generate(300_000, now, seed=11, prefix="new-", registry=False)
    if phase_name not in REGISTERING:
        return mix.slice(mix.num_rows - 10_000, 10_000)
    regs = generate(0, now, prefix="restart-", schedules_at=now)
    regs = regs.filter(pc.equal(regs.column("type"), "notebook.schedule.registered"))
    return pa.concat_tables([mix.slice(mix.num_rows - 10_000, 10_000 - regs.num_rows), regs])


def before_the_pass(con, cfg, now: datetime, phase_name: str) -> tuple[datetime, float]:
    """What comes before a LATER phase's measured pass, on a folded history at `now` (this bench's phases and
    bench/profile_sli.py): the computation at `now`, as the refresher's last pass did (it builds M3's kept durations
    and the kept sums), the refresher's pass before the one measured (if the phase has one), and the phase's new
    events through the real writer. Returns the measured pass's as_of and the first computation's seconds."""
    from collector.ingest.writer import Writer
    from collector.metrics.counters import CounterStore
    from slo.sli.compute import compute
    from slo.sli.config import SliQuery
    from slo.sli.fold import fold

    levels = ("platform", "team", "trigger")
    t0 = time.perf_counter()
    compute(con, SliQuery(as_of=now, windows=list(cfg.windows), levels=levels), cfg, fold_first=False)
    first = time.perf_counter() - t0
    previous, later = LATER[phase_name](now, cfg.missed_grace_seconds)
    if previous is not None:
        fold(con, cfg, now=now + previous)
        compute(con, SliQuery(as_of=now + previous, windows=list(cfg.windows), levels=levels), cfg, fold_first=False)
    w = Writer(con, CounterStore())
    w.start()
    w.submit(new_events(now, phase_name), []).result()
    w.stop()
    return now + later, first


def build(db: Path, n_events: int, now: datetime, batch: int = 200_000) -> dict:
    from collector.metrics.counters import CounterStore
    from collector.storage import db as dbmod
    from collector.ingest.writer import Writer

    table = generate(n_events, now)
    t0 = time.perf_counter()
    con = dbmod.connect(db)
    writer = Writer(con, CounterStore(), max_queue_events=10**9, max_batch_events=batch)
    writer.start()
    futs = [writer.submit(table.slice(i, batch), [], channel="bench") for i in range(0, table.num_rows, batch)]
    for f in futs:
        f.result()
    writer.stop()
    con.execute("CHECKPOINT")
    con.close()
    return {"events": table.num_rows, "build_seconds": time.perf_counter() - t0}


def _phase(args: list[str], keep: Path | None = None, code: Path = ROOT, threads: int | None = None) -> dict:
    """Run a phase in its own process on a copy of a database, so that no phase (the incremental one writes
    10,000 events and every phase folds) changes what the next phase or the next run starts from; `keep` keeps the
    copy as it is after the phase (the folded history the other phases start from); `code`: the checkout whose code
    the phase imports (this bench's phase runs it); `threads`: DuckDB's worker threads, as the collector's
    OBSERVATORY_DUCKDB_THREADS sets them (None: the collector's default, storage.db.collector_threads)."""
    name, db, now = args
    with tempfile.TemporaryDirectory(dir=Path(db).parent) as tmp:
        copy = Path(tmp) / Path(db).name
        shutil.copyfile(db, copy)
        env = {**os.environ, **({"OBSERVATORY_DUCKDB_THREADS": str(threads)} if threads else {})}
        # this bench's phase, importing the product from `code`: both series are measured the same way
        out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_sli.py"), "--phase", name, str(copy), now,
                              "--code", str(code)], capture_output=True, text=True, check=True, cwd=code, env=env)
        if keep is not None:
            shutil.move(copy, keep)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_mib() -> float:
    """Peak RSS of this process (VmHWM; ru_maxrss would include the parent's peak across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _freeze_start_up() -> None:
    """What the collector's process does once started (collector/ingest/gc_freeze.py): what start-up built, out of
    full garbage collections. A checkout from before it (--before) is frozen the same way, so that both series run
    with the same collections and a difference between them is their code's. Without it a full collection (~40-60
    ms) landed in some phases' timings and not in others', by where each process's allocations put it: in M13's
    per-SLI timing of --before's processes, which compile the product from source (PYTHONDONTWRITEBYTECODE) and so
    allocate more before they measure (docs/performance.md, SLIs, forty-fifth round)."""
    try:
        from collector.ingest import gc_freeze
    except ImportError:
        if os.environ.get("OBSERVATORY_GC_FREEZE", "true").strip().lower() not in ("false", "0", "no", "off"):
            gc.collect()
            gc.freeze()
        return
    from collector.settings import Settings

    gc_freeze.freeze(Settings().gc_freeze)


def phase(name: str, db: Path, now_iso: str) -> dict:
    from collector.ingest import allocators
    from collector.settings import Settings
    from collector.storage import db as dbmod
    from slo.sli import sql as Q
    from slo.sli.compute import compute
    from slo.sli.config import SliConfig, SliQuery
    from slo.sli.fold import fold, rebuild

    settings = Settings()
    allocators.tune(settings.tune_allocators)  # as the collector's process (OBSERVATORY_TUNE_ALLOCATORS)
    now = datetime.fromisoformat(now_iso)
    cfg = SliConfig()
    # as the collector's database (collector/ingest/store.py): OBSERVATORY_DUCKDB_THREADS, else its default, and
    # OBSERVATORY_DUCKDB_MEMORY_LIMIT
    con = dbmod.connect(db, memory_limit=settings.duckdb_memory_limit,
                        threads=dbmod.collector_threads(settings.duckdb_threads))
    con.execute("SET TimeZone = 'UTC'")
    _freeze_start_up()  # as the collector's process, once started (OBSERVATORY_GC_FREEZE)
    base_rss = _peak_mib()
    q = SliQuery(as_of=now, windows=list(cfg.windows), levels=("platform", "team", "trigger"))
    res: dict = {"phase": name}
    if name == "full":
        fold(con, cfg, now=now)  # missed slots are state of their own (reported in `fold`)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            rows = compute(con, q, cfg, mode="direct", fold_first=False)
            times.append(time.perf_counter() - t0)
        res.update(seconds=min(times), all_seconds=times, rows=len(rows))
    elif name == "fold":
        t0 = time.perf_counter()
        st = rebuild(con, cfg, now=now)
        res.update(seconds=time.perf_counter() - t0, attempts=st.attempts, missed=st.new_missed)
        con.execute("CHECKPOINT")  # the other phases start from this folded history
    elif name in LATER:
        fold(con, cfg, now=now)
        now, res["compute_before_seconds"] = before_the_pass(con, cfg, now, name)
        q = SliQuery(as_of=now, windows=list(cfg.windows), levels=("platform", "team", "trigger"))
        # wall, and the process's CPU (every thread's: both sides of the fold, DuckDB's): CPU moves less than
        # wall on a shared machine, so a difference between two checkouts shows in fewer runs
        t0, c0 = time.perf_counter(), time.process_time()
        st = fold(con, cfg, now=now)
        t1, c1 = time.perf_counter(), time.process_time()
        rows = compute(con, q, cfg, fold_first=False)
        t2, c2 = time.perf_counter(), time.process_time()
        res.update(fold_seconds=t1 - t0, compute_seconds=t2 - t1, seconds=t2 - t0, attempts=st.attempts,
                   rows=len(rows), fold_cpu_seconds=c1 - c0, compute_cpu_seconds=c2 - c1,
                   slots_decided=st.slots_decided, missed=st.new_missed)
        timings = {}
        for sli in Q.SLIS:
            t3 = time.perf_counter()
            compute(con, SliQuery(as_of=now, windows=list(cfg.windows), slis=[sli],
                                  levels=("platform", "team")), cfg, fold_first=False)
            timings[sli] = round((time.perf_counter() - t3) * 1000, 1)
        res["per_sli_ms"] = timings
    res["peak_rss_mib"] = _peak_mib()
    res["rss_after_open_mib"] = base_rss
    con.close()
    print(json.dumps(res))
    return res


# fill_baselines' keys in the forms of this bench's history: its notebooks, one parameters and environment hash,
# input hashes `i...` (its own are `i0` to `i4`)
FILL_KEY = ("'nb-' || (i % 1000) AS notebook_id, 'i' || hash('i', i) AS input_hash, 'p' AS parameters_hash, "
            "'e' AS env_hash")


def _fill_baselines(db: Path, n: int) -> None:
    """`n` more baselines in both baseline tables of the folded history `db` (bench_writer.fill_baselines, in this
    bench's key forms: FILL_KEY); stored in the file, so a phase reads them as a restarted collector does."""
    if not n:
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_writer import fill_baselines

    import duckdb

    con = duckdb.connect(str(db))
    try:
        for table in ("sli_repro_baselines", "repro_baselines"):
            fill_baselines(con, n, table, key=FILL_KEY)
    finally:
        con.close()


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def _cpu(runs: list[dict]) -> str:
    """The runs' median CPU (the process's, all threads) per refresh, fold and compute."""
    med = lambda k: statistics.median(r[k] for r in runs) * 1000  # noqa: E731
    return (f"CPU {statistics.median(r['fold_cpu_seconds'] + r['compute_cpu_seconds'] for r in runs) * 1000:.0f} ms "
            f"(fold {med('fold_cpu_seconds'):.0f}, compute {med('compute_cpu_seconds'):.0f})")


def _later_line(title: str, runs: dict[str, list[dict]], code: Path | None) -> str:
    """The runs of a refresh at a later time (LATER), and of the other checkout's, as lines of the report."""
    ms = ", ".join(f"{r['seconds'] * 1000:.0f}" for r in runs["after"])
    before = _median_run(runs["before"]) if runs["before"] else None
    return (f"\n{title}: median of {len(runs['after'])} runs ({ms} ms), {_cpu(runs['after'])}."
            f"{_before_line(before, runs['before'], code)}")


def _fold_before(fold: dict | None, code: Path | None) -> str:
    if fold is None:
        return ""
    return f"; the code of {code}, same run: {fold['seconds']:.1f} s, peak RSS {fold['peak_rss_mib']:.0f} MiB"


def _before_line(before: dict | None, runs: list[dict], code: Path | None) -> str:
    if before is None:
        return ""
    ms = ", ".join(f"{r['seconds'] * 1000:.0f}" for r in runs)
    return (f" Same run, the code of {code} (runs {ms} ms): median **{before['seconds'] * 1000:.0f} ms** (fold "
            f"{before['fold_seconds'] * 1000:.0f} ms, compute {before['compute_seconds'] * 1000:.0f} ms), "
            f"{_cpu(runs)}, peak RSS {before['peak_rss_mib']:.0f} MiB.")


def write_section(text: str, path: Path) -> None:
    section = f"{START}\n{text.rstrip()}\n{END}"
    if path.exists():
        doc = path.read_text()
        if START in doc and END in doc:
            doc = doc[:doc.index(START)] + section + doc[doc.index(END) + len(END):]
        else:
            doc = doc.rstrip() + "\n\n" + section + "\n"
    else:
        doc = "# Performance\n\nFigures measured by the scripts in bench/.\n\n" + section + "\n"
    path.write_text(doc)


def ensure_history(db: Path, events: int, rebuild: bool = False) -> dict:
    """The history in `db` (built once, described in `db` with suffix .json: events, build time, its `now`)."""
    meta = db.with_suffix(".json")
    if rebuild or not db.exists() or not meta.exists():
        for p in (db, meta, Path(str(db) + ".wal")):
            p.unlink(missing_ok=True)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        info = build(db, events, now)
        info["now"] = now.isoformat()
        meta.write_text(json.dumps(info))
    return json.loads(meta.read_text())


def folded_history(db: Path, events: int) -> tuple[Path, dict]:
    """The history folded once (db's .folded.duckdb beside it), made when missing: for the benches that start from
    it (bench/bench_out_of_order.py)."""
    info = ensure_history(db, events)
    folded = db.with_name(db.stem + ".folded.duckdb")
    if not folded.exists():
        _phase(["fold", str(db), info["now"]], keep=folded)
    return folded, info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--db", type=Path, default=ROOT / "var" / "bench_sli.duckdb")
    ap.add_argument("--rebuild", action="store_true", help="Generate the history again")
    ap.add_argument("--no-write", action="store_true", help="Do not update docs/performance.md")
    ap.add_argument("--reps", type=int, default=3, help="Runs of the incremental refresh (median reported)")
    ap.add_argument("--before", type=Path, help="Another checkout (e.g. `git worktree add /tmp/before REV`): its "
                                                "incremental refresh runs alternately with this one's, same history")
    ap.add_argument("--threads-too", type=int, metavar="N",
                    help="Also run this checkout's incremental refresh with DuckDB limited to N threads (the "
                         "collector's OBSERVATORY_DUCKDB_THREADS), alternately, same history")
    ap.add_argument("--baselines", type=int, default=0, metavar="N",
                    help="Store N more reproducibility baselines of other inputs (sli_repro_baselines and the "
                         "deriver's repro_baselines) in the folded history before the other phases: producers that "
                         "hash each run's fresh input data make one per succeeded run")
    ap.add_argument("--phase", nargs=3, metavar=("NAME", "DB", "NOW"), help=argparse.SUPPRESS)
    ap.add_argument("--code", type=Path, help=argparse.SUPPRESS)  # a phase's checkout (_phase)
    a = ap.parse_args()
    if a.phase:
        if a.code is not None and a.code.resolve() != ROOT:
            sys.path.remove(str(ROOT))
            sys.path.insert(0, str(a.code.resolve()))
            import collector
            import slo
            # (as bench/report.py's run_in_checkout checks): the product measured is the checkout's
            assert all(m.__file__.startswith(str(a.code.resolve())) for m in (collector, slo)), a.code
        phase(a.phase[0], Path(a.phase[1]), a.phase[2])
        return
    info = ensure_history(a.db, a.events, a.rebuild)
    print("built:", info, flush=True)
    folded = a.db.with_name(a.db.stem + ".folded.duckdb")
    fold = _phase(["fold", str(a.db), info["now"]], keep=folded)
    print("fold:", fold, flush=True)
    _fill_baselines(folded, a.baselines)
    full = _phase(["full", str(folded), info["now"]])
    print("full:", full, flush=True)
    # the incremental refresh is a few hundred ms on a shared machine: the median of --reps runs, each in its own
    # process on a fresh copy, alternating with --before's code when given (same history, same run; which of the two
    # runs first alternates too)
    runs: dict[str, list[dict]] = {"after": [], "before": [], "threads": []}
    # the refresh at later times (LATER), per phase and series
    later: dict[str, dict[str, list[dict]]] = {ph: {"after": [], "before": []} for ph in LATER if ph != "incremental"}
    folded_before = fold_before = None
    if a.before:  # its own folded history: the other code's migrations and folded tables may differ
        folded_before = a.db.with_name(a.db.stem + ".folded-before.duckdb")
        fold_before = _phase(["fold", str(a.db), info["now"]], keep=folded_before, code=a.before)
        print("fold (before):", fold_before, flush=True)
        _fill_baselines(folded_before, a.baselines)
    series = (("before", a.before, None, folded_before), ("after", ROOT, None, folded),
              ("threads", ROOT if a.threads_too else None, a.threads_too, folded))
    for rep in range(a.reps):
        # each code runs first in every other repetition, so that neither gains by its place (a second process on
        # the same history may find the machine's caches warmer)
        for which, code, threads, history in (series if rep % 2 == 0 else series[1::-1] + series[2:]):
            if code is not None:
                runs[which].append(_phase(["incremental", str(history), info["now"]], code=code, threads=threads))
                print(f"incremental ({which}):", runs[which][-1], flush=True)
            for ph, series_runs in later.items():
                if code is not None and which in series_runs:
                    series_runs[which].append(_phase([ph, str(history), info["now"]], code=code))
                    print(f"{ph} ({which}):", series_runs[which][-1], flush=True)
    inc = _median_run(runs["after"])
    before = _median_run(runs["before"]) if runs["before"] else None
    moved, edge = _median_run(later["later"]["after"]), _median_run(later["boundary"]["after"])
    restart = _median_run(later["restart"]["after"])
    later_lines = "".join(_later_line(title, later[ph], a.before)
                          for title, ph in (("30 s later", "later"), ("When the slots come due", "boundary"),
                                            ("After a scheduler restart", "restart")))
    with_threads = ""
    if runs["threads"]:
        t = _median_run(runs["threads"])
        ms = ", ".join(f"{r['seconds'] * 1000:.0f}" for r in runs["threads"])
        with_threads = (f" Same run, this code with OBSERVATORY_DUCKDB_THREADS={a.threads_too} (runs {ms} ms): "
                        f"median **{t['seconds'] * 1000:.0f} ms** (fold {t['fold_seconds'] * 1000:.0f} ms, compute "
                        f"{t['compute_seconds'] * 1000:.0f} ms).")
    added = f", then {a.baselines:,} reproducibility baselines of other inputs stored in each baseline table" \
        if a.baselines else ""
    from collector.settings import Settings

    limit = Settings().duckdb_memory_limit  # (the phases' too: `phase`)
    text = f"""## SLIs (bench/bench_sli.py)

Machine: {os.cpu_count()} cores (shared), DuckDB {__import__('duckdb').__version__}. History: {info['events']:,} stored
events over 60 days (20 teams, 1,000 notebooks, 200 hourly schedules), committed through the real writer in
{info['build_seconds']:.0f} s{added}. Windows {', '.join(json.loads(os.environ.get('OBSERVATORY_SLI_WINDOWS', '["1h","1d","7d","30d"]')))},
levels platform + team (+ trigger for M1). Each phase runs in its own process; peak RSS is that process's. DuckDB's
memory limit: {limit or "its default, 80% of the host's memory (OBSERVATORY_DUCKDB_MEMORY_LIMIT)"}.

| measurement | target | result | peak RSS |
|---|---|---|---|
| full computation of all SLIs, all windows and teams, from the core tables (`mode=direct`, best of 3) | ≤ 2 s | {full['seconds']:.2f} s | {full['peak_rss_mib']:.0f} MiB |
| incremental refresh after 10,000 new events: fold + compute (what the gauge refresher does) | ≤ 100 ms | {inc['seconds'] * 1000:.0f} ms (fold {inc['fold_seconds'] * 1000:.0f} ms, compute {inc['compute_seconds'] * 1000:.0f} ms) | {inc['peak_rss_mib']:.0f} MiB |
| the same refresh 30 s later, 15 s after a pass: the windows end later, the kept sums and durations slide (a gauge refresher's pass) | – | {moved['seconds'] * 1000:.0f} ms (fold {moved['fold_seconds'] * 1000:.0f} ms, compute {moved['compute_seconds'] * 1000:.0f} ms) | {moved['peak_rss_mib']:.0f} MiB |
| the same refresh when the 200 hourly schedules' next slots come due, 15 s after a pass: they are enumerated and decided, misses looked for (once an hour) | – | {edge['seconds'] * 1000:.0f} ms (fold {edge['fold_seconds'] * 1000:.0f} ms, compute {edge['compute_seconds'] * 1000:.0f} ms; {edge['slots_decided']} slots decided, {edge['missed']} misses) | {edge['peak_rss_mib']:.0f} MiB |
| the refresh 30 s later after a scheduler restart: the 200 schedules registered again, unchanged, among the 10,000 events (staged first; as none changes a slot, the sides fold apart) | – | {restart['seconds'] * 1000:.0f} ms (fold {restart['fold_seconds'] * 1000:.0f} ms, compute {restart['compute_seconds'] * 1000:.0f} ms) | {restart['peak_rss_mib']:.0f} MiB |
| initial fold of the whole history into the SLI tables (one-off, then incremental) | – | {fold['seconds']:.1f} s ({fold['attempts']:,} attempts, {fold['missed']:,} missed slots){_fold_before(fold_before, a.before)} | {fold['peak_rss_mib']:.0f} MiB |

Incremental refresh: median of {len(runs['after'])} runs ({', '.join(f"{r['seconds'] * 1000:.0f}" for r in runs['after'])} ms), {_cpu(runs['after'])}.{_before_line(before, runs['before'], a.before)}{with_threads}
{later_lines}
Per SLI (incremental compute, all windows, platform + team), ms: {', '.join(f"{k} {v}" for k, v in inc['per_sli_ms'].items())}.

Command: `{f'OBSERVATORY_DUCKDB_MEMORY_LIMIT={limit} ' if limit else ''}.venv/bin/python bench/bench_sli.py --events {info['events']} --reps {a.reps}{f' --baselines {a.baselines}' if a.baselines else ''}{' --before CHECKOUT' if a.before else ''}{f' --threads-too {a.threads_too}' if a.threads_too else ''}`.
"""
    print(text)
    if not a.no_write:
        write_section(text, ROOT / "docs" / "performance.md")


if __name__ == "__main__":
    main()
