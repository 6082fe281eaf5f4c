"""What an incremental SLI fold's statements cost on their own, replayed many times on one state, and what planning
each once (PREPARE) would save.

    .venv/bin/python bench/replay_fold.py                    # 9 replays of the fold after 10,000 new events
    .venv/bin/python bench/replay_fold.py --at boundary      # the pass when the hourly slots come due
    .venv/bin/python bench/replay_fold.py --prepared         # also each statement PREPAREd once, alternated
    .venv/bin/python bench/replay_fold.py --write            # the figures into docs/performance.md

Why: bench/profile_sli.py times one fold, statement by statement, and a single run on a shared machine moves by tens
of percent, and DuckDB's own profiler, on, made the same fold ~45% slower (forty-seventh round).
This runs the fold once to learn its statements (and their parameters), then runs exactly those statements again,
in order, inside a transaction it rolls back, so every replay starts from the same state; the medians per statement
are what each costs. The fold itself (its Python and its statements) is timed the same way beside the replays: the
difference is what the fold's Python costs.

With `--prepared`, every statement DuckDB can prepare is prepared once and the replay runs `EXECUTE` instead, its
parameters rendered as literals (DuckDB does not take parameters for EXECUTE); the fold's temporary tables (CREATE
... AS, which DuckDB cannot prepare) become tables of the same columns, emptied and filled by a prepared INSERT.
Alternated with the plain replay: what preparing saves on this DuckDB (whose `EXECUTE` binds and optimizes
again: docs/performance.md, fortieth round), the emptying of the staging tables included.

On a copy of `var/bench_sli.folded.duckdb` (bench/bench_sli.py's fold phase), as bench/profile_sli.py. The runs
run in line, on one connection: the work slo/sli/beside.py runs on a second cursor is among the statements here.
No assertions: it measures.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from datetime import datetime
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from profile_sli import Read, folded_copy  # noqa: E402
from report import machine, write_section  # noqa: E402

_TRANSACTION = ("BEGIN TRANSACTION", "BEGIN", "COMMIT", "ROLLBACK")
_CTAS = re.compile(r"\s*CREATE OR REPLACE TEMP TABLE (\w+) AS(.*)", re.S)


class _Rows:
    """A statement's rows, read already (so that the recorder can ask DuckDB something in between)."""

    def __init__(self, rows: list[tuple]) -> None:
        self._rows = rows

    def fetchone(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple]:
        return self._rows


@dataclass(frozen=True)
class _Register:
    """A step that registers an Arrow table under `name` (the fold's slots and decisions, computed in Python), or
    unregisters it (`table` None)."""

    name: str
    table: Any

    def __str__(self) -> str:
        return f"{'register' if self.table is not None else 'unregister'} {self.name}"


class Recorder:
    """A connection that records every statement with its parameters, and the columns of every temporary table a
    CREATE ... AS makes; it leaves out the fold's transaction statements, so that the caller's transaction holds
    all of them (and can roll them back)."""

    def __init__(self, con: Any) -> None:
        self._con = con
        self.log: list[tuple[str | _Register, Any]] = []
        self.shapes: dict[str, list[tuple[str, str]]] = {}

    def execute(self, sql: str, params: Any = None) -> Any:
        if sql.strip().upper() in _TRANSACTION:
            return self._con
        self.log.append((sql, params))
        result = self._con.execute(sql, params) if params is not None else self._con.execute(sql)
        m = _CTAS.match(sql)
        if m and m.group(1) not in self.shapes:
            rows = result.fetchall()
            self.shapes[m.group(1)] = self._con.execute(
                f"SELECT column_name, column_type FROM (DESCRIBE temp.{m.group(1)})").fetchall()
            return _Rows(rows)
        return result

    def register(self, name: str, table: Any) -> Any:
        self.log.append((_Register(name, table), None))
        return self._con.register(name, table)

    def unregister(self, name: str) -> Any:
        self.log.append((_Register(name, None), None))
        return self._con.unregister(name)

    def sql(self, sql: str, params: Any = None) -> Read:
        self.log.append((sql, params))
        rel = self._con.sql(sql, params=params)
        return Read(rel.to_arrow_table() if rel is not None else None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _replay(con: Any, steps: list[tuple[str | None, Any, Any]]) -> list[float]:
    """Each step (a statement to run first or None, the statement or registration, its parameters) timed, in a
    transaction rolled back."""
    times = []
    con.execute("BEGIN TRANSACTION")
    try:
        for first, sql, params in steps:
            t0 = time.perf_counter()
            if first:
                con.execute(first)
            if isinstance(sql, _Register):
                con.complete()  # (DuckDB 2.0 registers nothing while a result is unread)
                con.register(sql.name, sql.table) if sql.table is not None else con.unregister(sql.name)
            else:
                con.execute(sql, params) if params is not None else con.execute(sql)
            times.append(time.perf_counter() - t0)
    finally:
        con.execute("ROLLBACK")
    return times


def _prepared(con: Any, rec: Recorder) -> tuple[list[tuple[str | None, Any, Any]], list[str]]:
    """The recorded statements as prepared ones where DuckDB can prepare them (a CREATE ... AS as DELETE and a
    prepared INSERT into a table of its columns); the others as they were, listed."""
    from collector.storage.sqltext import lit, ts_lit

    def literal(v: Any) -> str:
        """A parameter's value as SQL text (the fold's own values: texts, numbers, timestamps, lists of them)."""
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(literal(x) for x in v) + "]"
        if isinstance(v, datetime):
            return ts_lit(v)
        if isinstance(v, bool) or v is None:
            return {True: "true", False: "false", None: "NULL"}[v]
        return repr(v) if isinstance(v, (int, float)) else lit(v)

    for table, cols in rec.shapes.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({', '.join(f'{c} {t}' for c, t in cols)})")
    steps: list[tuple[str | None, Any, Any]] = []
    left: list[str] = []
    for i, (sql, params) in enumerate(rec.log):
        if isinstance(sql, _Register):
            steps.append((None, sql, None))
            continue
        m = _CTAS.match(sql)
        body = f"INSERT INTO {m.group(1)} {m.group(2)}" if m else sql
        try:
            con.execute(f"PREPARE replay_{i} AS {body}")
        except Exception as exc:  # noqa: BLE001 - DuckDB says which kinds it cannot prepare
            left.append(f"{' '.join(sql.split())[:60]}... ({str(exc).splitlines()[0][:80]})")
            steps.append((None, sql, params))
            continue
        if isinstance(params, dict):
            args = ", ".join(f"{k} := {literal(v)}" for k, v in params.items())
        else:
            args = ", ".join(literal(v) for v in params or ())
        steps.append((f"DELETE FROM {m.group(1)}" if m else None, f"EXECUTE replay_{i}({args})" if args
                      else f"EXECUTE replay_{i}", None))
    return steps, left


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, default=ROOT / "var" / "bench_sli.folded.duckdb")
    ap.add_argument("--at", choices=["incremental", "later", "boundary", "restart"], default="incremental",
                    help="which of bench_sli.py's passes (as bench/profile_sli.py --at)")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--prepared", action="store_true", help="also replay every statement prepared once")
    ap.add_argument("--write", action="store_true", help="write the figures into docs/performance.md")
    a = ap.parse_args()
    import duckdb

    import bench_sli
    from slo.sli.fold import fold

    with folded_copy(a.db) as (con, cfg, now):
        now, _ = bench_sli.before_the_pass(con, cfg, now, a.at)
        rec = Recorder(con)
        con.execute("BEGIN TRANSACTION")
        fold(rec, cfg, now=now)
        con.execute("ROLLBACK")
        plain = [(None, sql, params) for sql, params in rec.log]
        prepared, left = _prepared(con, rec) if a.prepared else ([], [])
        runs: dict[str, list[list[float]]] = {"plain": [], "prepared": [], "fold": []}
        for r in range(a.reps):
            order = ["plain", "prepared", "fold"] if r % 2 == 0 else ["fold", "prepared", "plain"]
            for kind in order:
                if kind == "prepared" and not prepared:
                    continue
                if kind == "fold":
                    con.execute("BEGIN TRANSACTION")
                    t0 = time.perf_counter()
                    fold(Recorder(con), cfg, now=now)
                    runs["fold"].append([time.perf_counter() - t0])
                    con.execute("ROLLBACK")
                else:
                    runs[kind].append(_replay(con, plain if kind == "plain" else prepared))

    def total(kind: str) -> float:
        return 1e3 * statistics.median(sum(r) for r in runs[kind])

    per = [1e3 * statistics.median(r[i] for r in runs["plain"]) for i in range(len(plain))]
    registrations = sum(isinstance(step[1], _Register) for step in plain)
    statements = f"{len(plain) - registrations} statements" + (f" and {registrations} registrations of Arrow tables"
                                                               if registrations else "")
    executes = sum(str(step[1]).startswith("EXECUTE ") for step in prepared)
    print(f"{statements}; the fold {total('fold'):.1f} ms, its statements replayed {total('plain'):.1f} ms"
          + (f", prepared {total('prepared'):.1f} ms" if prepared else "") + " (medians)")
    top = sorted(range(len(plain)), key=lambda i: -per[i])[:a.top]
    for i in top:
        print(f"  {per[i]:6.2f} ms  {' '.join(str(plain[i][1]).split())[:110]}")
    for what in left:
        print("  not prepared:", what)
    if not a.write:
        return
    rows = "\n".join(f"| {per[i]:.2f} | `{' '.join(str(plain[i][1]).split())[:90]}...` |" for i in top)
    prep = (f" Prepared once (`--prepared`; {executes} of {len(plain) - registrations} statements, the others as "
            f"they were): **{total('prepared'):.1f} ms** (runs {', '.join(f'{1e3 * sum(r):.0f}' for r in runs['prepared'])})."
            if prepared else "")
    write_section("replay-fold", f"""
Measured by `bench/replay_fold.py` (module docstring: what and why).

Machine: {machine()}; DuckDB {duckdb.__version__}. Command: `python bench/replay_fold.py --at {a.at} --reps {a.reps}{' --prepared' if prepared else ''} --write`. The fold of bench_sli.py's `{a.at}` pass on its 10M-event history, then its {statements} replayed {a.reps} times in order, each replay in a transaction rolled back; medians.

The fold (its Python and its statements): **{total('fold'):.1f} ms** (runs {', '.join(f'{1e3 * r[0]:.0f}' for r in runs['fold'])}). Its statements alone: **{total('plain'):.1f} ms** (runs {', '.join(f'{1e3 * sum(r):.0f}' for r in runs['plain'])}).{prep}

| ms (median) | statement |
|---|---|
{rows}
""")


if __name__ == "__main__":
    main()
