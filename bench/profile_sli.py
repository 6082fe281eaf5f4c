"""Where an SLI computation spends its time, statement by statement (wall and process CPU), on bench_sli.py's history.

    .venv/bin/python bench/profile_sli.py direct        # the full computation (mode=direct), 3 times
    .venv/bin/python bench/profile_sli.py incremental   # 10,000 new events, then the fold and the computation
    .venv/bin/python bench/profile_sli.py incremental --at boundary   # the same, as bench_sli.py's LATER phases

Works on a copy of `var/bench_sli.folded.duckdb` (written by bench/bench_sli.py's fold phase), so the history is
not changed. CPU is the process's (DuckDB's threads included): on a shared machine it moves less than wall time.
The timing proxy is not a DuckDB connection, so the work slo/sli/beside.py would run beside (the fold's run
attempts, the snapshot SLIs) runs in line here: every statement is listed, and the totals are their sum.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Timed:
    """A connection whose `execute` records (wall s, CPU s, statement) for every statement."""

    def __init__(self, con) -> None:
        self._con, self.log = con, []

    def execute(self, sql, params=None):
        t0, c0 = time.perf_counter(), time.process_time()
        r = self._con.execute(sql, params) if params is not None else self._con.execute(sql)
        self.log.append((time.perf_counter() - t0, time.process_time() - c0, " ".join(sql.split())))
        return r

    def sql(self, sql, params=None):
        """`sql()` statements (the Arrow reads: collector/storage/db.py `arrow`) run at once, so that their time is
        theirs and not that of whatever reads the relation."""
        t0, c0 = time.perf_counter(), time.process_time()
        rel = self._con.sql(sql, params=params)
        table = rel.to_arrow_table() if rel is not None else None
        self.log.append((time.perf_counter() - t0, time.process_time() - c0, " ".join(sql.split())))
        return Read(table)

    def __getattr__(self, k):
        return getattr(self._con, k)


class Read:
    """A `sql()` result already read (Timed.sql)."""

    def __init__(self, table) -> None:
        self._table = table

    def to_arrow_table(self):
        return self._table


def report(title: str, timed: Timed, wall: float, cpu: float, top: int) -> None:
    print(f"{title}: wall {wall * 1000:.0f} ms, CPU {cpu * 1000:.0f} ms, {len(timed.log)} statements")
    for w, c, sql in sorted(timed.log, reverse=True)[:top]:
        print(f"  {w * 1000:7.1f} ms  CPU {c * 1000:7.1f} ms  {sql[:110]}")


@contextmanager
def folded_copy(db: Path, meta: Path | None = None) -> Iterator[tuple[Any, Any, datetime]]:
    """A copy of bench_sli.py's folded history (`db`), opened as the collector opens its database and folded at the
    history's `now`: (connection, SLI config, now). The copy goes on exit, so the history is never changed."""
    from collector.settings import Settings
    from collector.storage import db as dbmod
    from slo.sli.config import SliConfig
    from slo.sli.fold import fold

    # the history's `now`, from bench_sli.py's file beside it (X.folded.duckdb -> X.json; a copy: `meta`)
    meta = meta or db.with_name(db.name.removesuffix(".folded.duckdb") + ".json")
    now = datetime.fromisoformat(json.loads(meta.read_text())["now"])
    cfg = SliConfig()
    with tempfile.TemporaryDirectory(dir=db.parent) as tmp:
        copy = Path(tmp) / db.name
        shutil.copyfile(db, copy)
        # as the collector's database (collector/ingest/store.py): its DuckDB threads (one on two cores, not DuckDB's
        # default of one per core) and memory limit, OBSERVATORY_DUCKDB_THREADS / _MEMORY_LIMIT
        settings = Settings()
        con = dbmod.connect(copy, memory_limit=settings.duckdb_memory_limit,
                            threads=dbmod.collector_threads(settings.duckdb_threads))
        try:
            con.execute("SET enable_progress_bar = false")
            fold(con, cfg, now=now)
            yield con, cfg, now
        finally:
            con.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["direct", "incremental"])
    ap.add_argument("--db", type=Path, default=ROOT / "var" / "bench_sli.folded.duckdb")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--at", choices=["incremental", "later", "boundary", "restart"], default="incremental",
                    help="incremental mode: when the refresh runs (bench_sli.py's LATER: at the history's now, a "
                         "refresher's pass 30 s on, the first pass after the hourly slots come due, or a pass 30 s on "
                         "after the scheduler registered its schedules again)")
    ap.add_argument("--meta", type=Path, default=None, help="bench_sli.py's JSON of the history (default: beside --db)")
    a = ap.parse_args()
    from slo.sli.compute import compute
    from slo.sli.config import SliQuery
    from slo.sli.fold import fold

    with folded_copy(a.db, a.meta) as (con, cfg, now):
        q = SliQuery(as_of=now, windows=list(cfg.windows), levels=("platform", "team", "trigger"))
        if a.mode == "incremental":
            import bench_sli

            now, _ = bench_sli.before_the_pass(con, cfg, now, a.at)
            q = SliQuery(as_of=now, windows=list(cfg.windows), levels=q.levels)
            timed = Timed(con)
            t0, c0 = time.perf_counter(), time.process_time()
            fold(timed, cfg, now=now)
            report("fold", timed, time.perf_counter() - t0, time.process_time() - c0, a.top)
        for _ in range(3 if a.mode == "direct" else 1):
            timed = Timed(con)
            t0, c0 = time.perf_counter(), time.process_time()
            compute(timed, q, cfg, mode="direct" if a.mode == "direct" else "incremental", fold_first=False)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        report("compute", timed, wall, cpu, a.top)


if __name__ == "__main__":
    main()
