"""Missed scheduled runs (part of M8): cron slots with no run started within the grace period.

Schedules come from `notebook.schedule.registered` events (extracted into `sli_schedule_regs`, every registration
kept, so a changed cron applies from its registration time on). Slots are enumerated with croniter in the
schedule's IANA time zone (UTC when none), strictly after the registration and before the next one.

A slot is *decided* once `slot + grace <= now` (wall clock). It is **served** when an attempt of the notebook whose
trigger is `scheduled` (or unknown) was first seen (its earliest event: queued, started or terminal) in
[slot, slot + grace], or names the slot in `scheduled_for` and was first seen by slot + grace. Otherwise it is
**missed** and inserted once into `sli_missed_slots` (primary key notebook, slot), which is what the Prometheus
counter `notebook_scheduled_runs_missed_total` counts. A run that arrives later (by ingest time) but started within
the grace period (by event time) *retracts* the miss (`retracted_at`): M8, on event time, stops counting it; the
counter, which counts what was detected, does not go down. A run first seen earlier than it was (its start arriving
after its end) may no longer serve a slot it served: those slots are decided again (`reopen_unserved`).

Detection is incremental: a watermark per schedule (`sli_schedule_watermarks.checked_until`, `next_due`) means a
pass only enumerates the slots that became decidable since the last one. A new registration for a notebook moves
its watermark back to the registration's time, and its slots after it are decided again (re-detected misses are
un-retracted and take the schedule's team and grace, misses no longer in the schedule are retracted); the slots
before it belong to versions it did not change. A registration equal to the version in force moves nothing
(`NEW_REGISTRATIONS`). Slots older than `now - lookback` are never enumerated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from slo.sli import state
from slo.sli.cron_slots import CRON_SLOTS, from_us
from slo.sli.sql import SCHEDULE_EXTRACT

log = logging.getLogger(__name__)
MAX_SLOTS_PER_PASS = 100_000  # per schedule and pass; the rest is picked up by the next pass
_US = timedelta(microseconds=1)

_SERVED = """
SELECT s.notebook_id, s.slot, s.team, s.cron, s.timezone, s.grace_seconds
FROM sli_slots s
WHERE NOT EXISTS (
    SELECT 1 FROM run_attempts r
    WHERE r.notebook_id = s.notebook_id
      AND (r.trigger IS NULL OR r.trigger = 'scheduled')
      AND r.first_seen_at >= $lo AND r.first_seen_at <= $hi
      AND r.first_seen_at <= s.slot + to_seconds(s.grace_seconds)
      AND (r.first_seen_at >= s.slot OR r.scheduled_for = s.slot)
)
"""

# A late attempt that serves a missed slot retracts it (sli_touched_state: attempts changed by the folded batches).
# Only slots the touched attempts can serve: from their earliest sighting less the longest grace of a stored miss,
# to their latest sighting or named slot. DuckDB then skips the row groups of older misses by their min/max: the
# table grows with every slot a stopped scheduler misses, and each fold with run attempts read all of it (25 ms at
# 760,000 misses, the saturation run's history).
RETRACT_LATE = """
UPDATE sli_missed_slots AS m SET retracted_at = $now
FROM sli_touched_state r
WHERE m.retracted_at IS NULL AND m.notebook_id = r.notebook_id AND m.slot >= $lo AND m.slot <= $hi
  AND (r.trigger IS NULL OR r.trigger = 'scheduled')
  AND r.first_seen_at <= m.slot + to_seconds(m.grace_seconds)
  AND (r.first_seen_at >= m.slot OR r.scheduled_for = m.slot)
"""
_SERVABLE = """
SELECT min(first_seen_at), max(greatest(first_seen_at, coalesce(scheduled_for, first_seen_at)))
FROM sli_touched_state WHERE trigger IS NULL OR trigger = 'scheduled'
"""
_MAX_GRACE = "missed_max_grace"  # sli_state: the longest grace of a stored miss, in seconds


def retract_late(cur: duckdb.DuckDBPyConnection, now: datetime) -> None:
    """Retract the misses that the attempts of sli_touched_state served (RETRACT_LATE)."""
    lo, hi = cur.execute(_SERVABLE).fetchone()
    if lo is None:
        return
    grace = timedelta(seconds=_max_grace(cur))
    cur.execute(RETRACT_LATE, {"now": now, "lo": lo - grace, "hi": hi})


# The touched attempts first seen earlier than they were (sli_touched_state's `seen_earlier`): they may have served
# cron slots that they no longer serve (first seen before the slot now, or with another trigger). Per notebook with
# decided slots: from the earliest such sighting to the latest event (a first sighting is never later) or the last
# decided slot, whichever is earlier.
_FIRST_SEEN_MOVED = """
SELECT r.notebook_id, min(r.first_seen_at), max(least(r.last_event_at, w.checked_until))
FROM sli_touched_state r JOIN sli_schedule_watermarks w ON w.notebook_id = r.notebook_id
WHERE r.seen_earlier AND w.checked_until IS NOT NULL
GROUP BY r.notebook_id
"""


def _max_grace(cur: duckdb.DuckDBPyConnection) -> float:
    """The longest grace of a stored miss: kept in sli_state by `detect`, read from the misses when it is not there
    (a database folded before it was kept, sli_state emptied by a migration or a rebuild). Never written here: the
    run attempts' side of a fold calls this while the events' side may write the key (slo/sli/fold.py). The run
    attempts' side writes it too, but only when `reopen_unserved` stores a miss of a longer grace than the key says
    (or the key is absent); should both sides write it in one fold, DuckDB refuses the conflict and fold() folds
    again in line what did not commit (tests/slo/test_schedule_registrations.py)."""
    got = state.get(cur, _MAX_GRACE)
    if got is not None:
        return float(got)
    return float(cur.execute("SELECT coalesce(max(grace_seconds), 0) FROM sli_missed_slots").fetchone()[0])


def _keep_max_grace(cur: duckdb.DuckDBPyConnection, new: float | None) -> None:
    """Keep the longest grace of a stored miss once `detect` stored misses of grace up to `new` (from the misses
    themselves the first time, the new ones included)."""
    got = state.get(cur, _MAX_GRACE)
    if got is None:
        state.put(cur, _MAX_GRACE, repr(_max_grace(cur)))
    elif new is not None and new > float(got):
        state.put(cur, _MAX_GRACE, repr(float(new)))


# The notebooks whose schedule was (re)registered in batches (lo, hi], each with the time after which its slots are
# decided again: just before its earliest new registration that changes something. A registration ends the version
# in force at its time, so the slots before it stay as they were; the slot at that very time ended the old version
# and belongs to neither now. A registration equal to the version in force at its time (the registration just
# before it, ties broken as `_VERSIONS` breaks them: every field a slot tracker reads) changes no slot, unless its
# time could be a slot of that version: slots are whole minutes in UTC (5-field crons, and every UTC offset in use
# since 1972 is whole minutes), so one at a whole minute is taken as changing, and the slot at its time leaves both.
# A scheduler re-announcing its schedules at start-up then moves no watermark (docs/performance.md, SLIs,
# twenty-eighth round). The predecessor must be enumerable for the two to be alike (`usable`: its time not before
# TIME_MIN; every other bound is on a field they share). `reattributes`: a staged registration differs from the one
# before it in what a stored miss keeps of its schedule (team, cron, time zone, grace; `_RESTORE`).
# Staged as `sli_new_regs` for this module's reset and the slot outcomes' (slo/sli/slots.py). `{regs}`: every
# registration, the batches' own included (`stage_new_registrations`).
NEW_REGISTRATIONS = """
CREATE OR REPLACE TEMP TABLE sli_new_regs AS
WITH new AS (
    SELECT source, id, notebook_id FROM events
    WHERE batch_id > $lo AND batch_id <= $hi AND type = 'notebook.schedule.registered' AND notebook_id IS NOT NULL
), since AS (  -- per notebook, from the registration before its earliest new one (no sort of older ones)
    SELECT f.notebook_id, coalesce(max(r.t) FILTER (WHERE r.t < f.t), f.t) AS t
    FROM (SELECT notebook_id, min(t) AS t FROM {regs} SEMI JOIN new USING (source, id) GROUP BY ALL) f
    JOIN {regs} r USING (notebook_id)
    GROUP BY f.notebook_id, f.t
), seq AS (
    SELECT source, id, notebook_id, t,
           coalesce(lag(t) OVER w >= $time_min AND cron IS NOT DISTINCT FROM lag(cron) OVER w
                    AND timezone IS NOT DISTINCT FROM lag(timezone) OVER w
                    AND grace_seconds IS NOT DISTINCT FROM lag(grace_seconds) OVER w
                    AND team IS NOT DISTINCT FROM lag(team) OVER w, false) AS same_miss,
           same_miss AND environment IS NOT DISTINCT FROM lag(environment) OVER w
                     AND sla_seconds IS NOT DISTINCT FROM lag(sla_seconds) OVER w AS same
    FROM {regs} r SEMI JOIN since s ON r.notebook_id = s.notebook_id AND r.t >= s.t
    WINDOW w AS (PARTITION BY notebook_id ORDER BY t, source, id)
)
SELECT notebook_id, min(t) - INTERVAL 1 MICROSECOND AS frm, bool_or(NOT same_miss) AS reattributes
FROM seq SEMI JOIN new USING (source, id)
WHERE NOT (same AND epoch_us(t) % 60000000 <> 0)
GROUP BY notebook_id
"""


def stage_new_registrations(cur: duckdb.DuckDBPyConnection, lo: int, hi: int, *, stored: bool = True) -> int:
    """`NEW_REGISTRATIONS` of batches (lo, hi] as the temp table `sli_new_regs`; returns how many notebooks it holds
    (none: every registration of the batches changes nothing). `stored`: the batches' registrations are in
    sli_schedule_regs already (in the fold's transaction), else they are read from their events with the stored
    ones: the fold asks that before it begins, so that batches whose registrations change nothing (a scheduler
    re-announcing its schedules at start-up) fold their two sides apart as other batches do (slo/sli/fold.py,
    `_fold_slice`)."""
    from collector.contract.events import TIME_MIN

    regs = "sli_schedule_regs"
    if not stored:
        extract = SCHEDULE_EXTRACT.format(src="events", where="batch_id > $lo AND batch_id <= $hi")
        regs = f"(SELECT * FROM sli_schedule_regs UNION ALL BY NAME ({extract}))"
    return cur.execute(NEW_REGISTRATIONS.format(regs=regs), {"lo": lo, "hi": hi, "time_min": TIME_MIN}
                       ).fetchone()[0]


# Each watermark moved back to the registration (never before the lookback), the notebook due at once; the ones
# moved are returned (their misses after it are decided again: `detect`'s `moved`).
_MOVED_BACK = """
SELECT w.notebook_id, r.reattributes FROM sli_new_regs r JOIN sli_schedule_watermarks w USING (notebook_id)
WHERE w.checked_until > greatest(r.frm, $floor)
"""
_RESET = """
UPDATE sli_schedule_watermarks w SET next_due = NULL,
    checked_until = CASE WHEN w.checked_until > greatest(r.frm, $floor) THEN greatest(r.frm, $floor)
                         ELSE w.checked_until END
FROM sli_new_regs r WHERE w.notebook_id = r.notebook_id
"""


def reset_for_new_registrations(cur: duckdb.DuckDBPyConnection, floor: datetime) -> dict[str, bool]:
    """Make the notebooks of `sli_new_regs` due, their watermarks moved back to their new registration (a notebook
    without one is enumerated from its first registration anyway); returns the notebooks moved back, each with
    whether its misses may be stored under another team, cron, time zone or grace now (`reattributes`). From the
    registration, not from the first one in the lookback: a scheduler re-announcing its schedules at start-up
    would otherwise have every slot of the lookback decided again (docs/performance.md, SLIs, twenty-sixth
    round)."""
    moved = dict(cur.execute(_MOVED_BACK, {"floor": floor}).fetchall())
    cur.execute(_RESET, {"floor": floor})
    return moved


_RESET_SCHEMA = pa.schema([("notebook_id", pa.string()), ("frm", pa.timestamp("us", tz="UTC"))])
# A re-enumerated notebook's missed slots after `frm` that the new enumeration does not find missed are retracted,
# those after its last decided slot too: they belong to a schedule no longer in force (were they missed under the
# new one, a later pass finds them again and un-retracts them, without counting them twice).
_RETRACT_RESET = """
UPDATE sli_missed_slots m SET retracted_at = $now
FROM sli_resets r
WHERE m.notebook_id = r.notebook_id AND m.retracted_at IS NULL AND m.slot > r.frm
  AND NOT EXISTS (SELECT 1 FROM sli_new_missed n WHERE n.notebook_id = m.notebook_id AND n.slot = m.slot)
"""

# The new misses are inserted (their teams returned, for the kept counts); a slot stored already is skipped, and put
# in force again when it was retracted (`_UNRETRACT`); after a registration that changed a stored miss's team,
# cron, time zone or grace (one arriving late), `_RESTORE` also rewrites those of the misses found again, so that
# M8 reads them as one fold of everything would. Only then: it reads those columns of every stored miss (the late
# registrations of bench/bench_registrations.py: ~50 against ~10 ms for `_UNRETRACT`, which reads the retracted).
_INSERT_MISSES = """
INSERT INTO sli_missed_slots
SELECT notebook_id, slot, team, cron, timezone, grace_seconds, $now, NULL FROM sli_new_missed n {only_new}
ON CONFLICT (notebook_id, slot) DO NOTHING RETURNING team
"""
_UNRETRACT = """
UPDATE sli_missed_slots m SET retracted_at = NULL
FROM sli_new_missed n
WHERE m.notebook_id = n.notebook_id AND m.slot = n.slot AND m.retracted_at IS NOT NULL
"""
_RESTORE = """
UPDATE sli_missed_slots m
SET retracted_at = NULL, team = n.team, cron = n.cron, timezone = n.timezone, grace_seconds = n.grace_seconds
FROM sli_new_missed n
WHERE m.notebook_id = n.notebook_id AND m.slot = n.slot
  AND (m.retracted_at IS NOT NULL OR m.team IS DISTINCT FROM n.team OR m.cron IS DISTINCT FROM n.cron
       OR m.timezone IS DISTINCT FROM n.timezone OR m.grace_seconds IS DISTINCT FROM n.grace_seconds)
"""
# After a re-enumeration, the misses not in force yet only: the notebook finds most of its misses again, and each
# conflicting row costs the key's lookup (a fold re-deciding 10 days of 512 schedules: -11%). Not otherwise: a
# pass's misses are then after its watermarks, new, and the anti-join would scan every stored miss (8 against 2 ms
# for 20 misses among 775,000).
_NOT_IN_FORCE = """
WHERE NOT EXISTS (SELECT 1 FROM sli_missed_slots m WHERE m.notebook_id = n.notebook_id AND m.slot = n.slot
                                                   AND m.retracted_at IS NULL)
"""
# `notebook_scheduled_runs_missed_total{team}`: the misses ever detected, kept as counts (migration 0213)
_ADD_COUNTS = """
INSERT INTO sli_missed_counts SELECT team, n FROM sli_missed_added
ON CONFLICT (team) DO UPDATE SET n = sli_missed_counts.n + EXCLUDED.n
"""
COUNTS = "SELECT team, n FROM sli_missed_counts ORDER BY team"


def _store(cur: duckdb.DuckDBPyConnection, now: datetime, *, only_new: bool,
           reattribute: bool = False) -> tuple[int, int]:
    """Store the slots of sli_new_missed as missed (with `only_new`, those not in force: `_NOT_IN_FORCE`): the new
    ones inserted and counted, the retracted ones put in force again, with `reattribute` every stored one as the
    schedule has it now (`_RESTORE`; the counter, which counts detections, keeps a miss under the team it was
    detected for). Returns (inserted, stored ones changed)."""
    candidates = cur.execute("SELECT count(*) FROM sli_new_missed").fetchall()[0][0]
    if not candidates:  # (nothing to insert, nothing to put in force again: no scan of the stored misses)
        return 0, 0
    # as Arrow: an initial fold inserts half a million misses, whose teams as Python objects cost 0.2 s more
    teams = cur.sql(_INSERT_MISSES.format(only_new=_NOT_IN_FORCE if only_new else ""),
                    params={"now": now}).to_arrow_table().column("team")
    inserted = len(teams)
    restored = 0
    if only_new or inserted < candidates:  # some were stored already
        restored = cur.execute(_RESTORE if reattribute else _UNRETRACT).fetchall()[0][0]
    if inserted:
        counts = pc.value_counts(teams)
        cur.register("sli_missed_added", pa.table({"team": counts.field("values"), "n": counts.field("counts")}))
        try:
            cur.execute(_ADD_COUNTS)
        finally:
            cur.unregister("sli_missed_added")
    return inserted, int(restored)


_SLOT_SCHEMA = pa.schema([
    ("notebook_id", pa.string()), ("slot", pa.timestamp("us", tz="UTC")), ("team", pa.string()),
    ("cron", pa.string()), ("timezone", pa.string()), ("grace_seconds", pa.float64()),
])


@dataclass
class Version:
    """One registration of a notebook's schedule, in force from `t` until the next one."""

    t: datetime
    cron: str
    tz: str | None
    grace: float
    team: str
    environment: str = "unknown"
    sla: float | None = None


UNUSABLE_REGISTRATIONS = 0  # skipped since the process started (see `usable`)


def usable(v: Version) -> bool:
    """Can this registration be enumerated: a cron that fires, a known time zone, a finite grace within the
    contract's bound (collector/contract/events.py)? Rows stored before those bounds may not be."""
    from collector.contract.events import MAX_GRACE_SECONDS, TIME_MAX, TIME_MIN, check_cron

    if not (0 <= v.grace <= MAX_GRACE_SECONDS) or not isinstance(v.t, datetime) or not TIME_MIN <= v.t < TIME_MAX:
        return False
    try:
        check_cron(v.cron)
        if v.tz:
            ZoneInfo(v.tz)
    except (ValueError, KeyError, OSError):
        return False
    return True


def due_slots(version: Version, after: datetime, before: datetime | None, now: datetime, limit: int):
    """Slots of one schedule version strictly after `after` and before `before` (next registration), decided
    by `now`; returns (decided slots, first undecided slot's due time or None). Enumerated once per (cron, tz)
    and process (cron_slots.py)."""
    return CRON_SLOTS.due(version.cron, version.tz, version.grace, after, before, now, limit)


def due_slots_us(version: Version, after: datetime, before: datetime | None, now: datetime, limit: int):
    """`due_slots` with the slots in microseconds since the epoch (for Arrow columns)."""
    return CRON_SLOTS.due_us(version.cron, version.tz, version.grace, after, before, now, limit)


# The registrations of each notebook that can matter from `start` on (its tracker's watermark, the lookback's start
# for a notebook never checked; NULL: every one): the one in force at `start` (the latest at or before it, ties
# included) and every later one; the earlier ones end by it. `at_lo`: the registration is of that latest time.
# Read for both slot trackers (slo/sli/slots.py), ordered as NEW_REGISTRATIONS orders them.
_VERSIONS = """
WITH due AS (SELECT unnest($ids::VARCHAR[]) AS notebook_id, unnest($starts::TIMESTAMPTZ[]) AS start),
lo AS (
    SELECT d.notebook_id, max(r.t) FILTER (WHERE r.t <= d.start) AS t
    FROM due d JOIN sli_schedule_regs r USING (notebook_id)
    GROUP BY d.notebook_id
)
SELECT r.notebook_id, r.t, r.cron, r.timezone, r.grace_seconds, coalesce(r.team, nb.team, 'unknown'),
       coalesce(r.environment, 'unknown'), r.sla_seconds, r.t = lo.t
FROM sli_schedule_regs r JOIN lo USING (notebook_id) LEFT JOIN notebooks nb USING (notebook_id)
WHERE lo.t IS NULL OR r.t >= lo.t
ORDER BY r.notebook_id, r.t, r.source, r.id
"""


def versions(cur: duckdb.DuckDBPyConnection, starts: Mapping[str, datetime | None], default_grace: float
             ) -> tuple[dict[str, list[Version]], list[str]]:
    """The usable schedule versions of the notebooks of `starts` that can matter from each one's start on (`_VERSIONS`:
    a notebook with years of registrations is not read whole), each notebook's in time order, and the notebooks of
    the registrations read that are not usable (`usable`). When every registration in force at a notebook's start
    is unusable, the usable one before it is in force: that notebook is read whole."""
    out: dict[str, list[Version]] = {}
    unusable: list[str] = []
    in_force: dict[str, bool] = {}  # per notebook read from a start: a usable registration in force at it
    rows = cur.execute(_VERSIONS, {"ids": list(starts), "starts": list(starts.values())}).fetchall()
    for nb, t, cron, tz, grace, team, env, sla, at_lo in rows:
        v = Version(t, cron, tz, default_grace if grace is None else float(grace), team, env, sla)
        ok = usable(v)
        if ok:
            out.setdefault(nb, []).append(v)
        else:
            unusable.append(nb)
        if at_lo:
            in_force[nb] = in_force.get(nb, False) or ok
    whole = [nb for nb, ok in in_force.items() if not ok]
    if whole:
        again, _ = versions(cur, dict.fromkeys(whole), default_grace)
        out.update(again)
    return out, unusable


def detect(cur: duckdb.DuckDBPyConnection, now: datetime, *, default_grace: float, lookback: timedelta,
           moved: Mapping[str, bool] = MappingProxyType({})) -> int:
    """Decide the slots that became decidable; returns the number of newly inserted misses. `moved`: notebooks whose
    watermark a new registration moved back (`reset_for_new_registrations`), whose misses after it are decided
    again, as those of a notebook never checked, and whether their misses may have another team, cron, time zone or
    grace now."""
    due = cur.execute(
        """
        SELECT n.notebook_id, w.checked_until
        FROM (SELECT DISTINCT notebook_id FROM sli_schedule_regs) n
        LEFT JOIN sli_schedule_watermarks w USING (notebook_id)
        WHERE w.notebook_id IS NULL OR w.checked_until IS NULL OR w.next_due IS NULL OR w.next_due <= $now
        """, {"now": now}).fetchall()
    if not due:
        return 0
    ids = [r[0] for r in due]
    checked = {r[0]: r[1] for r in due}
    floor = now - lookback
    versions_of, unusable = versions(cur, {nb: checked[nb] or floor for nb in ids}, default_grace)
    if unusable:
        # A registration stored before the contract bounded cron and grace (a cron that never fires, a grace of
        # 1e308 s): isolated here so that it never fails the pass, and so every other schedule's SLI, counted
        # and reported.
        global UNUSABLE_REGISTRATIONS
        UNUSABLE_REGISTRATIONS += len(unusable)
        log.warning("missed-run detection skipped %d schedule registration(s) it cannot enumerate (notebooks %s)",
                    len(unusable), ", ".join(sorted(set(unusable))[:5]))
    slot_rows: dict[str, list] = {k: [] for k in _SLOT_SCHEMA.names}
    marks: list[tuple[str, datetime | None, datetime | None]] = []
    resets: list[tuple[str, datetime]] = []
    lo_slot: datetime | None = None  # earliest slot, latest slot + grace
    hi_due: datetime | None = None
    for nb in ids:
        vs = versions_of.get(nb, [])
        if not vs:
            continue
        start = checked[nb]
        reset = start is None or nb in moved
        if start is None:
            start = max(vs[0].t, floor)
        last_decided = checked[nb]
        next_due = None
        for i, v in enumerate(vs):
            before = vs[i + 1].t if i + 1 < len(vs) else None
            if before is not None and before <= start:
                continue
            after = max(start, v.t)
            got, due_at = due_slots_us(v, after, before, now, MAX_SLOTS_PER_PASS)
            if got:  # column-wise: a (re)registration brings a month of slots
                slot_rows["slot"].extend(got)
                for k, val in (("notebook_id", nb), ("team", v.team), ("cron", v.cron), ("timezone", v.tz),
                               ("grace_seconds", v.grace)):
                    slot_rows[k].extend([val] * len(got))
                first, last = from_us(got[0]), from_us(got[-1])
                lo_slot = first if lo_slot is None else min(lo_slot, first)
                end = last + timedelta(seconds=v.grace)
                hi_due = end if hi_due is None else max(hi_due, end)
                last_decided = last
            if due_at is not None:
                next_due = due_at
                break
        if reset:
            resets.append((nb, start))
        marks.append((nb, last_decided or start, next_due))
    inserted = 0
    slots = pa.table(slot_rows, schema=_SLOT_SCHEMA)
    cur.register("sli_slots", slots)
    try:
        if slots.num_rows:
            assert lo_slot is not None
            cur.execute(f"CREATE OR REPLACE TEMP TABLE sli_new_missed AS {_SERVED}",
                        {"lo": lo_slot - timedelta(days=1), "hi": hi_due})
        else:
            cur.execute("CREATE OR REPLACE TEMP TABLE sli_new_missed AS SELECT * FROM sli_slots")
        if resets:  # one statement for every re-enumerated notebook (one each cost ~2 ms)
            cur.register("sli_resets", pa.table({"notebook_id": [r[0] for r in resets],
                                                 "frm": [r[1] for r in resets]}, schema=_RESET_SCHEMA))
            try:
                cur.execute(_RETRACT_RESET, {"now": now})
            finally:
                cur.unregister("sli_resets")
        inserted, _ = _store(cur, now, only_new=bool(resets), reattribute=any(moved.get(nb) for nb, _ in resets))
        _keep_max_grace(cur, cur.execute("SELECT max(grace_seconds) FROM sli_new_missed").fetchone()[0]
                        if slots.num_rows else None)
        cur.execute("DROP TABLE IF EXISTS sli_new_missed")
    finally:
        cur.unregister("sli_slots")
    upsert_marks(cur, "sli_schedule_watermarks", "checked_until", marks)
    return inserted


def first_seen_moved(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, datetime, datetime]]:
    """(notebook, earliest first sighting, end) of `_FIRST_SEEN_MOVED`."""
    return cur.execute(_FIRST_SEEN_MOVED).fetchall()


def reopen_unserved(cur: duckdb.DuckDBPyConnection, now: datetime, *, default_grace: float,
                    lookback: timedelta) -> int:
    """Decide again the decided slots that touched attempts may have stopped serving (`_FIRST_SEEN_MOVED`), and store
    those no run serves now as missed (a retracted miss is in force again); returns how many. Without it a run whose
    end arrived before its start, first seen at its end within a slot's grace, served that slot for good although
    its start came before the slot, and M8 counted one miss fewer than one fold of both events (found by
    tests/slo/test_schedule_registrations.py's property test)."""
    moved = first_seen_moved(cur)
    if not moved:
        return 0
    floor = now - lookback
    # from the one in force at the lookback's start (no slot before it is decided again); detect logs the unusable
    versions_of, _ = versions(cur, {nb: floor for nb, _, _ in moved}, default_grace)
    rows: dict[str, list] = {k: [] for k in _SLOT_SCHEMA.names}
    for nb, first_seen, until in moved:
        vs = versions_of.get(nb, [])
        for i, v in enumerate(vs):
            before = vs[i + 1].t if i + 1 < len(vs) else None
            end = until + _US if before is None else min(before, until + _US)
            # a run first seen up to the grace after a slot served it (and with another trigger no longer does)
            after = max(v.t, floor - _US, first_seen - timedelta(seconds=v.grace) - _US)
            if after >= end:
                continue
            got, _ = due_slots_us(v, after, end, now, MAX_SLOTS_PER_PASS)
            rows["slot"].extend(got)
            for k, val in (("notebook_id", nb), ("team", v.team), ("cron", v.cron), ("timezone", v.tz),
                           ("grace_seconds", v.grace)):
                rows[k].extend([val] * len(got))
    slots = pa.table(rows, schema=_SLOT_SCHEMA)
    if not slots.num_rows:
        return 0
    lo = pc.min(slots.column("slot")).as_py()
    hi = pc.max(slots.column("slot")).as_py() + timedelta(seconds=pc.max(slots.column("grace_seconds")).as_py())
    cur.register("sli_slots", slots)
    try:
        cur.execute(f"CREATE OR REPLACE TEMP TABLE sli_new_missed AS {_SERVED}", {"lo": lo - timedelta(days=1),
                                                                                   "hi": hi})
        inserted, again = _store(cur, now, only_new=True)
        if inserted or again:
            _keep_max_grace(cur, cur.execute("SELECT max(grace_seconds) FROM sli_new_missed").fetchone()[0])
        cur.execute("DROP TABLE IF EXISTS sli_new_missed")
    finally:
        cur.unregister("sli_slots")
    return inserted + again


_MARK_SCHEMA = pa.schema([("notebook_id", pa.string()), ("until", pa.timestamp("us", tz="UTC")),
                          ("next_due", pa.timestamp("us", tz="UTC"))])


def upsert_marks(cur: duckdb.DuckDBPyConnection, table: str, until: str,
                 marks: list[tuple[str, datetime | None, datetime | None]]) -> None:
    """Per notebook, how far its slots were handled and when the next one is due, in one statement (an
    `executemany` ran one INSERT per notebook). `table` and `until` are constants of this package."""
    if not marks:
        return
    cur.register("sli_marks", pa.table({"notebook_id": [m[0] for m in marks], "until": [m[1] for m in marks],
                                        "next_due": [m[2] for m in marks]}, schema=_MARK_SCHEMA))
    try:
        cur.execute(f"INSERT INTO {table} (notebook_id, {until}, next_due) SELECT notebook_id, until, next_due "
                    f"FROM sli_marks ON CONFLICT (notebook_id) DO UPDATE SET {until} = EXCLUDED.{until}, "
                    "next_due = EXCLUDED.next_due")
    finally:
        cur.unregister("sli_marks")
