"""Incremental maintenance of the derived tables and of the persisted Prometheus counters.

Everything here reads only the batch the current writer transaction has just inserted (an Arrow table carrying
the typed fields of storage.schema.DERIVE_FIELDS, filled at validation time, so nothing here parses the JSON
`data`) plus the stored rows it merges with. The large derived tables (run attempts, kernel sessions) are looked
up among their recent rows only, so the cost of a batch grows with the batch, not with history: DuckDB answers
`ON CONFLICT` and any join on a key with a scan of the whole table (see RUN_LOOKBACK). The reproducibility
baselines, which no time bounds, are looked up by a 64-bit digest of their key (schema.BASELINE_KEY_HASH): a scan
still, but of one 8-byte column rather than four texts. The batch is aggregated per table in polars
(storage/batch.py); the upserts, the first-terminal lookup and the baselines' reads and writes are the SQL of the
ingest path, all in this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import duckdb
import polars as pl
import pyarrow as pa

from collector.storage import batch
from collector.storage.schema import BASELINE_KEY_HASH, DERIVE_FIELDS, EVENT_COLUMNS, field_from_data
from collector.storage.sqltext import ident

# Upper bounds of notebook_run_duration_seconds; notebook runs last seconds to hours.
DURATION_BUCKETS: tuple[float, ...] = (
    1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400,
)


@dataclass(frozen=True, slots=True)
class CounterDelta:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def _acc(f: str, stored: str, b: str, pre: str = "") -> str:
    """The identity field `f` of a stored attempt (alias `stored`) after folding in the candidates `b.{pre}f_*`
    (collector/storage/batch.py: `_run_combine`): the last older record's value, else the stored value, else the
    first value."""
    return (f"CASE WHEN {b}.{pre}{f}_last_fs < {stored}.first_seen_at THEN {b}.{pre}{f}_last "
            f"WHEN {stored}.{f} IS NOT NULL THEN {stored}.{f} ELSE {b}.{pre}{f}_first END")


def _before_first_end(f: str) -> str:
    """`f` of the attempt as stored just before the batch of its first terminal event: the stored row (`r`, null
    when none) with the batches before that one folded in."""
    return f"CASE WHEN r.run_id IS NULL THEN coalesce(b.pre_{f}_last, b.pre_{f}_first) ELSE {_acc(f, 'r', 'b', 'pre_')} END"


# Each attempt of the batches beside its stored row (`{stored}`: run_attempts, or its recent rows), if any. The
# attempts whose first terminal event arrives in these batches (one of them has an end time, the stored row has
# none) are what notebook_run_attempts_total counts, labelled as the attempt was stored just before that batch.
_BESIDE_STORED = f"""
SELECT
    b.run_id, b.attempt,
    b.ft_ended_at IS NOT NULL AND r.ended_at IS NULL AS first_terminal,
    b.ft_state AS outcome, b.ft_duration_seconds AS duration_seconds, b.ft_ended_at AS ended_at,
    b.ft_output_hash AS output_hash, b.ft_input_hash AS input_hash, b.ft_parameters_hash AS parameters_hash,
    b.ft_env_hash AS env_hash,
    coalesce(b.ft_notebook_id, {_before_first_end("notebook_id")}) AS notebook_id,
    coalesce({_before_first_end("team")}, b.ft_team) AS team,
    coalesce({_before_first_end("trigger")}, b.ft_trigger) AS trigger,
    coalesce({_before_first_end("environment")}, b.ft_environment) AS environment,
    b.ft_seq AS seq
FROM batch_runs b
LEFT JOIN {{stored}} r ON r.run_id = b.run_id AND r.attempt = b.attempt
"""
_FIRST_TERMINAL_COLS = ("run_id", "attempt", "outcome", "duration_seconds", "ended_at", "output_hash", "input_hash",
                        "parameters_hash", "env_hash", "notebook_id", "team", "trigger", "environment", "seq")

# Where a batch's attempts are looked for first: rows first seen since RUN_LOOKBACK before the batch's earliest
# attempt. DuckDB plans `INSERT ... ON CONFLICT` (and any join on the key) as a scan of the whole table: at 2.2M
# stored attempts the upsert took ~100 ms and the first-terminal lookup ~45 ms of every commit, growing with
# history. Attempts are stored in arrival order, so the bound on first_seen_at skips all but the last row groups.
# The bound is only a guess: an attempt stored before it is not found, goes to the MERGE's INSERT, which checks the
# key in its index and fails; the writer then does the transaction again with `exhaustive` (the whole table).
RUN_LOOKBACK = timedelta(days=2)
# Kernel sessions the same way, by their last event: a kernel idle for days and then shut down goes the slow way.
KERNEL_LOOKBACK = timedelta(days=7)


class StoredBeforeLookback(Exception):
    """A row of the batch was stored before its lookback bound: do the transaction again, exhaustively."""


_NEWER_TERM = (
    "(b.ended_at IS NOT NULL AND (run_attempts.ended_at IS NULL OR "
    "(b.ended_at, b.terminal_event_id) > (run_attempts.ended_at, run_attempts.terminal_event_id)))"
)
_TERM_COLS = (
    "ended_at", "duration_seconds", "error_type", "error_message", "output_hash", "input_hash", "parameters_hash",
    "env_hash", "cpu_seconds", "max_memory_bytes", "cells", "terminal_event_id",
)
_SET_RUNS = f"""
    {", ".join(f"{f} = {_acc(f, 'run_attempts', 'b')}" for f in batch.RUN_IDENTITY)},
    queued_at = least(run_attempts.queued_at, b.queued_at),
    started_at = least(run_attempts.started_at, b.started_at),
    scheduled_for = least(run_attempts.scheduled_for, b.scheduled_for),
    state = CASE
        WHEN {_NEWER_TERM} THEN b.state
        WHEN run_attempts.ended_at IS NOT NULL THEN run_attempts.state
        WHEN least(run_attempts.started_at, b.started_at) IS NOT NULL THEN 'started'
        ELSE 'queued' END,
    {", ".join(f"{c} = CASE WHEN {_NEWER_TERM} THEN b.{c} ELSE run_attempts.{c} END" for c in _TERM_COLS)},
    terminal_events = run_attempts.terminal_events + b.terminal_events,
    updated_batch = b.updated_batch,
    first_seen_at = least(run_attempts.first_seen_at, b.first_seen_at),
    last_event_at = greatest(run_attempts.last_event_at, b.last_event_at)
"""

_SET_KERNELS = """
    team = coalesce(kernel_sessions.team, b.team),
    owner = coalesce(kernel_sessions.owner, b.owner),
    notebook_id = coalesce(kernel_sessions.notebook_id, b.notebook_id),
    notebook_path = coalesce(kernel_sessions.notebook_path, b.notebook_path),
    started_at = least(kernel_sessions.started_at, b.started_at),
    restarts = kernel_sessions.restarts + b.restarts,
    crash_restarts = kernel_sessions.crash_restarts + b.crash_restarts,
    deaths = kernel_sessions.deaths + b.deaths,
    end_reason = CASE WHEN b.reason_at >= coalesce(kernel_sessions.ended_at, b.reason_at)
                      THEN b.end_reason ELSE kernel_sessions.end_reason END,
    ended_at = greatest(kernel_sessions.ended_at, b.ended_at),
    last_exit_code = coalesce(b.last_exit_code, kernel_sessions.last_exit_code),
    last_event_at = greatest(kernel_sessions.last_event_at, b.last_event_at)
"""


@dataclass(frozen=True)
class _Merge:
    """A derived table's upsert, as one MERGE of a combined batch frame (alias `b`): the stored rows with the
    frame's keys updated by `set_clause`, the others inserted from the frame's columns of the table (the frame
    may carry more: the candidates of collector/storage/batch.py).

    Bounded (`recent`): DuckDB scans only the target's rows with `recent` >= $bound (zone maps; rows are stored in
    its order, roughly), as the lookup, UPDATE and INSERT it replaced did, with one statement and one registered
    frame instead of three and two (the derive of a 4,000-event batch: 103-109 -> 95-96 ms,
    `bench/bench_writer.py`, alternated). A row stored before the bound is not matched, so it is inserted, and
    the insert fails on the key: StoredBeforeLookback, and the caller does it again without the bound."""

    table: str
    key: tuple[str, ...]
    set_clause: str
    candidates: frozenset[str] = frozenset()  # the frame's columns that are not the table's
    recent: str | None = None  # the stored column the lookback bound applies to

    def sql(self, frame: pl.DataFrame, bounded: bool) -> str:
        cols = [c for c in frame.columns if c not in self.candidates]
        on = " AND ".join(f"{self.table}.{k} = b.{k}" for k in self.key)
        if bounded:
            on += f" AND {self.table}.{self.recent} >= $bound"
        return (f"MERGE INTO {self.table} USING {self.table}_batch b ON {on} "
                f"WHEN MATCHED THEN UPDATE SET {self.set_clause} "
                f"WHEN NOT MATCHED THEN INSERT ({', '.join(map(ident, cols))}) "
                f"VALUES ({', '.join('b.' + ident(c) for c in cols)})")

    @property
    def recent_rows(self) -> str:
        return f"(SELECT * FROM {self.table} WHERE {self.recent} >= $bound)"


_RUNS = _Merge("run_attempts", ("run_id", "attempt"), _SET_RUNS, batch.RUN_CANDIDATES, "first_seen_at")
_KERNELS = _Merge("kernel_sessions", ("kernel_id",), _SET_KERNELS, batch.KERNEL_CANDIDATES, "last_event_at")


def _merge(con: duckdb.DuckDBPyConnection, spec: _Merge, frame: pl.DataFrame, bound: object = None) -> None:
    """Merge `frame` into `spec.table`, the bounded way when `bound` is given; StoredBeforeLookback when a row it
    inserts is stored after all (before the bound: the insert checks the key in its index and fails)."""
    if frame.height == 0:
        return
    name = f"{spec.table}_batch"
    con.register(name, _arrow(frame))
    if bound is None:
        try:
            con.execute(spec.sql(frame, bounded=False))
        finally:
            con.unregister(name)
        return
    try:
        con.execute(spec.sql(frame, bounded=True), {"bound": bound})
    except duckdb.ConstraintException:  # the transaction is aborted: no unregister (it would fail). Stored
        # before the bound, or a row no retry can fix (the exhaustive way fails on it again). Not chained:
        # DuckDB's message quotes the key, a request value.
        raise StoredBeforeLookback() from None
    con.unregister(name)


# Registry fields: each keeps the value of the newest event (by time, then id) that set it.
_REGISTRY_FIELDS = ("owner", "team", "notebook_path", "tags", "critical", "has_tests", "created_at")
_REGISTRY_TYPES = ("notebook.registered", "notebook.updated")
_NOTEBOOKS = _Merge("notebooks", ("notebook_id",), f"""
    {", ".join(
        f"{f} = CASE WHEN b.{f}_at IS NOT NULL AND (notebooks.{f}_at IS NULL OR b.{f}_at >= notebooks.{f}_at) "
        f"THEN b.{f} ELSE notebooks.{f} END, "
        f"{f}_at = greatest(notebooks.{f}_at, b.{f}_at)"
        for f in _REGISTRY_FIELDS)},
    registered_at = least(notebooks.registered_at, b.registered_at),
    promoted_at = least(notebooks.promoted_at, b.promoted_at),
    updated_at = greatest(notebooks.updated_at, b.updated_at)
""")

_SCHEDULES = _Merge("schedules", ("notebook_id",), """
    team = CASE WHEN b.team_at >= schedules.registered_at THEN b.team ELSE schedules.team END,
    cron = CASE WHEN b.registered_at >= schedules.registered_at THEN b.cron ELSE schedules.cron END,
    timezone = CASE WHEN b.registered_at >= schedules.registered_at THEN b.timezone ELSE schedules.timezone END,
    grace_seconds = CASE WHEN b.registered_at >= schedules.registered_at THEN b.grace_seconds ELSE schedules.grace_seconds END,
    registered_at = greatest(schedules.registered_at, b.registered_at)
""", batch.SCHEDULE_CANDIDATES)

# Reproducibility for the counter: a first-terminal succeeded attempt (`repro_new`, the candidates of
# `first_terminal`) is compared with the earliest known succeeded attempt of the same (notebook, input,
# parameters, environment). The SLI (M2) recomputes this on event time from run_attempts; the counter records what
# ingest saw.
_REPRO_KEYS = ("notebook_id", "output_hash", "input_hash", "parameters_hash", "env_hash")
_BASELINE_KEY = ["notebook_id", "input_hash", "parameters_hash", "env_hash"]
_BASELINE_VALUES = ["run_id", "attempt", "output_hash", "ended_at"]
# repro_baselines is looked up by the digest of its key (schema.BASELINE_KEY_HASH): at 1,000,000 baselines the
# primary key's upsert and the comparison, joins on the four key texts, cost 82 + 60 ms per derive pass, growing
# with history (docs/performance.md, eighteenth round); the full key is compared in polars. The row ids first, then
# the rows by row id: in one join, DuckDB read the texts of every baseline the collector itself appended (not of
# those a restart loaded from the file), 40 against 15 ms at 1,000,000.
_STORED_BASELINES = f"""
SELECT rowid AS row_id, * EXCLUDE (key_hash) FROM repro_baselines WHERE rowid IN (
    SELECT b.rowid FROM repro_baselines b
    SEMI JOIN (SELECT {BASELINE_KEY_HASH} AS key_hash FROM repro_new) n USING (key_hash))
"""
# `repro_rows`: the baselines to store, with the row id of the stored one they replace (null: a new key)
_INSERT_BASELINES = f"""
INSERT INTO repro_baselines BY NAME
SELECT {BASELINE_KEY_HASH} AS key_hash, * EXCLUDE (row_id) FROM repro_rows WHERE row_id IS NULL
"""
_UPDATE_BASELINES = f"""
UPDATE repro_baselines SET {", ".join(f"{c} = u.{c}" for c in _BASELINE_VALUES)}
FROM repro_rows u WHERE repro_baselines.rowid = u.row_id
"""
_EARLIEST = ["ended_at", "run_id", "attempt"]

# polars' engine for the fold's plans. Its default ("auto") runs them on the streaming engine, which costs twice the
# in-memory engine's time on frames of this size: the plans of a 16,000-event fold 53 -> 24 ms, of a
# 100,000-event chunk 88 -> 33 ms wall and 136 -> 54 ms of CPU (docs/performance.md, seventeenth round).
ENGINE = "in-memory"


def _label(col: str) -> pl.Expr:
    return pl.col(col).fill_null("unknown")


_T = pl.col("type")
_REASON = pl.col("reason")
# Counters that count events as ingested: name -> (label expressions, row condition), over the batch's rows.
_EVENT_COUNTERS: dict[str, tuple[tuple[tuple[str, pl.Expr], ...], pl.Expr]] = {
    "observatory_events_ingested_total": ((("source", pl.col("source")), ("type", _T)), pl.lit(True)),
    "notebook_kernel_sessions_total": ((("team", _label("team")),), _T == "notebook.kernel.started"),
    "notebook_kernel_crashes_total": (
        (("team", _label("team")), ("reason", _REASON)),
        (_T == "notebook.kernel.died") | ((_T == "notebook.kernel.restarted") & _REASON.is_in(["crash", "oom"]))),
    "notebook_reproducibility_checks_total": (
        (("team", _label("team")), ("result", pl.col("result"))), _T == "notebook.reproducibility.checked"),
    "notebook_quality_checks_total": ((("team", _label("team")), ("result", pl.col("result"))),
                                      _T == "notebook.quality.checked"),
    "notebook_secret_exposures_total": ((("team", _label("team")),),
                                        (_T == "notebook.security.secret_detected") | (pl.col("redactions") > 0)),
    "notebook_platform_probes_total": (
        (("target", pl.col("target")),
         ("result", pl.when(pl.col("ok")).then(pl.lit("ok")).otherwise(pl.lit("failed")))),
        _T == "platform.probe"),
}


_EVENT_COUNTER_PARTS = [
    (cond, (pl.lit(name).alias("name"), labels[0][1].cast(pl.String).alias("l1"),
            (labels[1][1] if len(labels) > 1 else pl.lit(None)).cast(pl.String).alias("l2")))
    for name, (labels, cond) in _EVENT_COUNTERS.items()]


def _event_counts(new: pl.DataFrame) -> pl.LazyFrame:
    """The counts behind the counters of events as ingested, set-wise over the batch (one polars query, no SQL
    statement; the expressions are built once at import)."""
    parts = [new.lazy().filter(cond).select(*cols) for cond, cols in _EVENT_COUNTER_PARTS]
    return pl.concat(parts).group_by("name", "l1", "l2").len()


def _event_counters(counts: pl.DataFrame) -> list[CounterDelta]:
    """The counter increments of `_event_counts`."""
    deltas = []
    for name, l1, l2, n in counts.iter_rows():
        names = [k for k, _ in _EVENT_COUNTERS[name][0]]
        deltas.append(CounterDelta(name, tuple(zip(names, (str(v) for v in (l1, l2)[: len(names)]))), float(n)))
    return deltas


_BUCKET = pl.col("duration_seconds")


def _le() -> pl.Expr:
    """The histogram bucket label (upper bound) of each duration."""
    expr = pl.when(_BUCKET <= DURATION_BUCKETS[0]).then(pl.lit(str(DURATION_BUCKETS[0])))
    for b in DURATION_BUCKETS[1:]:
        expr = expr.when(_BUCKET <= b).then(pl.lit(str(b)))
    return expr.otherwise(pl.lit("+Inf"))


def _run_counters(first: pl.DataFrame) -> list[CounterDelta]:
    """notebook_run_attempts_total and the duration histogram, from the attempts whose first terminal event
    arrived in this batch (set-wise, in polars: a batch's statements each cost milliseconds in DuckDB)."""
    deltas = []
    attempts = first.group_by(_label("team"), _label("trigger"), _label("environment"), "outcome").len()
    for team, trigger, env, outcome, n in attempts.iter_rows():
        deltas.append(CounterDelta("notebook_run_attempts_total", (("team", team), ("trigger", trigger),
                                                                   ("environment", env), ("outcome", str(outcome))),
                                   float(n)))
    timed = first.filter(_BUCKET.is_not_null())
    hist = timed.group_by(_label("team"), _label("trigger"), _le().alias("le")).agg(
        pl.len().alias("n"), _BUCKET.sum().alias("total"))
    for team, trigger, le, n, total in hist.iter_rows():
        base = (("team", team), ("trigger", trigger))
        deltas.append(CounterDelta("notebook_run_duration_seconds_bucket", base + (("le", le),), float(n)))
        deltas.append(CounterDelta("notebook_run_duration_seconds_sum", base, float(total)))
        deltas.append(CounterDelta("notebook_run_duration_seconds_count", base, float(n)))
    return deltas


def event_deltas(new: pa.Table) -> list[CounterDelta]:
    """The increments of the counters of events as ingested (`_EVENT_COUNTERS`): what a batch counts whatever is
    stored (the deriver commits them with the batch's derived rows; should those fail, with the batch marked
    derived all the same)."""
    return _event_counters(_event_counts(_frame(new)).collect(engine=ENGINE))


def update_derived(con: duckdb.DuckDBPyConnection, new: pa.Table, batch_id: int | None = None, *,
                   exhaustive: bool = True) -> list[CounterDelta]:
    """Fold one batch of newly inserted events into the derived tables (`fold_batches`)."""
    return fold_batches(con, [(batch_id, new)], exhaustive=exhaustive)


def _numbered(batches: list[tuple[int | None, pa.Table]]) -> pl.DataFrame:
    """The batches' rows as one frame, each with its batch's place in the fold (`_seq`) and id (`_batch`). The
    stored `data` text is left out: the fold reads the typed columns only, and converting the largest column to
    polars cost a third of this function (4 of 12 ms for 24,000 events). The batches' chunks are joined in Arrow
    first: polars converts one array per column in about half the time of one per batch (24,000 HTTP-shaped
    events: 3.8 against 7.0 ms, holding the GIL)."""
    table = batches[0][1] if len(batches) == 1 else pa.concat_tables([t for _, t in batches])
    if "data" in table.column_names:
        table = table.drop_columns(["data"])
    seq = pa.concat_arrays([pa.repeat(pa.scalar(k, pa.int32()), t.num_rows) for k, (_, t) in enumerate(batches)])
    ids = pa.concat_arrays([pa.repeat(pa.scalar(b, pa.int64()), t.num_rows) for b, t in batches])
    return _frame(table.append_column("_seq", seq).append_column("_batch", ids).combine_chunks())


def fold_plans(batches: list[tuple[int | None, pa.Table]]) -> dict[str, pl.LazyFrame]:
    """What `fold_batches` aggregates in polars, as plans to collect together: the counts behind the counters of
    events as ingested, and each derived table's combined rows (collector/storage/batch.py), a table's only when
    the batches hold an event of its types."""
    df = _numbered(batches)
    types = set(df["type"].unique().to_list())

    def has(*prefixes: str) -> bool:
        return any(t.startswith(prefixes) for t in types)

    one = len(batches) == 1
    plans: dict[str, pl.LazyFrame] = {"counts": _event_counts(df)}
    if has("notebook.kernel."):
        plans["batch_kernels"] = batch.kernels(df, one)
    if has("notebook.registered", "notebook.updated", "notebook.promoted"):
        plans["batch_notebooks"] = batch.notebooks(df, _REGISTRY_FIELDS, _REGISTRY_TYPES, one)
    if has("notebook.schedule.registered"):
        plans["batch_schedules"] = batch.schedules(df, one)
    if has("notebook.run."):
        plans["batch_runs"] = batch.runs(df, one)
    return plans


def fold_batches(con: duckdb.DuckDBPyConnection, batches: list[tuple[int | None, pa.Table]], *,
                 exhaustive: bool = True, count_events: bool = True) -> list[CounterDelta]:
    """Fold batches of newly inserted events (`(batch id, rows)` in commit order; rows in INGEST_SCHEMA: stored
    columns plus typed fields) into the derived tables; return the counter increments they and their events cause.

    The result is what folding each batch in its own transaction, in order, gives (collector/storage/batch.py
    combines a key's batch rows by each upsert's rule), for the cost of one: the batches are aggregated per
    derived table in polars, all tables in one `pl.collect_all`, and each table gets one upsert, skipped when no
    batch holds an event of its types: every DuckDB statement has a fixed cost of milliseconds, which dominates
    HTTP-sized batches. For the same reason the first-terminal lookup is skipped when no attempt has a terminal
    event (it could only return nothing: it selects attempts whose batch row has an end time).

    Without `exhaustive`, stored attempts and kernel sessions are looked for among the recent ones only
    (RUN_LOOKBACK, KERNEL_LOOKBACK); should one be stored earlier, StoredBeforeLookback is raised inside the
    transaction, which the caller rolls back and does again with `exhaustive` (the writer does; the default is the
    exhaustive way).

    Without `count_events`, the counters of events as ingested are left out of the result: a batch the deriver gave
    up on has counted them already (`collector/ingest/rederive.py` folds it again).
    """
    plans = fold_plans(batches)
    frames = dict(zip(plans, pl.collect_all(list(plans.values()), engine=ENGINE)))

    deltas = _event_counters(frames["counts"]) if count_events else []
    if "batch_kernels" in frames:
        kernels = frames["batch_kernels"]
        _merge(con, _KERNELS, kernels, None if exhaustive or not kernels.height
               else kernels["last_event_at"].min() - KERNEL_LOOKBACK)
    if "batch_notebooks" in frames:
        _merge(con, _NOTEBOOKS, frames["batch_notebooks"])
    if "batch_schedules" in frames:
        _merge(con, _SCHEDULES, frames["batch_schedules"])
    runs = frames.get("batch_runs")
    if runs is None or runs.height == 0:
        return deltas

    first = _upsert_runs(con, runs, exhaustive)
    if first.height == 0:
        return deltas
    deltas += _run_counters(first)
    repro = first.filter(pl.col("outcome") == "succeeded", *[pl.col(c).is_not_null() for c in _REPRO_KEYS])
    for part in _repro_parts(repro):
        deltas += _fold_baselines(con, part)
    return deltas


def _fold_baselines(con: duckdb.DuckDBPyConnection, part: pl.DataFrame) -> list[CounterDelta]:
    """Compare the attempts of `part` with their baselines and store the baselines they change: a key's baseline
    is its earliest succeeded attempt (by end time, then run id and attempt, within the part), and a stored one
    stays unless an attempt of the part ended before it. One read of the stored baselines of the part's keys, then
    at most an insert and an update (by row id); the comparison itself is polars."""
    con.register("repro_new", _arrow(part.select(_BASELINE_KEY)))
    try:
        found = _frame(con.sql(_STORED_BASELINES).to_arrow_table())
    finally:
        con.unregister("repro_new")
    # one row per key: the earliest, should a key ever be stored twice (the join below on the full key drops the
    # rows of another key with the same digest)
    stored = found.sort(_EARLIEST).unique(_BASELINE_KEY, keep="first", maintain_order=True)
    earliest = (part.sort(_EARLIEST).unique(_BASELINE_KEY, keep="first", maintain_order=True)
                .select(*_BASELINE_KEY, *_BASELINE_VALUES))
    both = earliest.join(stored, on=_BASELINE_KEY, how="left", suffix="_stored")
    fresh = pl.col("row_id").is_null()
    earlier = pl.col("ended_at") < pl.col("ended_at_stored")
    baselines = both.select(*_BASELINE_KEY, *[
        pl.when(fresh | earlier).then(pl.col(c)).otherwise(pl.col(f"{c}_stored")).alias(f"b_{c}")
        for c in ("run_id", "attempt", "output_hash")])
    writes = both.filter(fresh | earlier)
    if writes.height:
        con.register("repro_rows", _arrow(writes.select("row_id", *_BASELINE_KEY, *_BASELINE_VALUES)))
        try:
            if writes["row_id"].null_count():
                con.execute(_INSERT_BASELINES)
            if writes["row_id"].null_count() < writes.height:
                con.execute(_UPDATE_BASELINES)
        finally:
            con.unregister("repro_rows")
    checks = (part.join(baselines, on=_BASELINE_KEY)
              .filter(~((pl.col("run_id") == pl.col("b_run_id")) & (pl.col("attempt") == pl.col("b_attempt"))))
              .group_by(_label("team"), pl.when(pl.col("output_hash") == pl.col("b_output_hash"))
                        .then(pl.lit("match")).otherwise(pl.lit("mismatch")).alias("result"))
              .len())
    return [CounterDelta("notebook_reproducibility_checks_total", (("team", team), ("result", result)), float(n))
            for team, result, n in checks.iter_rows()]


def _repro_parts(repro: pl.DataFrame) -> list[pl.DataFrame]:
    """The first-terminal succeeded attempts in the fewest consecutive parts (by the batch of their first terminal
    event, `seq`) in which no baseline key comes from two batches: within a batch the attempts are compared with
    the baseline the batch itself leaves, so two batches sharing a key are compared one after the other, as
    each batch's own transaction would have."""
    if repro.height == 0:
        return []
    keys = repro.select(*_BASELINE_KEY, "seq").unique()
    if keys.select(_BASELINE_KEY).is_duplicated().sum() == 0:
        return [repro]
    parts: list[pl.DataFrame] = []
    taken: set[tuple] = set()
    start = None
    seqs = sorted(repro["seq"].unique().to_list())
    for seq in seqs:
        mine = set(keys.filter(pl.col("seq") == seq).select(_BASELINE_KEY).iter_rows())
        if start is not None and mine & taken:
            parts.append(repro.filter(pl.col("seq").is_between(start, seq - 1)))
            start, taken = None, set()
        start = seq if start is None else start
        taken |= mine
    parts.append(repro.filter(pl.col("seq") >= start))
    return parts


def _upsert_runs(con: duckdb.DuckDBPyConnection, runs: pl.DataFrame, exhaustive: bool) -> pl.DataFrame:
    """Merge the batches' attempts into run_attempts; returns those whose first terminal event is in the batches.
    The first-terminal lookup is skipped when no attempt has an end time (in the exhaustive way)."""
    con.register("batch_runs", _arrow(runs))
    try:
        if exhaustive:
            first = pl.DataFrame()
            if runs["ft_ended_at"].null_count() < runs.height:
                first = _frame(con.sql(_BESIDE_STORED.format(stored="run_attempts")).to_arrow_table())
            bound = None
        else:
            bound = runs["first_seen_at"].min() - RUN_LOOKBACK
            first = _frame(con.sql(_BESIDE_STORED.format(stored=_RUNS.recent_rows), params={"bound": bound})
                           .to_arrow_table())
    finally:
        con.unregister("batch_runs")
    _merge(con, _RUNS, runs, bound)
    return first.filter(pl.col("first_terminal")).select(_FIRST_TERMINAL_COLS) if first.height else first


def _arrow(frame: pl.DataFrame) -> pa.Table:
    """A polars frame as the Arrow table DuckDB reads, its texts as Arrow string views, which is how polars holds
    them: no copy (polars' default export rewrites every text into a `large_string` buffer: 0.8 ms per 120,000 rows
    of three short texts, against 0.02; ~7 ms of each derive pass of the HTTP bench, holding the GIL that
    validation needs). DuckDB reads string views as VARCHAR."""
    return frame.to_arrow(compat_level=pl.CompatLevel.newest())


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def typed_from_stored(relation: str) -> str:
    """A SELECT over stored event rows (`relation`, e.g. `events`) that adds the typed fields, read back from
    `data`: for rebuilding derived tables from history (and benchmarks that fill `events` directly), never on
    the ingest path, where the validator types them."""
    exprs = [f"{field_from_data(f)} AS {ident(f.name)}" for f in DERIVE_FIELDS]
    return f"SELECT {EVENT_COLUMNS}, {', '.join(exprs)} FROM {relation}"
