"""Incremental folding: bring the SLI tables of migration 0200 up to the last committed ingest batch.

`fold()` reads only the new batches (`events.batch_id` > cursor) plus the facts those batches change:
`sli_run_facts` (one row per terminal attempt), `sli_repro_baselines`, the hourly and daily rollups
`sli_hourly`/`sli_daily` (appended by hour to `sli_hourly_delta`, merged into both past a size), typed extracts
of registry, artifact and schedule events, and each artifact's latest state (`sli_artifact_latest`).
slo/sli/compute.py then reads a window as whole days and hours of the rollups plus the partial hours at its edges
from the facts.

A late or duplicate event that changes a run attempt's outcome, time, team or reproducibility verdict is folded as
(new fact - old fact) into the hour each belongs to, so windows stay exact under out-of-order arrival. Folds of one
database are serialised by a per-file lock (DuckDB serialises writers anyway; the lock keeps two folds from
computing the same delta twice); reads are not.

SQL text is in slo/sli/sql.py; every value (batch ids, time bounds) is bound as a `$name` parameter. DuckDB folds
bound values into the scan's filters, so the time bounds still skip row groups by their min/max statistics.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
import weakref
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Callable, Iterator, Mapping

import duckdb
import pyarrow as pa

from collector.storage.db import arrow
from collector.storage.schema import BASELINE_KEY_HASH
from slo.sli import durations, missed, slots, state, sums
from slo.sli import sql as Q
from slo.sli.beside import beside
from slo.sli.config import SliConfig, utc

log = logging.getLogger(__name__)

# ---- per-database lock (folds are serialised; reads are not) -----------------------------------------------------

_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


_PATHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def database_path(cur: duckdb.DuckDBPyConnection) -> str | None:
    """The file `cur` is connected to (None: an in-memory database): the key of its fold lock and kept states.
    Remembered per connection: a refresh asks three times, and each query of the catalogue costs ~0.6 ms."""
    try:
        return _PATHS[cur]
    except (KeyError, TypeError):
        pass
    path = cur.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()[0]
    remember_path(cur, path)
    return path


def remember_path(cur: duckdb.DuckDBPyConnection, path: str | None) -> None:
    """Tell the fold that `cur` is a cursor of the database at `path` (`database_path` of a connection to it), so that
    its first fold or computation does not query the catalogue. For cursors made per request or per refresher pass
    (collector/ingest/store.py)."""
    try:
        _PATHS[cur] = path
    except TypeError:  # an object that cannot be weakly referenced: asked again next time
        pass


def _lock_for(path: str | None) -> threading.RLock:
    """The lock of one database file, shared by every connection to it (in-memory databases share one)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path), threading.RLock())


def _key(path: str | None, instance: str | None) -> durations.Key | None:
    """The key of a database's kept states (slo/sli/durations.py): None for an in-memory one or one never folded."""
    return None if path is None or instance is None else (path, instance)


def _fold_state(cur: duckdb.DuckDBPyConnection) -> tuple[int, int, str | None, str | None]:
    """(events' cursor, run attempts' cursor, instance id, the decisions earlier slices left: `_DEFERRED`) from
    sli_state, in one statement. The run attempts' cursor is the events' one until a fold has folded the two sides
    apart (`fold`); 0 when nothing is folded."""
    kv = dict(cur.execute(Q.STATE_ALL).fetchall())
    events, runs, instance, deferred = (kv.get(k) for k in ("cursor", "runs_cursor", "instance", _DEFERRED))
    events = int(events or 0)
    return events, (int(runs) if runs is not None and events else events), instance, deferred


def _cursors(cur: duckdb.DuckDBPyConnection) -> tuple[int, int, str | None]:
    """The first three of `_fold_state`."""
    return _fold_state(cur)[:3]


@contextmanager
def kept_state(cur: duckdb.DuckDBPyConnection) -> Iterator[tuple[durations.Key | None, int]]:
    """Under the database's fold lock (no fold commits meanwhile): the key of its kept M3 state
    (slo/sli/durations.py; None for an in-memory database or one never folded) and its fold cursor (the last
    batch both sides of the fold have folded)."""
    path = database_path(cur)
    with _lock_for(path):
        events, runs, instance = _cursors(cur)
        yield _key(path, instance), min(events, runs)


# ---- folding -------------------------------------------------------------------------------------------------------

@dataclass
class FoldStats:
    """What one fold did: the batch range it read, attempts refolded (once per slice that touched them), cron slots
    newly found missed and decided, the slices it took (`fold`)."""

    from_batch: int = 0
    to_batch: int = 0
    attempts: int = 0
    new_missed: int = 0
    slots_decided: int = 0
    slices: int = 0

    def add(self, part: FoldStats) -> None:
        """Count a slice of this fold (`fold`) in."""
        self.attempts += part.attempts
        self.new_missed += part.new_missed
        self.slots_decided += part.slots_decided
        self.slices += 1


def fold(cur: duckdb.DuckDBPyConnection, cfg: SliConfig | None = None, now: datetime | None = None,
         progress: Callable[[int, int], None] | None = None) -> FoldStats:
    """Bring the SLI tables up to the last derived ingest batch (DERIVED_THROUGH) and decide newly due cron slots.

    Two sides, each with its own cursor in sli_state: the events' (event SLIs, registry, artifacts, schedules, cron
    slots, missed slots: `cursor`) and the run attempts' (run facts, reproducibility baselines, late runs' retracted
    misses: `runs_cursor`). Each side's writes commit with its cursor, so a side is folded once whatever happens to
    the other. Normally both run at once, each in a transaction of its own on its own cursor (`_fold_sides`): they
    write different tables, or different rows of one (sli_state's keys, appended rollup deltas), and the run
    attempts' side reads nothing the events' side writes but the schedule registrations, and then only new ones that
    change no slot. A fold of one transaction (`_fold_joined`) does both in line instead: the first fold, a cursor
    that is not a DuckDB connection, sides whose cursors differ (a side failed), and batches holding a schedule
    registration that changes a slot (its resets write missed slots that late runs retract). A registration equal
    to the version in force changes none (`missed.NEW_REGISTRATIONS`): a scheduler re-announcing its schedules at
    start-up folds apart (`_fold_slice`).

    A backlog of more than `cfg.fold_max_events` events is folded in slices of whole batches, each committed with
    its cursors, so that what one transaction holds no longer grows with the backlog (the first fold of 10M events:
    2.4 GiB above its start in one transaction, 0.9 GiB in slices; docs/performance.md, SLIs, twenty-ninth round).
    Only the last slice decides cron slots (`_Deferred`): the run attempts are all stored already, but a slice does
    not know the registrations of the slices after it, and a slot decided under a version that one of them replaces
    would stay counted (a miss, a slot outcome) where one fold of everything counts nothing. `progress` is called
    after each slice with the events folded so far and the backlog's (`observatory sli --db` draws a bar)."""
    cfg = cfg or SliConfig()
    now = utc(now or datetime.now(timezone.utc))
    path = database_path(cur)
    with _lock_for(path):
        lo, runs_lo, instance, deferred = _fold_state(cur)
        hi, pending, types, rederived = cur.execute(Q.NEW_BATCHES, {"lo": min(lo, runs_lo)}).fetchone()
        types = set(types)  # (of the batches after the lower cursor: those up to `hi` and maybe a few more)
        done, total, t0 = FoldStats(min(lo, runs_lo), hi), pending, time.perf_counter()
        while True:
            end, events = hi, pending  # (`pending` may count batches after `hi`, not derived yet)
            if lo == runs_lo and pending > cfg.fold_max_events:  # (sides apart: in one fold, as they catch up)
                end, events = cur.execute(Q.SLICE_END, {"lo": lo, "hi": hi, "most": cfg.fold_max_events}).fetchone()
                end, events = (hi, pending) if end is None else (end, events)
            extra = [b for b, under in rederived if runs_lo < under <= end]  # (_stage_runs)
            done.add(_fold_slice(cur, cfg, now, lo, runs_lo, end, instance, path, types, deferred, last=end >= hi,
                                 extra=extra))
            pending -= events
            if end >= hi:
                if progress is not None:
                    progress(total, total)
                if done.slices > 1:
                    log.info("SLI fold: a backlog of %d events in %d slices (OBSERVATORY_SLI_FOLD_MAX_EVENTS %d), "
                             "%.1f s", total - pending, done.slices, cfg.fold_max_events, time.perf_counter() - t0)
                return done
            if progress is not None:
                progress(total - pending, total)
            lo, runs_lo, instance, deferred = _fold_state(cur)


def _fold_slice(cur: duckdb.DuckDBPyConnection, cfg: SliConfig, now: datetime, lo: int, runs_lo: int, hi: int,
                instance: str | None, path: str | None, types: set[str], deferred: str | None, *,
                last: bool, extra: list[int]) -> FoldStats:
    """The batches up to `hi` (`fold`), both sides at once when they can be (see there); `deferred`: sli_state's
    `_DEFERRED`; `last`: the fold's last slice, which decides the cron slots; `extra`: batches derived again under a
    batch of the run attempts' range, whose attempts that side refolds too (`_stage_runs`; in line: it is rare).

    The batches' schedule registrations are staged before either side begins. When none changes a slot, the sides
    fold apart: the run attempts' side reads the registrations as they were, which answer every slot as they do with
    the new ones. Otherwise both fold in line, and the reset takes what was staged. Folded in line, a scheduler's
    restart cost a refresh ~40 ms more than other batches (docs/performance.md, SLIs, forty-fourth round)."""
    key = _key(path, instance)
    apart = not extra and hi > lo == runs_lo > 0 and isinstance(cur, duckdb.DuckDBPyConnection)
    staged = apart and Q.SCHEDULE_TYPE in types and missed.stage_new_registrations(cur, lo, hi, stored=False) > 0
    if apart and not staged:
        try:
            return _fold_sides(cur, cfg, now, lo, hi, key, types, _Deferred(deferred), last)
        except duckdb.TransactionException:
            # a write-write conflict between the sides (none expected, see above): whichever side committed
            # stays folded; the other is folded in line now
            durations.forget(key)
            sums.forget(key)
            lo, runs_lo, _, deferred = _fold_state(cur)
    return _fold_joined(cur, cfg, now, lo, runs_lo, hi, instance, path, types, _Deferred(deferred), last, extra,
                        staged=staged)


# sli_state: set while the slices of a fold have not decided the cron slots (only the last one does, `fold`), as
# JSON: the notebooks whose missed-run watermark their registrations moved back, each with whether its misses may
# be stored under another team, cron, time zone or grace now (`missed.detect`'s `moved`). Kept in the database, not
# in the process: the slices commit one by one, and the fold after a failed or killed one must still decide them.
_DEFERRED = "deferred_decisions"


class _Deferred:
    """The slot decisions left by earlier slices (`_DEFERRED`'s value, None when none are), and this slice's."""

    def __init__(self, kept: str | None) -> None:
        self.pending = kept is not None
        self.moved: dict[str, bool] = json.loads(kept) if kept else {}

    def add(self, moved: Mapping[str, bool]) -> None:
        for nb, again in moved.items():
            self.moved[nb] = self.moved.get(nb, False) or again

    def close(self, cur: duckdb.DuckDBPyConnection, *, last: bool) -> None:
        """In the slice's transaction: unset once decided (`last`), else keep for the next slice."""
        if not last:
            state.put(cur, _DEFERRED, json.dumps(self.moved, sort_keys=True))
        elif self.pending:
            state.delete(cur, _DEFERRED)


def _decide(cur: duckdb.DuckDBPyConnection, cfg: SliConfig, now: datetime, attempts_changed: bool) -> int:
    return slots.decide(cur, now, default_grace=cfg.missed_grace_seconds, default_sla=cfg.scheduled_sla_seconds,
                        settle=cfg.slot_settle_seconds, lookback=timedelta(days=cfg.missed_lookback_days),
                        attempts_changed=attempts_changed)


def _detect(cur: duckdb.DuckDBPyConnection, cfg: SliConfig, now: datetime,
            moved: Mapping[str, bool] = MappingProxyType({})) -> int:
    return missed.detect(cur, now, default_grace=cfg.missed_grace_seconds,
                         lookback=timedelta(days=cfg.missed_lookback_days), moved=moved)


def _reset_schedules(cur: duckdb.DuckDBPyConnection, cfg: SliConfig, now: datetime, lo: int, hi: int,
                     deferred: _Deferred, staged: bool) -> None:
    """Both slot trackers (missed runs, slot outcomes) decide the slots after each new registration in (lo, hi]
    again; the notebooks whose missed-run watermark moved back go to `deferred` (`_detect`'s `moved`:
    `missed.detect`). So does a notebook an earlier slice moved back, with what its new registrations change: its
    watermark is before them already, so the reset does not return it. `staged`: the new registrations are staged
    already (`_fold_slice`)."""
    floor = now - timedelta(days=cfg.missed_lookback_days)
    if not staged:
        missed.stage_new_registrations(cur, lo, hi)
    earlier = set(deferred.moved)  # (the reset returns the others with what they change)
    try:
        deferred.add(missed.reset_for_new_registrations(cur, floor))
        slots.reset_for_new_registrations(cur, floor)
        if earlier:  # (only in a fold of more than one slice)
            staged = cur.execute("SELECT notebook_id, reattributes FROM sli_new_regs").fetchall()
            deferred.add({nb: again for nb, again in staged if nb in earlier})
    finally:
        cur.execute("DROP TABLE IF EXISTS sli_new_regs")


def _fold_sides(cur: duckdb.DuckDBPyConnection, cfg: SliConfig, now: datetime, lo: int, hi: int,
                key: durations.Key | None, types: set[str], deferred: _Deferred, last: bool) -> FoldStats:
    """Both sides from batch `lo` to `hi` at once: the run attempts' on a cursor of its own (slo/sli/beside.py),
    the events' on `cur`, each in its own transaction. The run attempts' writes and the two COMMITs no longer wait
    for each other: at 10M events, with this round's other changes, a refresh (fold + compute) went from 141 to
    117 ms (docs/performance.md, eighth round).

    The run attempts' side reads the events of the batches, run_attempts and what only it writes. The writer may
    commit batches after `hi` meanwhile: an attempt they changed is refolded in its newer state, which the next
    fold finds unchanged (the refold is of attempts' current state, old facts subtracted), as when the writer
    commits just after a fold. Rollup compaction is the events' side's alone: its DELETE of the deltas it merged
    leaves the other side's appended rows, which it does not see, in place. Missed-run detection is done by the
    side ready first (`_FirstReady`): the run attempts' side when the events' side decides the hour's slots."""
    st = FoldStats(lo, hi)
    keep_changes, keep_sums = durations.tracking(key), sums.tracking(key)
    changes: Future = Future()  # the run attempts' M3 changes, as soon as staged (None: the side failed first)
    apply = _FirstFree(lambda: durations.applied(key, lo, changes.result()))
    kept_sums = _SumsCopy(key, lo)
    detection = _FirstReady() if last else None  # (only the last slice detects; an earlier one keeps `deferred`)

    def detect(c: duckdb.DuckDBPyConnection) -> int:
        """Missed-run detection, in the transaction of the side that takes it (`_FirstReady`)."""
        found = _detect(c, cfg, now, deferred.moved)
        deferred.close(c, last=True)
        return found

    def run_side(c: duckdb.DuckDBPyConnection, _own: bool) -> tuple[_Runs, pa.Table | None, int]:
        c.execute("BEGIN TRANSACTION")
        try:
            runs = _stage_runs(c, lo, hi, keep_changes, own=True)
            changes.set_result(runs.changed)
            contributed = arrow(c, Q.CONTRIB_CHANGES) if keep_sums and runs.attempts else None
            kept_sums.add(contributed)  # (staged: the pass over them need not wait for this side's writes)
            if runs.attempts:
                _write_runs(c, runs, cfg, now)
                _append_rollups(c, compact=False)
            state.put(c, "runs_cursor", str(hi))
            found = detect(c) if detection is not None and detection.take() else 0
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        finally:
            if not changes.done():
                changes.set_result(None)
        apply()
        return runs, contributed, found

    try:
        with beside(cur, run_side) as run_side_done:
            cur.execute("BEGIN TRANSACTION")
            try:
                _fold_events(cur, lo, hi, types)  # no registration that changes a slot (_fold_slice checked)
                if last:  # (earlier slices may have folded attempts)
                    attempts_changed = deferred.pending or cur.execute(Q.RUN_EVENTS_IN, {"lo": lo, "hi": hi}
                                                                       ).fetchone()[0]
                    st.slots_decided = _decide(cur, cfg, now, attempts_changed)
                contributed = arrow(cur, Q.CONTRIB_CHANGES) if keep_sums else None
                _append_rollups(cur)
                state.put(cur, "cursor", str(hi))
                if detection is None:
                    deferred.close(cur, last=False)
                elif detection.take():
                    st.new_missed = detect(cur)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            apply()
            kept_sums.add(contributed)
            runs, run_contributed, found = run_side_done()
    except BaseException:
        durations.forget(key)  # a side may have committed without the other: the kept states are of one cursor
        sums.forget(key)
        raise
    st.attempts = runs.attempts
    st.new_missed += runs.reopened + found
    durations.folded(key, lo, hi, runs.changed, apply.result)
    parts = [t for t in (contributed, run_contributed) if t is not None]  # (none from a side with no attempt)
    sums.folded(key, lo, hi, pa.concat_tables(parts) if parts else None, kept_sums.prepared)
    return st


class _FirstReady:
    """Work that either of the fold's two sides may do in its own transaction, given to the first that asks, just
    before its COMMIT: missed-run detection (with the deferred decisions it consumes). It runs on the events' side
    in most passes, as it always did: that side ends first, and detection then finds nothing due (~1.5 ms). When the
    hour's slots come due, the events' side decides them first (~55 ms at 10M events) and is the longer side; the
    run attempts' side, done with its own writes, takes the detection (~30 ms) instead of idling (docs/performance.md,
    SLIs, forty-fifth round). Either side may: detection reads the registrations, the watermarks it alone writes,
    run_attempts and the stored misses. In a fold apart no registration changes a slot (`_fold_slice`), so the run
    attempts' side, which reads them as they were, finds the same slots; the misses it stores are after the
    watermarks, those its own writes retract or reopen before them, as in a fold in line (`_fold_joined`)."""

    def __init__(self) -> None:
        self._claim = threading.Lock()

    def take(self) -> bool:
        """True for the first caller only."""
        return self._claim.acquire(blocking=False)


class _FirstFree(_FirstReady):
    """Work for whichever of the fold's two sides is done first: the other side is still writing, so the work
    overlaps it instead of following it (the kept M3 durations taking the fold's changes, ~10 ms at 10M events:
    done by the run attempts' side after its COMMIT, or by the events' side, which then waits for those changes,
    whichever commits first). Called by both; runs once, outside either transaction."""

    def __init__(self, work: Callable[[], durations.Prepared | None]) -> None:
        super().__init__()
        self._work, self.result = work, None

    def __call__(self) -> None:
        if self.take():
            self.result = self._work()


class _SumsCopy:
    """The kept sums' copy with both sides' contribution rows, applied in one pass by whichever side hands its rows
    last (sums add up in any order). The events' side hands them once it has committed; the run attempts' side, the
    longer one, as soon as they are staged, before its writes and its COMMIT: so the pass (~1.5 ms alone, ~5 beside
    the other side's statements) is mostly the events' side's, done while the other side writes, off the fold's
    critical path. The copy is installed only once both sides have committed (`sums.folded`); a fold that fails
    forgets it. Each side applied its own rows before (twice the pass's fixed cost, and the second waited for the
    first's, on the fold's last step); in line after both sides, they were the fold's last step too."""

    def __init__(self, key: durations.Key | None, lo: int) -> None:
        self.key, self.lo, self.prepared = key, lo, None
        self._lock = threading.Lock()
        self._parts: list[pa.Table] = []
        self._arrived = 0

    def add(self, contributed: pa.Table | None) -> None:
        """A side's rows (None: not tracked, or a side with no attempt), once per side."""
        with self._lock:
            if contributed is not None:
                self._parts.append(contributed)
            self._arrived += 1
            if self._arrived < 2 or not self._parts:
                return
            parts = self._parts
        self.prepared = sums.applied(self.key, self.lo, pa.concat_tables(parts) if len(parts) > 1 else parts[0])


def _fold_joined(cur: duckdb.DuckDBPyConnection, cfg: SliConfig, now: datetime, lo: int, runs_lo: int, hi: int,
                 instance: str | None, path: str | None, types: set[str], deferred: _Deferred | None = None,
                 last: bool = True, extra: list[int] | None = None, *, staged: bool = False) -> FoldStats:
    """Both sides in one transaction, in line: the events from batch `lo`, the run attempts from `runs_lo` (and of
    the batches `extra`: `_stage_runs`); `staged`: the registrations that change a slot are staged already."""
    deferred = deferred or _Deferred(None)
    cur.execute("BEGIN TRANSACTION")
    try:
        if lo == 0:  # nothing folded yet, or forgotten (rebuild(), a migration that deletes sli_state)
            runs_lo = 0
            for t in DERIVED_TABLES:
                cur.execute(f"DELETE FROM {t}")
            if deferred.pending:  # (the watermarks it names are gone)
                state.delete(cur, _DEFERRED)
                deferred = _Deferred(None)
        if instance is None:
            instance = uuid.uuid4().hex
            state.put(cur, "instance", instance)
        key = _key(path, instance)
        st = FoldStats(min(lo, runs_lo), hi)
        changed = contributed = None
        reopened = 0
        if hi > min(lo, runs_lo):
            registrations = _fold_events(cur, lo, hi, types)  # (an empty range when only the run attempts lag)
            runs = _stage_runs(cur, runs_lo, hi, durations.tracking(key), own=False, extra=extra)
            _write_runs(cur, runs, cfg, now)
            for t in _STAGED:
                cur.execute(f"DROP TABLE IF EXISTS {t}")
            st.attempts, changed, reopened = runs.attempts, runs.changed, runs.reopened
            if sums.tracking(key):  # the rows the kept additive sums move by
                contributed = arrow(cur, Q.CONTRIB_CHANGES)
            _append_rollups(cur)
            if registrations:
                _reset_schedules(cur, cfg, now, lo, hi, deferred, staged)
            state.put(cur, "cursor", str(hi))
            state.put(cur, "runs_cursor", str(hi))
        st.new_missed = reopened
        if last:
            st.new_missed += _detect(cur, cfg, now, deferred.moved)
            st.slots_decided = _decide(cur, cfg, now, st.attempts > 0 or deferred.pending)
        deferred.close(cur, last=last)
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    if lo == runs_lo:
        durations.folded(key, lo, hi, changed)
        sums.folded(key, lo, hi, contributed)
    else:  # the kept states are of one cursor
        durations.forget(key)
        sums.forget(key)
    return st


def rebuild(cur: duckdb.DuckDBPyConnection, cfg: SliConfig | None = None, now: datetime | None = None) -> FoldStats:
    """Forget the SLI tables and fold the whole history again (decided slot outcomes and missed slots are kept:
    they back counters that never go down)."""
    path = database_path(cur)
    with _lock_for(path):
        if path is not None:
            durations.forget((path, _cursors(cur)[2] or ""))
            sums.forget((path, _cursors(cur)[2] or ""))
        cur.execute("DELETE FROM sli_state")  # the fold from cursor 0 empties DERIVED_TABLES in its transaction
        return fold(cur, cfg, now)


# What a fold from cursor 0 starts from empty: everything folded from `events`, except the decided slot outcomes
# and missed slots (they back counters that never go down). A migration that changes these tables deletes
# sli_state, and the next fold rebuilds them.
DERIVED_TABLES = ("sli_run_facts", "sli_repro_baselines", "sli_hourly", "sli_daily", "sli_hourly_delta",
                  "sli_event_facts", "sli_artifacts", "sli_artifact_latest", "sli_registry",
                  "sli_schedule_regs", "sli_schedule_watermarks", "sli_slot_watermarks")


_ELIG = Q.REPRO_ELIGIBLE
_NO_CHANGES = pa.table({"t": pa.array([], pa.int64()), "team": pa.array([], pa.string()),
                        "d": pa.array([], pa.float64()), "n": pa.array([], pa.int64())})
_GK = Q.GROUP_KEY
_GK_EQ = " AND ".join(f"a.{c} = b.{c}" for c in _GK.split(", "))
# Of a stored baseline `b` (sli_gb_old): its attempt is touched by the fold; it is still its group's baseline (the
# same attempt and output in sli_gb_new). Of a new baseline `a` (sli_gb_new): its group has no stored one. Each read
# by the rare branches' count and again by the statement of the branch it selects (`_stage_repro`, `_write_runs`).
_BASE_TOUCHED = "EXISTS (SELECT 1 FROM sli_touched k WHERE k.run_id = b.run_id AND k.attempt = b.attempt)"
_BASE_KEPT = (f"EXISTS (SELECT 1 FROM sli_gb_new a WHERE {_GK_EQ} AND a.run_id = b.run_id AND a.attempt = b.attempt "
              "AND a.output_hash = b.output_hash)")
_NONE_STORED = f"NOT EXISTS (SELECT 1 FROM sli_gb_old b WHERE {_GK_EQ})"


@dataclass
class _Runs:
    """What staging the touched attempts found (`_stage_runs`): what `_write_runs` then writes."""

    attempts: int = 0
    bound: datetime | None = None  # the earliest last_event_at of their stored facts (None: none stored)
    changed: pa.Table | None = None  # the net change of M3's durations, when a state is kept for them
    repro: bool = False  # reproducibility groups staged (their baselines: sli_gb_old, sli_gb_new)
    rebased: bool = False  # a stored baseline of theirs changes (else every stored one stays as it is)
    new_groups: int = 0  # groups among them with no stored baseline (when none is `rebased`)
    seen_earlier: bool = False  # an attempt is first seen earlier than it was (TOUCHED_STATE)
    reopened: int = 0  # decided slots found missed again (`_write_runs`)


# The staging's temporary tables, dropped after a fold of one transaction (a side's own cursor takes them with it).
_STAGED = ("sli_touched", "sli_touched_state", "sli_old_facts", "sli_new_facts", "sli_gb_old", "sli_gb_new",
           "sli_g_full", "sli_members", "sli_g_moved")


def _stage_runs(cur: duckdb.DuckDBPyConnection, lo: int, hi: int, keep_changes: bool, *, own: bool,
                extra: list[int] | None = None) -> _Runs:
    """Stage the refold of the attempts the batches touched, reading only: their facts now (with M2 verdicts) and
    before, the new baselines of their reproducibility groups, their contribution rows (new - old): into a new
    sli_contrib on a cursor of their `own` (`_fold_sides`), else added to the events' (`_fold_joined`).

    `extra`: batches folded already whose attempts are refolded too: the deriver gave up on them, and they were
    derived again under a batch of this range (collector/ingest/rederive.py). Their attempts were folded without
    their stored rows, so without facts; a refold is of an attempt's current state less its stored fact, so it is
    right whenever it runs."""
    if extra:
        cur.execute(Q.TOUCHED_ATTEMPTS_AND_REDERIVED, {"lo": lo, "hi": hi, "extra": extra})
    else:
        cur.execute(Q.TOUCHED_ATTEMPTS, {"lo": lo, "hi": hi})
    n, min_t = cur.execute("SELECT count(*), min(min_t) FROM sli_touched").fetchone()
    if not n:
        return _Runs(changed=_NO_CHANGES if keep_changes else None)
    cur.execute(Q.TOUCHED_STATE, {"min_t": min_t})
    min_fs, seen_earlier = cur.execute("SELECT min(first_seen_at), bool_or(seen_earlier) "
                                       "FROM sli_touched_state").fetchone()
    min_fs = min_fs or min_t
    cur.execute(Q.TOUCHED_OLD_FACTS, {"min_first_seen": min_fs})
    repro, rebased, new_groups = _stage_repro(cur)  # (and sli_new_facts, with their verdicts)
    into = "CREATE OR REPLACE TEMP TABLE sli_contrib AS" if own else "INSERT INTO sli_contrib BY NAME"
    cur.execute(f"{into} SELECT *, 1 AS sign FROM ({Q.RUN_CONTRIB.format(f='sli_new_facts')}) "
                f"UNION ALL SELECT *, -1 AS sign FROM ({Q.RUN_CONTRIB.format(f='sli_old_facts')})")
    bound = cur.execute("SELECT min(last_event_at) FROM sli_old_facts").fetchone()[0]
    changed = arrow(cur, Q.DURATION_CHANGES) if keep_changes else None
    return _Runs(int(n), bound, changed, repro, rebased, new_groups, bool(seen_earlier))


def _write_runs(cur: duckdb.DuckDBPyConnection, runs: _Runs, cfg: SliConfig, now: datetime) -> None:
    """Write what `_stage_runs` staged: the facts, the baselines, the missed slots that late runs served and that
    runs first seen earlier no longer serve (the contribution rows are in sli_contrib already, for the rollups).
    Those slots are decided ones, before the watermarks as this side's snapshot has them: the events' side decides
    the slots after them meanwhile, from the attempts as they are now."""
    if not runs.attempts:
        return
    if runs.bound is not None:
        cur.execute(Q.DELETE_OLD_FACTS, {"min_first_seen": runs.bound})
    cur.execute("INSERT INTO sli_run_facts BY NAME SELECT * FROM sli_new_facts")
    if runs.rebased:  # the stored baselines of the groups replaced
        cur.execute("DELETE FROM sli_repro_baselines WHERE rowid IN (SELECT row_id FROM sli_gb_old)")
        cur.execute(f"INSERT INTO sli_repro_baselines BY NAME "
                    f"SELECT *, {BASELINE_KEY_HASH} AS key_hash FROM sli_gb_new")
    elif runs.new_groups:  # the common case: each stored one stays, and the groups that had none get theirs
        # (deleting and storing the stored ones again, unchanged, cost ~4 ms per fold; most folds find no new group,
        # and write nothing here)
        cur.execute(f"INSERT INTO sli_repro_baselines BY NAME SELECT *, {BASELINE_KEY_HASH} AS key_hash "
                    f"FROM sli_gb_new a WHERE {_NONE_STORED}")
    missed.retract_late(cur, now)
    if runs.seen_earlier:
        runs.reopened = missed.reopen_unserved(cur, now, default_grace=cfg.missed_grace_seconds,
                                               lookback=timedelta(days=cfg.missed_lookback_days))


# The touched attempts' facts now (those that ended), without their verdicts: what sli_new_facts holds with them.
# The baselines are staged from it, and sli_new_facts made last, verdicts and all: setting them in a table made
# before cost an UPDATE (~4-5 ms, on the run attempts' side, the fold's longer one: docs/performance.md, SLIs,
# forty-first round).
_NEW_FACTS = f"({Q.RUN_FACTS.format(src='sli_touched_state')})"


def _stage_repro(cur: duckdb.DuckDBPyConnection) -> tuple[bool, bool, int]:
    """The touched attempts' facts with their M2 verdicts (sli_new_facts); when a group's baseline changes, every
    stored member of the group with its verdict again too. Stages the stored baselines of their groups (sli_gb_old)
    and the new ones (sli_gb_new). Returns whether the attempts are in a group, whether a stored baseline of those
    groups changes, and how many of the groups have none stored."""
    # the stored baselines of the groups of the touched facts, now and before (a CTAS answers its count), with their
    # row ids (for _write_runs' delete): the rows whose key's digest is wanted, by row id, then the full key compared
    # (schema.BASELINE_KEY_HASH; as collector/storage/derive.py reads repro_baselines)
    stored = cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE sli_gb_old AS
        WITH a AS (SELECT {_GK} FROM {_NEW_FACTS} n WHERE {_ELIG} UNION SELECT {_GK} FROM sli_old_facts WHERE {_ELIG})
        SELECT b.rowid AS row_id, b.* EXCLUDE (key_hash) FROM sli_repro_baselines b
        WHERE b.rowid IN (SELECT rowid FROM sli_repro_baselines
                          SEMI JOIN (SELECT {BASELINE_KEY_HASH} AS key_hash FROM a) USING (key_hash))
          AND EXISTS (SELECT 1 FROM a WHERE {_GK_EQ})""").fetchone()[0]
    # The common case first: no group's stored baseline attempt is itself touched, and no baseline moves. The new
    # baselines are staged as if so, and one statement counts both, with the groups that have no stored baseline
    # (the only ones `_write_runs` then stores); only when one is not so are the groups' tables made (a statement
    # each, ~1.5-2.5 ms, in every fold before) and the new baselines staged again.
    fresh = _stage_new_baselines(cur, full=False, members=False)
    full = moved = 0
    new_groups = fresh
    if stored:
        full, moved, new_groups = cur.execute(f"""
            SELECT count(*) FILTER (WHERE {_BASE_TOUCHED}), count(*) FILTER (WHERE NOT {_BASE_KEPT}),
                   (SELECT count(*) FROM sli_gb_new a WHERE {_NONE_STORED})
            FROM sli_gb_old b""").fetchone()
    members = False
    if full:
        # Groups whose baseline attempt itself changed need their stored members to find the new baseline.
        cur.execute(f"CREATE OR REPLACE TEMP TABLE sli_g_full AS SELECT {_GK} FROM sli_gb_old b WHERE {_BASE_TOUCHED}")
        _add_members(cur, "sli_g_full", first=True)
        members = True
        fresh = _stage_new_baselines(cur, full=True, members=True)
    if not stored and not fresh:  # no touched fact is in a group, now or before
        cur.execute(f"CREATE OR REPLACE TEMP TABLE sli_new_facts AS "
                    f"SELECT *, CAST(NULL AS VARCHAR) AS repro FROM {_NEW_FACTS} n")
        return False, False, 0
    rebased = bool(full or moved)
    # Groups whose baseline moved: every stored member's verdict is re-evaluated (rare: late earlier success).
    moved = (full or moved) and cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE sli_g_moved AS
        SELECT {_GK} FROM sli_gb_old b
        WHERE {f"NOT EXISTS (SELECT 1 FROM sli_g_full a WHERE {_GK_EQ}) AND" if full else ""} NOT {_BASE_KEPT}
        """).fetchone()[0]
    if moved:
        _add_members(cur, "sli_g_moved", first=not members)
        members = True
    join = " AND ".join(f"x.{c} = g.{c}" for c in _GK.split(", "))
    verdict = """CASE WHEN g.run_id IS NULL THEN NULL
                      WHEN x.run_id = g.run_id AND x.attempt = g.attempt THEN NULL
                      WHEN x.output_hash = g.output_hash THEN 'match' ELSE 'mismatch' END"""
    # the common case: the touched facts; else with the stored members of the groups whose baseline changed
    facts = f"(SELECT *, CAST(NULL AS VARCHAR) AS repro FROM {_NEW_FACTS} n UNION ALL BY NAME " \
            f"SELECT * FROM sli_members)" if members else _NEW_FACTS
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE sli_new_facts AS
        SELECT x.*{" EXCLUDE (repro)" if members else ""}, {verdict} AS repro
        FROM {facts} x
        LEFT JOIN sli_gb_new g ON {join} AND x.state = 'succeeded' AND x.output_hash IS NOT NULL""")
    if members:
        cur.execute("INSERT INTO sli_old_facts BY NAME SELECT * FROM sli_members")
    return True, rebased, int(new_groups)  # (its other tables are dropped with the rest of the staging: _STAGED)


def _stage_new_baselines(cur: duckdb.DuckDBPyConnection, *, full: bool, members: bool) -> int:
    """sli_gb_new: per group, the earliest (ended_at, run_id, attempt) of the touched eligible facts, the stored
    baselines (but those of the `full` groups, sli_g_full) and the stored `members` (sli_members); its count."""
    return cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE sli_gb_new AS
        SELECT {_GK},
               arg_min(run_id, (t, run_id, attempt)) AS run_id, arg_min(attempt, (t, run_id, attempt)) AS attempt,
               min(t) AS ended_at, arg_min(output_hash, (t, run_id, attempt)) AS output_hash
        FROM (
            SELECT {_GK}, run_id, attempt, t, output_hash FROM {_NEW_FACTS} n WHERE {_ELIG}
            UNION ALL
            SELECT {_GK}, run_id, attempt, ended_at AS t, output_hash FROM sli_gb_old b
            {f"WHERE NOT EXISTS (SELECT 1 FROM sli_g_full a WHERE {_GK_EQ})" if full else ""}
            {f"UNION ALL SELECT {_GK}, run_id, attempt, t, output_hash FROM sli_members" if members else ""}
        ) c
        GROUP BY {_GK}""").fetchone()[0]


def _add_members(cur: duckdb.DuckDBPyConnection, groups: str, *, first: bool) -> None:
    """Stored, untouched, eligible facts of `groups` into sli_members (created by the `first` call). A full scan of
    sli_run_facts: only on the rare paths."""
    if first:
        cur.execute("CREATE OR REPLACE TEMP TABLE sli_members AS SELECT * FROM sli_run_facts WHERE false")
    cur.execute(f"""
        INSERT INTO sli_members
        SELECT f.* FROM sli_run_facts f JOIN {groups} g ON {" AND ".join(f"f.{c} = g.{c}" for c in _GK.split(", "))}
        WHERE f.state = 'succeeded' AND f.output_hash IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM sli_touched k WHERE k.run_id = f.run_id AND k.attempt = f.attempt)
          AND NOT EXISTS (SELECT 1 FROM sli_members m WHERE m.run_id = f.run_id AND m.attempt = f.attempt)""")


def _append_rollups(cur: duckdb.DuckDBPyConnection, *, compact: bool = True) -> None:
    """rollups += the signed contribution rows staged in sli_contrib, by hour, appended to sli_hourly_delta; past
    Q.ROLLUP_DELTA_COMPACT delta rows they are merged into sli_hourly and sli_daily (unless not to `compact`), and
    rows that sum to zero (subtracted contributions) are pruned."""
    delta = Q.ROLLUP_DELTA.format(unit="hour", contrib="SELECT * FROM sli_contrib")
    cur.execute(Q.APPEND_ROLLUP.format(delta=delta))
    cur.execute("DROP TABLE sli_contrib")
    if compact and cur.execute("SELECT count(*) FROM sli_hourly_delta").fetchone()[0] > Q.ROLLUP_DELTA_COMPACT:
        compact_rollups(cur)


def compact_rollups(cur: duckdb.DuckDBPyConnection) -> None:
    """Merge the appended deltas into sli_hourly and, by day, sli_daily (inside the caller's transaction)."""
    for table, unit in Q.ROLLUPS:
        cur.execute(Q.COMPACT_ROLLUP.format(table=table, unit=unit))
    cur.execute("DELETE FROM sli_hourly_delta")
    for table, _ in Q.ROLLUPS:
        cur.execute(Q.PRUNE_ROLLUP.format(table=table))


def _fold_events(cur: duckdb.DuckDBPyConnection, lo: int, hi: int, types: set[str]) -> int:
    """Event-only SLIs (M2 checks, M5, M6, M11, M12) and the registry/artifact/schedule extracts of new batches;
    returns the schedule registrations among them. The contribution rows are computed once: staged in sli_contrib
    (sign 1) for the rollups, copied to the facts. An extract is skipped when `types` (the event types of the
    batches, or more) holds none of its types: each is a statement of ~1-3 ms, the artifacts' merge ~10."""
    where, params = "batch_id > $lo AND batch_id <= $hi", {"lo": lo, "hi": hi}
    contrib = Q.EVENT_CONTRIB.format(src="events", where=where)
    cur.execute(f"CREATE OR REPLACE TEMP TABLE sli_contrib AS SELECT *, 1 AS sign FROM ({contrib}) c", params)
    cur.execute("INSERT INTO sli_event_facts BY NAME SELECT * EXCLUDE (sign) FROM sli_contrib")
    if types & set(Q.REGISTRY_TYPES):
        cur.execute(f"INSERT INTO sli_registry BY NAME {Q.REGISTRY_EXTRACT.format(src='events', where=where)}",
                    params)
        state.put(cur, "registry_cursor", str(hi))  # the registry's version (compute keeps its snapshot by it)
    registrations = 0
    if Q.SCHEDULE_TYPE in types:
        registrations = cur.execute(f"INSERT INTO sli_schedule_regs BY NAME "
                                    f"{Q.SCHEDULE_EXTRACT.format(src='events', where=where)}", params).fetchone()[0]
    if types & set(Q.ARTIFACT_TYPES):
        # artifacts: the new rows staged, appended, and the kept latest state of their artifacts folded again
        cur.execute("CREATE OR REPLACE TEMP TABLE sli_new_artifacts AS "
                    + Q.ARTIFACT_EXTRACT.format(src="events", where=where), params)
        cur.execute("INSERT INTO sli_artifacts BY NAME SELECT * FROM sli_new_artifacts")
        cur.execute(Q.ARTIFACT_LATEST_REFOLD)
        cur.execute("DROP TABLE sli_new_artifacts")
    return int(registrations)
