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
"""

from __future__ import annotations

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


def runs(new: pl.DataFrame, batch_id: int | None) -> pl.LazyFrame:
    """Per run attempt (run_id, attempt defaulting to 1) touched by the batch: identity fields from its earliest
    events, queue/start times, and the newest terminal event's outcome and measurements."""
    agg = (new.lazy()
           .filter(_RUN_FILTER)
           .with_columns(pl.col("attempt").fill_null(1))
           .sort("time", "id")
           .group_by("run_id", "attempt", maintain_order=True)
           .agg(*_RUN_AGG))
    return agg.with_columns(_RUN_STATE.alias("state"), pl.lit(batch_id, pl.Int64).alias("updated_batch")) \
        .drop("term_state")


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


def kernels(new: pl.DataFrame) -> pl.LazyFrame:
    """Per kernel session touched by the batch."""
    return (new.lazy()
            .filter(_KERNEL_FILTER)
            .sort("time", "id")
            .group_by("kernel_id", maintain_order=True)
            .agg(*_KERNEL_AGG))


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


def notebooks(new: pl.DataFrame, fields: tuple[str, ...], registry_types: tuple[str, ...]) -> pl.LazyFrame:
    """Per notebook touched by registry events: each field's newest value and when it was set."""
    cond, agg = _notebook_plan(fields, registry_types)
    return (new.lazy()
            .filter(cond)
            .sort("time", "id")
            .group_by("notebook_id", maintain_order=True)
            .agg(*agg))


_SCHEDULE_AGG = (*[_newest(pl.col(c)) for c in ("team", "cron", "timezone", "grace_seconds")],
                 pl.col("time").max().alias("registered_at"))


def schedules(new: pl.DataFrame) -> pl.LazyFrame:
    """Per notebook with a schedule registration in the batch: the newest non-null value of each field."""
    return (new.lazy()
            .filter(_T == "notebook.schedule.registered")
            .sort("time", "id")
            .group_by("notebook_id", maintain_order=True)
            .agg(*_SCHEDULE_AGG))
