"""One batch's contribution to each derived table, computed set-wise in polars from the typed Arrow columns.

The writer's transaction then merges these small frames into the derived tables with one upsert each
(collector/storage/derive.py). Aggregating here rather than in SQL saves a statement per table (each DuckDB
statement costs milliseconds however small the batch) and reads no JSON: every field comes from the typed
columns the validator filled (storage.schema.DERIVE_FIELDS).

Each function returns a LazyFrame: derive.py collects all the tables a batch touches in one `pl.collect_all`,
so polars runs them side by side over the one frame. The aggregation expressions are built once at import (a
commit used to spend milliseconds of Python rebuilding the same expression trees).

Order conventions, the same as the SQL they replace: rows are taken in (time, id) order; "first non-null by
time" is `drop_nulls().first()`, "newest by (time, id), nulls skipped" is `drop_nulls().last()`.

Several batches at once. The deriver folds every batch pending since its last transaction in one pass
(storage/derive.py: `fold_batches`), and the result must be what folding each batch in its own transaction, in
commit order, gives. The frame then carries `_seq` (the batch's place in that order) and `_batch` (its id). Each
function first aggregates per key and batch exactly as for one batch, then combines a key's batch rows in `_seq`
order into one row, by the rule the table's upsert applies to a stored row and a batch row. Most rules are
associative (min, max, sums, first or last non-null in batch order, the value with the newest time), so the
combined row is one batch row of the same shape. Two kinds are not:

* "the value of the earlier batch unless it is null": the upsert keeps a stored value unless the batch row is
  newer by the rule's time and carries one (a kernel's end reason, a schedule's team) or older by first-seen time
  (a run's identity fields). What the stored row ends with then depends on its own time, so the combined row
  carries the candidates and their times (`*_at`, `*_last`, `*_last_fs`, `*_first`), and the upsert picks.
  Which candidates suffice is derived in the docstrings of `_kernel_combine`, `_schedule_combine` and
  `_run_combine`.
* what a run's counters are labelled with: the attempt as stored just before the batch of its first terminal
  event (`ft_*` and the `pre_*` candidates of the batches before it).

tests/ingest/test_derive_combined.py holds the equality on adversarial streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import polars as pl

from collector.contract.events import TERMINAL_RUN_TYPES

TERMINAL = list(TERMINAL_RUN_TYPES)
_T = pl.col("type")


def _first(c: str) -> pl.Expr:
    return pl.col(c).drop_nulls().first()


def _newest(e: pl.Expr) -> pl.Expr:
    return e.drop_nulls().last()


def _min_time(cond: pl.Expr) -> pl.Expr:
    return pl.col("time").filter(cond).min()


_TERM = _T.is_in(TERMINAL)
_MEASURED = ("duration_seconds", "error_type", "error_message", "output_hash", "input_hash", "parameters_hash",
             "env_hash", "cpu_seconds", "max_memory_bytes", "cells")
_RUN_FILTER = pl.col("run_id").is_not_null() & _T.str.starts_with("notebook.run.")
_RUN_AGG = (
    *[_first(c) for c in ("notebook_id", "team", "owner", "trigger", "environment")],
    _min_time(_T == "notebook.run.queued").alias("queued_at"),
    _min_time(_T == "notebook.run.started").alias("started_at"),
    pl.col("scheduled_for").min(),
    pl.col("time").filter(_TERM).last().alias("ended_at"),
    pl.col("id").filter(_TERM).last().alias("terminal_event_id"),
    _T.filter(_TERM).last().str.strip_prefix("notebook.run.").alias("term_state"),
    *[pl.col(c).filter(_TERM).last() for c in _MEASURED],
    _TERM.sum().cast(pl.Int32).alias("terminal_events"),
    pl.col("time").min().alias("first_seen_at"),
    pl.col("time").max().alias("last_event_at"),
)
_RUN_STATE = (pl.when(pl.col("term_state").is_not_null()).then(pl.col("term_state"))
              .when(pl.col("started_at").is_not_null()).then(pl.lit("started")).otherwise(pl.lit("queued")))


# The windows over a key's rows (`_Window.many`) read them as `_fold` lays them out (`_segments`): grouped, the groups
# in the order of their first row, each group's rows in batch order, `_g` (the position of the group's first row)
# naming the group. A running record (`_is_record`) is then one running maximum over the whole column. Written as a
# polars window (`cum_max().forward_fill().shift(1).over(key)`), polars evaluated it group by group: the kernel
# sessions' windows took 6.6 of the 8.2 ms that combining the 3,910 rows of a 16,000-event pass took
# (docs/performance.md, forty-seventh round).
_G = pl.col("_g")
_GROUP_SPAN = 2**32  # more than any dense rank: every value of a group encodes above every earlier group's


def _segments(rows: pl.LazyFrame, key: list[str]) -> pl.LazyFrame:
    """`rows` laid out for the windows below: grouped by `key` (a stable sort), with `_g`."""
    return (rows.with_row_index("_i")
            .with_columns(_g=pl.col("_i").min().over(key))
            .sort("_g", maintain_order=True)
            .drop("_i"))


def _cum_count(cond: pl.Expr, reverse: bool = False) -> pl.Expr:
    """How many of the group's rows up to this one (`reverse`: from this one on) `cond` holds on; null where `cond`
    is. (polars sums cumulatively over groups column-wise already: no layout trick is needed here.)"""
    return cond.cum_sum(reverse=reverse).over("_g")


def _is_record(col: str, *, lower: bool, strict: bool) -> pl.Expr:
    """Whether `col` sets a record in its group: below every earlier row's (`lower`; else above), or equal to the
    record too (not `strict`); true when no earlier row of the group has a value (nulls skipped). Values are compared
    as their dense ranks (1 and up), each group's offset by its `_g`: the running maximum over the whole column at
    the row before is then the group's own record, or an earlier group's, which reads below 1 once the group's offset
    is taken off."""
    rank = pl.col(col).rank("dense", descending=lower).cast(pl.Int64)
    offset = _G.cast(pl.Int64) * _GROUP_SPAN
    best = (offset + rank).cum_max().forward_fill().shift(1) - offset
    return best.is_null() | ((rank > best) if strict else (rank >= best))


def _only_last(cond: pl.Expr) -> pl.Expr:
    """`cond`, true on one row per key at most: the last in batch order where it holds."""
    return cond & (_cum_count(cond, reverse=True) == 1)


def _only_first(cond: pl.Expr) -> pl.Expr:
    """`cond`, true on one row per key at most: the first in batch order where it holds."""
    return cond & (_cum_count(cond) == 1)


def _where(cond: str, col: str, alias: str | None = None) -> pl.Expr:
    """`col` on the rows where the boolean column `cond` holds, null elsewhere: combining then takes the first or
    last non-null of it, which polars aggregates column-wise. (A filter inside an aggregation ran group by group on
    the polars this was written for, 50 ms for 2,000 attempts; on polars 2.1 the per-batch aggregations' filters
    cost the same as this form: docs/performance.md, forty-seventh round.)"""
    return pl.when(pl.col(cond)).then(pl.col(col)).alias(alias or f"{cond}:{col}")


@dataclass(frozen=True)
class _Window:
    """A per-key expression over a key's rows in batch order (`many`), and what it is when the key has one row
    (`one`, no window: most keys of a fold, and every key of a one-batch fold, have one row)."""

    many: pl.Expr
    one: pl.Expr


_REDUCE = {"first": lambda e: e.first(ignore_nulls=True), "last": lambda e: e.last(ignore_nulls=True),
           "min": lambda e: e.min(), "max": lambda e: e.max(), "sum": lambda e: e.sum().cast(pl.Int32),
           "last_row": lambda e: e.last()}


def _fold(rows: pl.LazyFrame, key: list[str], windows: dict[str, _Window], stages: list[list[pl.Expr]],
          reduce: list[tuple[str, str, str]], one_batch: bool) -> pl.LazyFrame:
    """Each key's batch rows combined into one row: `windows` (flags per row), then `stages` (columns from them),
    then `reduce` ((column, how, output name): how in _REDUCE). Keys with one row skip the windows and the
    aggregation (a row is its own combination); with `one_batch` every key has one row."""

    def prepared(part: pl.LazyFrame, single: bool) -> pl.LazyFrame:
        part = part.with_columns(*[(w.one if single else w.many).alias(n) for n, w in windows.items()])
        for stage in stages:
            part = part.with_columns(*stage)
        return part

    def one(part: pl.LazyFrame) -> pl.LazyFrame:
        return prepared(part, True).select(*key, *[pl.col(c).alias(out) for c, _, out in reduce])

    if one_batch:
        return one(rows)
    rows = rows.with_columns(_rows=pl.len().over(key))
    many = (prepared(_segments(rows.filter(pl.col("_rows") > 1), key), False)
            .group_by(*key, maintain_order=True)
            .agg(*[_REDUCE[how](pl.col(c)).alias(out) for c, how, out in reduce]))
    return pl.concat([one(rows.filter(pl.col("_rows") == 1)), many], how="vertical")


def _per_batch(new: pl.DataFrame, cond: pl.Expr, key: list[str], agg: tuple[pl.Expr, ...]) -> pl.LazyFrame:
    """One row per key and batch (the single-batch aggregation), keys' rows in batch order."""
    return (new.lazy()
            .filter(cond)
            .sort("_seq", "time", "id")
            .group_by(*key, "_seq", maintain_order=True)
            .agg(pl.col("_batch").first(), *agg))


RUN_KEY = ["run_id", "attempt"]
# The identity fields: a batch row's value replaces the stored one only when the batch's first event is older
# than the stored first_seen_at, and fills it when it is null (derive.py: `_SET_RUNS`).
RUN_IDENTITY = ("notebook_id", "team", "owner", "trigger", "environment")
# What a run's counters are labelled with, and the first terminal event's own fields (derive.py: _BESIDE_STORED).
RUN_LABELS = ("notebook_id", "team", "trigger", "environment")
FIRST_TERMINAL = ("state", "duration_seconds", "ended_at", "output_hash", "input_hash", "parameters_hash", "env_hash",
                  "notebook_id", "team", "trigger", "environment", "_seq")
_RUN_TERM = ("ended_at", "terminal_event_id", "term_state", *_MEASURED)
# The columns of the combined frames that are candidates for the upsert, not columns of the table.
RUN_CANDIDATES = frozenset([f"{f}_{k}" for f in RUN_IDENTITY for k in ("last", "last_fs", "first")]
                           + [f"pre_{f}_{k}" for f in RUN_LABELS for k in ("last", "last_fs", "first")]
                           + [f"ft_{c.lstrip('_')}" for c in FIRST_TERMINAL])
KERNEL_CANDIDATES = frozenset(["reason_at"])
SCHEDULE_CANDIDATES = frozenset(["team_at"])


def _run_combine(rows: pl.LazyFrame, one_batch: bool) -> pl.LazyFrame:
    """A run attempt's batch rows (in batch order) combined into what they fold a stored row into.

    The identity rule (`f`: the batch's value when its first_seen_at is older than the stored one's, else the
    stored value, else the batch's) is a left fold whose result depends on the stored row. Its value changes at
    a batch row i with a value that is either the first non-null value or older (first_seen_at) than every row
    before it, stored row included. Call the rows older than every earlier batch row "records"; their
    first_seen_at falls. If L is the last record with a value: L's value when L is older than the stored row,
    else the stored value when it has one, else the first non-null value (`f_first`). So the combined row
    carries `f_last` and `f_last_fs` (L's value and first_seen_at) and `f_first`, and `f` itself is what a new
    row gets: `f_last`, else `f_first`. The same candidates over the batches before the first terminal one
    (`pre_*`) give the labels as stored just before it. Everything else is associative: the earliest times, the
    terminal fields of the newest (ended_at, terminal_event_id) (the first of equals), the summed count, the
    first and the last batch's id (the upsert keeps a stored row's first)."""
    key = RUN_KEY
    ended = pl.col("ended_at").is_not_null()
    newest_end = pl.col("ended_at") == pl.col("ended_at").max().over(key)
    top = newest_end & (pl.col("terminal_event_id")
                        == pl.when(newest_end).then(pl.col("terminal_event_id")).max().over(key))
    windows = {"_record": _Window(_is_record("first_seen_at", lower=True, strict=True), pl.lit(True)),
               "_before": _Window(_cum_count(ended) == 0, ~ended),
               "_first_end": _Window(_only_first(ended), ended),
               "_top": _Window(_only_first(top), pl.lit(True))}
    stages = [[_RUN_STATE.alias("_state"),
               *[(pl.col("_record") & pl.col(f).is_not_null()).alias(f"_cand_{f}") for f in RUN_IDENTITY]],
              [(pl.col("_before") & pl.col(f"_cand_{f}")).alias(f"_pre_{f}") for f in RUN_LABELS],
              [*[_where(f"_cand_{f}", c) for f in RUN_IDENTITY for c in (f, "first_seen_at")],
               *[_where(f"_pre_{f}", c) for f in RUN_LABELS for c in (f, "first_seen_at")],
               *[_where("_before", f) for f in RUN_LABELS],
               *[_where("_first_end", "_state" if c == "state" else c) for c in FIRST_TERMINAL],
               *[_where("_top", c) for c in _RUN_TERM]]]
    reduce = [r for f in RUN_IDENTITY for r in ((f"_cand_{f}:{f}", "last", f"{f}_last"),
                                                (f"_cand_{f}:first_seen_at", "last", f"{f}_last_fs"),
                                                (f, "first", f"{f}_first"))]
    reduce += [r for f in RUN_LABELS for r in ((f"_pre_{f}:{f}", "last", f"pre_{f}_last"),
                                               (f"_pre_{f}:first_seen_at", "last", f"pre_{f}_last_fs"),
                                               (f"_before:{f}", "first", f"pre_{f}_first"))]
    reduce += [(f"_first_end:{'_state' if c == 'state' else c}", "first", f"ft_{c.lstrip('_')}")
               for c in FIRST_TERMINAL]
    reduce += [(f"_top:{c}", "first", c) for c in _RUN_TERM]
    reduce += [("queued_at", "min", "queued_at"), ("started_at", "min", "started_at"),
               ("scheduled_for", "min", "scheduled_for"), ("terminal_events", "sum", "terminal_events"),
               ("_batch", "last_row", "updated_batch"), ("_batch", "first", "first_batch"),
               ("first_seen_at", "min", "first_seen_at"),
               ("last_event_at", "max", "last_event_at")]
    return _fold(rows, key, windows, stages, reduce, one_batch).with_columns(
        *[pl.coalesce(f"{f}_last", f"{f}_first").alias(f) for f in RUN_IDENTITY],
        _RUN_STATE.alias("state")).drop("term_state")


def runs(new: pl.DataFrame, one_batch: bool = False) -> pl.LazyFrame:
    """Per run attempt (run_id, attempt defaulting to 1) touched by the batches: identity fields from its earliest
    events, queue/start times, and the newest terminal event's outcome and measurements (`_run_combine`)."""
    return _run_combine(_per_batch(new.with_columns(pl.col("attempt").fill_null(1)), _RUN_FILTER, RUN_KEY,
                                   _RUN_AGG), one_batch)


_ENDED = _T.is_in(["notebook.kernel.died", "notebook.kernel.shutdown"])
_KERNEL_FILTER = pl.col("kernel_id").is_not_null() & _T.str.starts_with("notebook.kernel.")
_KERNEL_AGG = (
    *[_first(c) for c in ("team", "owner", "notebook_id", "notebook_path")],
    _min_time(_T == "notebook.kernel.started").alias("started_at"),
    (_T == "notebook.kernel.restarted").sum().cast(pl.Int32).alias("restarts"),
    ((_T == "notebook.kernel.restarted") & pl.col("reason").is_in(["crash", "oom"]))
    .sum().cast(pl.Int32).alias("crash_restarts"),
    (_T == "notebook.kernel.died").sum().cast(pl.Int32).alias("deaths"),
    pl.col("time").filter(_ENDED).max().alias("ended_at"),
    _newest((_T.str.strip_prefix("notebook.kernel.") + ":" + pl.col("reason")).filter(_ENDED)).alias("end_reason"),
    _newest(pl.col("exit_code").cast(pl.Int32, strict=False)).alias("last_exit_code"),
    pl.col("time").max().alias("last_event_at"),
)


def _weak_records(col: str, value: str) -> pl.Expr:
    """Rows whose `col` is set and not older than any earlier row's (ties count), and that carry `value`: where
    the upserts that keep `value` "unless a newer row sets it" change it."""
    return pl.col(col).is_not_null() & _is_record(col, lower=False, strict=False) & pl.col(value).is_not_null()


def _kernel_combine(rows: pl.LazyFrame, one_batch: bool) -> pl.LazyFrame:
    """A kernel's batch rows (in batch order) combined. The end reason is replaced by a row whose ended_at is not
    older than the stored one's and that has a reason; along a sequence that happens at the weak records of
    ended_at carrying a reason, so the last of those is the candidate (`end_reason`, `reason_at`), and the
    upsert keeps the stored reason when the stored ended_at is newer. The rest: the first non-null identity (the
    stored value wins), sums, the earliest start, the newest end and event, the last exit code set."""
    key = ["kernel_id"]
    windows = {"_cand": _Window(_weak_records("ended_at", "end_reason"),
                                pl.col("ended_at").is_not_null() & pl.col("end_reason").is_not_null())}
    stages = [[_where("_cand", "end_reason"), _where("_cand", "ended_at")]]
    reduce = [*[(c, "first", c) for c in ("team", "owner", "notebook_id", "notebook_path")],
              ("started_at", "min", "started_at"),
              *[(c, "sum", c) for c in ("restarts", "crash_restarts", "deaths")],
              ("ended_at", "max", "ended_at"), ("_cand:end_reason", "last", "end_reason"),
              ("_cand:ended_at", "last", "reason_at"), ("last_exit_code", "last", "last_exit_code"),
              ("last_event_at", "max", "last_event_at")]
    return _fold(rows, key, windows, stages, reduce, one_batch)


def kernels(new: pl.DataFrame, one_batch: bool = False) -> pl.LazyFrame:
    """Per kernel session touched by the batches."""
    return _kernel_combine(_per_batch(new, _KERNEL_FILTER, ["kernel_id"], _KERNEL_AGG), one_batch)


@lru_cache(maxsize=8)
def _notebook_plan(fields: tuple[str, ...], registry_types: tuple[str, ...]) -> tuple[pl.Expr, tuple[pl.Expr, ...]]:
    """The notebooks filter and aggregations for these registry fields and types (built once per arguments)."""
    reg = _T.is_in(list(registry_types))
    per_field: list[pl.Expr] = []
    for f in fields:
        setting = reg & pl.col(f).is_not_null()
        per_field += [pl.col(f).filter(setting).last().alias(f), pl.col("time").filter(setting).max().alias(f"{f}_at")]
    agg = (*per_field,
           _min_time(_T == "notebook.registered").alias("registered_at"),
           _min_time(_T == "notebook.promoted").alias("promoted_at"),
           pl.col("time").max().alias("updated_at"))
    return pl.col("notebook_id").is_not_null() & _T.is_in([*registry_types, "notebook.promoted"]), agg


def notebooks(new: pl.DataFrame, fields: tuple[str, ...], registry_types: tuple[str, ...],
              one_batch: bool = False) -> pl.LazyFrame:
    """Per notebook touched by registry events: each field's newest value and when it was set (across batches,
    the value set newest, the later batch's of equals: the upsert's rule, which is associative)."""
    cond, agg = _notebook_plan(fields, registry_types)
    key = ["notebook_id"]
    windows = {f"_newest_{f}": _Window(pl.col(f"{f}_at") == pl.col(f"{f}_at").max().over(key), pl.lit(True))
               for f in fields}
    reduce = [r for f in fields for r in ((f"_newest_{f}:{f}", "last", f), (f"{f}_at", "max", f"{f}_at"))]
    reduce += [("registered_at", "min", "registered_at"), ("promoted_at", "min", "promoted_at"),
               ("updated_at", "max", "updated_at")]
    return _fold(_per_batch(new, cond, key, agg), key, windows, [[_where(f"_newest_{f}", f) for f in fields]],
                 reduce, one_batch)


_SCHEDULE_AGG = (*[_newest(pl.col(c)) for c in ("team", "cron", "timezone", "grace_seconds")],
                 pl.col("time").max().alias("registered_at"))


def _schedule_combine(rows: pl.LazyFrame, one_batch: bool) -> pl.LazyFrame:
    """A notebook's schedule rows (in batch order) combined: cron, time zone and grace of the newest registration
    (the later batch's of equals), and the team as the kernel's end reason is (`_kernel_combine`): replaced by a
    registration not older than the stored one that names a team (`team`, `team_at`)."""
    key = ["notebook_id"]
    windows = {"_cand": _Window(_weak_records("registered_at", "team"),
                                pl.col("registered_at").is_not_null() & pl.col("team").is_not_null()),
               "_newest": _Window(_only_last(pl.col("registered_at") == pl.col("registered_at").max().over(key)),
                                  pl.lit(True))}
    stages = [[_where("_cand", "team"), _where("_cand", "registered_at"),
               *[_where("_newest", c) for c in ("cron", "timezone", "grace_seconds")]]]
    reduce = [("_cand:team", "last", "team"), ("_cand:registered_at", "last", "team_at"),
              *[(f"_newest:{c}", "first", c) for c in ("cron", "timezone", "grace_seconds")],
              ("registered_at", "max", "registered_at")]
    return _fold(rows, key, windows, stages, reduce, one_batch)


def schedules(new: pl.DataFrame, one_batch: bool = False) -> pl.LazyFrame:
    """Per notebook with a schedule registration in the batches: the newest non-null value of each field."""
    return _schedule_combine(_per_batch(new, _T == "notebook.schedule.registered", ["notebook_id"], _SCHEDULE_AGG),
                             one_batch)
