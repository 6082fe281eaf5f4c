"""Batches the deriver gave up on, and folding them into the derived tables again once the cause is fixed.

Why this exists: when the deriver cannot write a batch's derived rows (collector/ingest/writer.py: `_give_up`), the
batch's events are stored and acknowledged, but its run attempts, kernel sessions, notebooks, schedules and
reproducibility baselines are not, nor the run counters they cause; so run counters and every SLI over run attempts
undercount it. The batch is marked derived all the same, so that readers (the SLI fold, the lake export) move past
it, and it is recorded in `derive_failures` (migration 0215) until `retry` folds it in.

`retry` reads the batches' stored events back with their typed fields (as a start does for batches committed and not
derived) and folds them with the ingest path's own fold (`storage.derive.fold_batches`), as one batch, under a new,
empty batch of their own. The result is what those events arriving now, in one request, would give: every derived
table's merge is decided by the events' times, not by the order batches arrive in (late events are normal), except
the batch ids the rows carry, which are the new batch's, and the counters of reproducibility checks, counted against
the baseline an attempt met when it was derived (counters never go down). That new id is what the readers that keep
state by batch see:

* the SLI fold, once its cursor passes the new batch, refolds the run attempts of the batches it names
  (slo/sli/fold.py): their facts enter the SLIs as any late-folded attempt does, as (new fact - old fact);
* the lake export re-exports the partitions of the attempts whose `updated_batch` grew.

The counters of events as ingested are not counted again: the writer counted them when it gave up. All of it commits
in one transaction, so a retry that fails again changes nothing and the batches stay listed.

When a batch cannot be derived again (the cause cannot be fixed), an operator may `dismiss` it with a reason: its
derived rows stay missing, knowingly, and it no longer counts as waiting (the gauge, the ticket). Naming it in a
retry later still derives it. The caller runs both
where nothing else writes the derived tables (`Writer.retry_derive`, `Writer.dismiss_derive`: writer jobs, which
run once the deriver has folded everything committed before them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb

from collector.contract.redaction import redact_text
from collector.metrics.counters import CounterStore
from collector.storage.derive import fold_batches, typed_from_stored
from collector.storage.queries import ATTEMPT, HELD_ATTEMPTS, IN_BATCHES, RUN_EVENT, batch_params
from collector.storage.schema import INGEST_SCHEMA

# Written in the deriver's transaction that marks the batch derived (its events counted from ingest_batches).
RECORD = """
INSERT INTO derive_failures (batch_id, failed_at, events, error)
SELECT batch_id, $now, events, $error FROM ingest_batches WHERE batch_id = $batch
ON CONFLICT DO NOTHING
"""
# Not derived again (its run attempts are still missing); waiting: not dismissed either (migration 0216).
_UNDERIVED = "rederived_at IS NULL"
_WAITING = f"{_UNDERIVED} AND dismissed_at IS NULL"
OUTSTANDING = f"SELECT count(*) FROM derive_failures WHERE {_WAITING}"
_FIELDS = ("batch_id", "failed_at", "events", "error", "rederived_at", "rederived_batch", "dismissed_at",
           "dismissed_reason")
_LIST = f"""
SELECT {", ".join(_FIELDS)} FROM derive_failures
WHERE $all OR {_WAITING} ORDER BY batch_id LIMIT $limit
"""
# What the listed batches hold: their run attempts (as the deriver makes them) and those attempts' teams (whose run
# counters and SLIs miss them; at most 100 named), and the time range of their events (the SLI windows they fall in).
_CONTENTS = f"""
SELECT batch_id,
       count(DISTINCT (run_id, {ATTEMPT})) FILTER (WHERE {RUN_EVENT}) AS run_attempts,
       list_slice(list(DISTINCT coalesce(team, 'unknown') ORDER BY coalesce(team, 'unknown'))
                  FILTER (WHERE {RUN_EVENT}), 1, 100) AS teams,
       min(time) AS event_time_from, max(time) AS event_time_to
FROM events WHERE {IN_BATCHES}
GROUP BY batch_id
"""
CONTENT_FIELDS = ("run_attempts", "teams", "event_time_from", "event_time_to")
# The batches not derived (waiting or dismissed) holding events of run $run (of team $team when not null): why a run
# whose events were stored is not in `run_attempts`.
_HOLDING = f"""
SELECT list(DISTINCT batch_id ORDER BY batch_id) FROM events
WHERE {IN_BATCHES} AND run_id = $run AND ($team IS NULL OR team = $team)
"""
_NOT_DERIVED = f"SELECT list(batch_id ORDER BY batch_id) FROM derive_failures WHERE {_UNDERIVED}"
# The run attempts of the batches $batches (HELD_ATTEMPTS), per team: those whose events there span part of
# [$start, $end) (either bound may be null) and whose latest notebook is one of $notebooks (null: any). What the reads
# of `run_attempts` miss: a cost report's allocation, a listing of runs.
_ATTEMPTS_HELD = f"""
SELECT team, count(*) FROM ({HELD_ATTEMPTS.format(where="")})
WHERE (CAST($end AS TIMESTAMPTZ) IS NULL OR first_t < CAST($end AS TIMESTAMPTZ))
  AND (CAST($start AS TIMESTAMPTZ) IS NULL OR last_t >= CAST($start AS TIMESTAMPTZ))
  AND (CAST($notebooks AS VARCHAR[]) IS NULL OR list_contains(CAST($notebooks AS VARCHAR[]), notebook_id))
GROUP BY team
"""
# An operator's reason for a dismissal: a sentence or two (it is stored, listed and answered).
MAX_REASON_CHARS = 500


class NotOutstanding(LookupError):
    """Batch ids asked for that are not waiting to be derived again (never given up on, derived again already, or,
    for a dismissal, dismissed already)."""

    def __init__(self, batch_ids: list[int]) -> None:
        super().__init__(f"not waiting to be derived again: batch {', '.join(map(str, batch_ids))} "
                         "(`observatory derive failures --all` lists every batch given up on)")
        self.batch_ids = batch_ids


class RetryFailed(RuntimeError):
    """Deriving the batches again failed; nothing changed. The message names the exception's class only (a
    database message may quote an event's values)."""


@dataclass
class Retried:
    """What one retry did: the batches folded in, their events, the new batch they were folded under (None when there
    was nothing to do), and the counter increments it caused (the run counters of their first terminal events)."""

    batches: list[int] = field(default_factory=list)
    events: int = 0
    batch_id: int | None = None
    folded: dict[Any, float] = field(default_factory=dict, repr=False)
    outstanding: int = 0  # the batches still waiting once it commits (the writer's gauge)

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "events": self.events, "batch_id": self.batch_id}


def record(con: duckdb.DuckDBPyConnection, batch_id: int, exc: BaseException, now: datetime | None = None) -> None:
    """Record that the deriver gave up on `batch_id` (inside the caller's transaction)."""
    con.execute(RECORD, {"batch": batch_id, "now": now or datetime.now(timezone.utc), "error": type(exc).__name__})


def outstanding(cur: duckdb.DuckDBPyConnection) -> int:
    """How many batches wait to be derived again."""
    return int(cur.execute(OUTSTANDING).fetchall()[0][0])


def listing(cur: duckdb.DuckDBPyConnection, *, include_retried: bool = False, limit: int = 1000
            ) -> list[dict[str, Any]]:
    """The batches given up on, oldest first: those waiting (with `include_retried`, also those derived again or
    dismissed), each with what it holds (`CONTENT_FIELDS`): what an operator weighs before a retry or a dismissal."""
    items = [dict(zip(_FIELDS, r)) for r in cur.execute(_LIST, {"all": include_retried, "limit": limit}).fetchall()]
    if not items:
        return items
    held = {r[0]: r[1:] for r in cur.execute(_CONTENTS, batch_params([i["batch_id"] for i in items])).fetchall()}
    for i in items:
        i.update(zip(CONTENT_FIELDS, held.get(i["batch_id"], (0, [], None, None))))
    return items


def document(cur: duckdb.DuckDBPyConnection, *, include_retried: bool = False, limit: int = 1000) -> dict[str, Any]:
    """What GET /v1/derive/failures and `observatory derive failures` print: how many wait, and the list."""
    return {"outstanding": outstanding(cur), "items": listing(cur, include_retried=include_retried, limit=limit)}


def not_derived(cur: duckdb.DuckDBPyConnection) -> list[int]:
    """The batches given up on and not derived again, waiting or dismissed (their run attempts are missing), in
    order; normally none."""
    return cur.execute(_NOT_DERIVED).fetchall()[0][0] or []


def holding(cur: duckdb.DuckDBPyConnection, run_id: str, team: str | None = None) -> list[int]:
    """The batches not derived again (waiting or dismissed) that hold events of `run_id` (of `team`'s only, when
    given): what a read that finds no such run names, so that "not found" does not hide stored events."""
    batches = not_derived(cur)
    if not batches:
        return []
    return cur.execute(_HOLDING, {**batch_params(batches), "run": run_id, "team": team}).fetchall()[0][0] or []


def attempts_held(cur: duckdb.DuckDBPyConnection, start: datetime | None = None, end: datetime | None = None,
                  notebooks: list[str] | None = None) -> dict[str, int]:
    """Per team, the run attempts of the batches not derived again (waiting or dismissed) whose events there fall
    partly in [start, end) (unbounded where None), of `notebooks` when given: the attempts `run_attempts` lacks, or
    holds incomplete, which the cost reports and the listing of runs say they miss. Empty, after one statement, when
    nothing was given up on."""
    batches = not_derived(cur)
    if not batches:
        return {}
    return dict(cur.execute(_ATTEMPTS_HELD, {**batch_params(batches), "start": start, "end": end,
                                             "notebooks": notebooks}).fetchall())


def _chosen(con: duckdb.DuckDBPyConnection, batch_ids: list[int] | None, where: str) -> list[int]:
    """The batches of derive_failures that satisfy `where` (all of them, or `batch_ids`, each of which must)."""
    found = [b for (b,) in con.execute(f"SELECT batch_id FROM derive_failures WHERE {where} ORDER BY batch_id"
                                       ).fetchall()]
    if batch_ids is None:
        return found
    missing = sorted(set(batch_ids) - set(found))
    if missing:
        raise NotOutstanding(missing)
    asked = set(batch_ids)
    return [b for b in found if b in asked]


def dismiss(con: duckdb.DuckDBPyConnection, batch_ids: list[int], reason: str,
            now: datetime | None = None) -> tuple[list[int], int]:
    """Record that the waiting batches `batch_ids` will not be derived again, with the operator's `reason` (at most
    MAX_REASON_CHARS, secrets redacted before it is stored), inside the caller's transaction; returns them and how
    many still wait. Raises NotOutstanding (nothing written) for an id not waiting, ValueError for an empty or too
    long reason."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise ValueError(f"give a reason of 1 to {MAX_REASON_CHARS} characters")
    chosen = _chosen(con, batch_ids, _WAITING)
    con.execute("UPDATE derive_failures SET dismissed_at = $now, dismissed_reason = $reason "
                f"WHERE {_WAITING} AND list_contains($ids, batch_id)",
                {"now": now or datetime.now(timezone.utc), "reason": redact_text(reason)[0], "ids": chosen})
    return chosen, outstanding(con)


def retry(con: duckdb.DuckDBPyConnection, counters: CounterStore, batch_ids: list[int] | None = None,
          now: datetime | None = None) -> Retried:
    """Fold the stored events of the batches waiting (all of them, or `batch_ids`, dismissed ones included) into the
    derived tables, inside the caller's transaction (module docstring). The counters are folded and persisted, not
    applied: the caller applies `Retried.folded` once the transaction has committed. Raises NotOutstanding for an id
    not waiting (before writing anything) and RetryFailed when the fold fails (the caller rolls back)."""
    now = now or datetime.now(timezone.utc)
    # all: those waiting; named: those not derived again yet, dismissed ones included (a fix came after all)
    waiting = _chosen(con, batch_ids, _WAITING if batch_ids is None else _UNDERIVED)
    if not waiting:
        return Retried(outstanding=outstanding(con))
    new_id = con.execute("SELECT nextval('batch_seq')").fetchall()[0][0]
    try:  # the batches' events as one batch, in their batches' order
        rows = con.sql(typed_from_stored(f"(SELECT * FROM events WHERE {IN_BATCHES} ORDER BY batch_id)"),
                       params=batch_params(waiting))
        table = rows.to_arrow_table().cast(INGEST_SCHEMA)
        deltas = fold_batches(con, [(new_id, table)], count_events=False) if table.num_rows else []
    except Exception as exc:  # noqa: BLE001 - reported by class: the caller rolls back
        raise RetryFailed(f"deriving batch {', '.join(map(str, waiting))} again failed ({type(exc).__name__}); "
                          "nothing changed, the batches stay listed") from None
    folded = counters.fold(deltas)
    counters.persist(con, folded, "derived")
    con.execute("INSERT INTO ingest_batches (batch_id, committed_at, events, duplicates, rejected, derived) "
                "VALUES ($b, $now, 0, 0, 0, true)", {"b": new_id, "now": now})
    con.execute("UPDATE derive_failures SET rederived_at = $now, rederived_batch = $b "
                f"WHERE {_UNDERIVED} AND list_contains($ids, batch_id)",
                {"now": now, "b": new_id, "ids": waiting})
    return Retried(waiting, table.num_rows, new_id, folded, outstanding(con))
