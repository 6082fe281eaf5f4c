"""Schedule-aware outcomes of cron slots: the events of the scheduled-run SLOs (issue 15).

Counting run attempts cannot see a scheduler that stopped (no attempt, no error) and counts a failure that a retry
fixed. Here the unit is the **due slot** of a production schedule, which the collector already enumerates for
missed-run detection (slo/sli/missed.py, same croniter versions and grace). Each slot gets one outcome:

- `missed`: no run of the notebook (trigger scheduled or unknown) was first seen in [slot, slot + grace] nor named
  the slot in `scheduled_for` (decided at slot + grace + settle);
- `ok`: the earliest serving run's final attempt succeeded by the slot's deadline (slot + SLA), decided as soon as
  that success is folded;
- `failed`: at deadline + settle its final attempt had failed, timed out or been cancelled;
- `late`: at deadline + settle it had not finished, or it succeeded after the deadline.

"Final attempt" is the run's highest attempt (of those first seen since a day before the oldest undecided slot,
the bound of both scans below): a failure that a retry fixed before the deadline is `ok` and burns
nothing. The SLA is the schedule's `sla_seconds`, else `OBSERVATORY_SLI_SCHEDULED_SLA_SECONDS` (at least the
grace). An outcome is decided once (the counter `notebook_scheduled_slots_total{team, environment, outcome}` never
goes down); slots wait, undecided, in `sli_slot_outcomes` until then. A new registration re-enumerates the
notebook's undecided slots after it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collector.storage.db import arrow
from slo.sli import state
from slo.sli.cron_slots import from_us
from slo.sli.missed import MAX_SLOTS_PER_PASS, due_slots_us, upsert_marks, versions

OUTCOMES = ("ok", "missed", "late", "failed")
_US = timedelta(microseconds=1)

# The notebooks of `sli_new_regs` (slo/sli/missed.py: NEW_REGISTRATIONS, the registrations that change a slot):
# their undecided slots after the new registration forgotten, their watermark moved back to it (never before the
# lookback), due at once. Slots before it belong to versions the registration did not change; decided outcomes are
# never forgotten.
_FORGET_UNDECIDED = """
DELETE FROM sli_slot_outcomes o USING sli_new_regs r
WHERE o.outcome IS NULL AND o.notebook_id = r.notebook_id AND o.slot > r.frm
"""
_MOVE_BACK = """
UPDATE sli_slot_watermarks w SET next_due = NULL,
    enumerated_until = CASE WHEN w.enumerated_until > greatest(r.frm, $floor) THEN greatest(r.frm, $floor)
                            ELSE w.enumerated_until END
FROM sli_new_regs r WHERE w.notebook_id = r.notebook_id
"""

_DUE = """
SELECT n.notebook_id, w.enumerated_until
FROM (SELECT DISTINCT notebook_id FROM sli_schedule_regs) n
LEFT JOIN sli_slot_watermarks w USING (notebook_id)
WHERE w.notebook_id IS NULL OR w.enumerated_until IS NULL OR w.next_due IS NULL OR w.next_due <= $now
"""

# Undecided slots with the run that serves each (the earliest first seen), that run's final attempt so far, and the
# outcome if it can be decided now. `first_seen_at >= $lo` ($lo: a day before the oldest undecided slot) bounds both
# scans of run_attempts by its zone maps: a serving run is first seen after its slot or names it, and its later
# attempts are retries, first seen after it. Without the bound on `final`, the join on run_id read every attempt
# ever stored (DuckDB does not look up the (run_id, attempt) key's index in a join): ~40 ms at 2M attempts.
_DECIDE = """
WITH p AS (SELECT * FROM sli_slot_outcomes WHERE outcome IS NULL),
serving AS (
    SELECT p.notebook_id, p.slot, arg_min(r.run_id, (r.first_seen_at, r.run_id)) AS run_id
    FROM p JOIN run_attempts r ON r.notebook_id = p.notebook_id
    WHERE r.first_seen_at >= $lo
      AND (r.trigger IS NULL OR r.trigger = 'scheduled')
      AND r.first_seen_at <= p.slot + to_seconds(p.grace_seconds)
      AND (r.first_seen_at >= p.slot OR r.scheduled_for = p.slot)
    GROUP BY p.notebook_id, p.slot
),
final AS (
    SELECT s.notebook_id, s.slot, s.run_id,
           arg_max(a.state, a.attempt) AS state, arg_max(a.ended_at, a.attempt) AS ended_at
    FROM serving s JOIN run_attempts a ON a.run_id = s.run_id
    WHERE a.first_seen_at >= $lo
    GROUP BY s.notebook_id, s.slot, s.run_id
)
SELECT p.notebook_id, p.slot, p.team, p.environment,
       CASE WHEN f.run_id IS NULL THEN
                CASE WHEN $now >= p.slot + to_seconds(p.grace_seconds + $settle) THEN 'missed' END
            WHEN f.state = 'succeeded' AND f.ended_at <= p.deadline THEN 'ok'
            WHEN $now < p.deadline + to_seconds($settle) THEN NULL
            WHEN f.state IN ('failed', 'timed_out', 'cancelled') THEN 'failed'
            ELSE 'late' END AS outcome,
       -- when time alone could decide it, if nothing else changes (see `decide`)
       CASE WHEN f.run_id IS NULL THEN p.slot + to_seconds(p.grace_seconds + $settle)
            ELSE p.deadline + to_seconds($settle) END AS wakes_at
FROM p LEFT JOIN final f USING (notebook_id, slot)
"""
_APPLY = """
UPDATE sli_slot_outcomes o SET outcome = d.outcome, decided_at = $now
FROM sli_decided d
WHERE o.notebook_id = d.notebook_id AND o.slot = d.slot AND o.outcome IS NULL AND d.outcome IS NOT NULL
"""

_SCHEMA = pa.schema([
    ("notebook_id", pa.string()), ("slot", pa.timestamp("us", tz="UTC")), ("team", pa.string()),
    ("environment", pa.string()), ("grace_seconds", pa.float64()), ("deadline", pa.timestamp("us", tz="UTC")),
])

# The counter reads the counts kept as slots are decided (migration 0213): sli_slot_outcomes keeps every decided
# slot for good, and counting it at every refresh grew with the history (13 ms at 770,000 slots).
COUNTS = "SELECT team, environment, outcome, n FROM sli_slot_counts ORDER BY ALL"
_ADD_COUNTS = """
INSERT INTO sli_slot_counts SELECT team, environment, outcome, count(*) FROM sli_decided GROUP BY ALL
ON CONFLICT (team, environment, outcome) DO UPDATE SET n = sli_slot_counts.n + EXCLUDED.n
"""


def reset_for_new_registrations(cur: duckdb.DuckDBPyConnection, floor: datetime) -> None:
    """Re-enumerate the slots after the new registrations of `sli_new_regs` (`floor`: now - lookback)."""
    cur.execute(_FORGET_UNDECIDED)
    cur.execute(_MOVE_BACK, {"floor": floor})


def _enumerate(cur: duckdb.DuckDBPyConnection, now: datetime, *, default_grace: float, default_sla: float,
               lookback: timedelta) -> int:
    due = cur.execute(_DUE, {"now": now}).fetchall()
    if not due:
        return 0
    since = {nb: until for nb, until in due}
    # a registration stored before the contract's bounds is skipped (missed.py logs it)
    versions_of, _ = versions(cur, {nb: until or now - lookback for nb, until in since.items()}, default_grace)
    rows: dict[str, list] = {k: [] for k in _SCHEMA.names}
    marks: list[tuple[str, datetime, datetime | None]] = []
    for nb, vs in versions_of.items():
        start = since[nb] or max(vs[0].t, now - lookback)
        last, next_due = since[nb], None
        for i, v in enumerate(vs):
            before = vs[i + 1].t if i + 1 < len(vs) else None
            if before is not None and before <= start:
                continue
            got, due_at = due_slots_us(v, max(start, v.t), before, now, MAX_SLOTS_PER_PASS)
            sla_us = timedelta(seconds=max(v.sla if v.sla is not None else default_sla, v.grace)) // _US
            if got:  # column-wise, in microseconds: a (re)registration brings a month of slots
                rows["slot"].extend(got)
                rows["deadline"].extend([slot + sla_us for slot in got])
                for k, val in (("notebook_id", nb), ("team", v.team), ("environment", v.environment),
                               ("grace_seconds", v.grace)):
                    rows[k].extend([val] * len(got))
                last = from_us(got[-1])
            if due_at is not None:
                next_due = due_at
                break
        marks.append((nb, last or start, next_due))
    table = pa.table(rows, schema=_SCHEMA)
    if table.num_rows:
        cur.register("sli_new_slots", table)
        try:
            cur.execute("INSERT INTO sli_slot_outcomes SELECT *, NULL, NULL FROM sli_new_slots ON CONFLICT DO NOTHING")
        finally:
            cur.unregister("sli_new_slots")
    if not marks:  # every registration due was unusable (stored before the contract's bounds)
        return table.num_rows
    upsert_marks(cur, "sli_slot_watermarks", "enumerated_until", marks)
    return table.num_rows


def decide(cur: duckdb.DuckDBPyConnection, now: datetime, *, default_grace: float, default_sla: float,
           settle: float, lookback: timedelta, attempts_changed: bool = True) -> int:
    """Enumerate the slots that became due and decide every slot that can be; returns the slots decided now.

    Deciding joins the undecided slots with the last day of run attempts (~10 ms at 2M attempts), so it is skipped when
    nothing can have changed since the last pass: no run attempt folded (`attempts_changed`), no slot enumerated
    (a re-registration forgets its undecided slots, which are enumerated again), and `now` before the earliest
    time the last pass found a slot decidable by time alone (`wakes_at`: slot + grace + settle without a serving
    run, deadline + settle with one). An `ok` needs a folded success, hence a changed attempt.
    """
    enumerated = _enumerate(cur, now, default_grace=default_grace, default_sla=default_sla, lookback=lookback)
    woke, oldest = cur.execute("SELECT (SELECT value FROM sli_state WHERE key = 'slots_wake_at'), "
                               "(SELECT min(slot) FROM sli_slot_outcomes WHERE outcome IS NULL)").fetchone()
    if not attempts_changed and not enumerated and woke is not None and (
            woke == "" or now < datetime.fromisoformat(woke)):
        return 0
    n, wake = 0, None
    if oldest is not None:
        # as Arrow (a re-registration can leave a month of undecided slots per notebook), applied only when some
        # slot was decided: one statement in the common case instead of a table created, counted and dropped
        res = arrow(cur, _DECIDE, {"now": now, "settle": settle, "lo": oldest - timedelta(days=1)})
        undecided = pc.is_null(res.column("outcome"))
        n = res.num_rows - (pc.sum(undecided).as_py() or 0)
        wake = pc.min(res.column("wakes_at").filter(undecided)).as_py()
        if n:
            cur.register("sli_decided", res.filter(pc.invert(undecided)))
            try:
                cur.execute(_APPLY, {"now": now})
                cur.execute(_ADD_COUNTS)  # each of them was undecided: counted once
            finally:
                cur.unregister("sli_decided")
    # nothing undecided: only new slots or attempts can change anything ("")
    state.put(cur, "slots_wake_at", wake.isoformat() if wake else "")
    return int(n)


def counts(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, int]]:
    """(team, environment, outcome, decided slots): the counter `notebook_scheduled_slots_total`."""
    return [(t, e, o, int(n)) for t, e, o, n in cur.execute(COUNTS).fetchall()]
