"""A schedule (re)registration decides its notebook's slots again from that registration on (slo/sli/missed.py,
slots.py): whatever order the registrations and runs arrive in and however they are cut into folded batches, the
misses in force are those of one fold of everything. So are the undecided slot outcomes when the runs came first:
an outcome is decided once (its counter never goes down), so a run arriving after its slot was decided missed
leaves it so, and the batches may only add decided slots of schedules superseded since.

Events go straight through the writer into a DuckDB file (no app: its refresher would fold at the wall clock) and
every fold runs at one fixed `now`.
"""

from __future__ import annotations

import itertools
import tempfile
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.storage import db as dbmod
from slo.sli import fold as fold_mod
from slo.sli import missed, slots
from slo.sli.config import SliConfig
from slo.sli.fold import fold
from tests.support import assert_slot_counts_kept, write_events

NOW = datetime(2026, 11, 20, 12, 7, tzinfo=timezone.utc)
CFG = SliConfig(slot_settle_seconds=300)
CRONS = ("0 * * * *", "30 * * * *", "*/20 * * * *", "15 */2 * * *")
ZONES = (None, "Europe/Paris", "America/New_York")
_ids = itertools.count()


def ev(type_: str, minutes: int, *, seconds: float = 0, **data) -> dict:
    return {"specversion": "1.0", "id": f"g{next(_ids)}", "source": "test://regs", "type": type_,
            "time": (NOW + timedelta(minutes=minutes, seconds=seconds)).isoformat(), "data": data}


@st.composite
def histories(draw):
    """Registrations of two notebooks (one SLA per example; one grace, or one per registration: a slot outcome is
    decided once, under the grace in force then, so the outcomes are compared only with one grace, the misses
    always) and scheduled runs, cut into random batches: in a random order, or the runs first and the
    registrations after in a random order (`runs_first`, returned false with graces per registration). A run's own
    events arrive in any order too: a run first seen by its end, in the grace of a slot, serves that slot until its
    start arrives, before the slot (found by this test, when missed-run detection did not take that back:
    slo/sli/missed.py, `reopen_unserved`). A registration may repeat an earlier one of its notebook (a registration
    equal to the version in force at its time changes nothing, unless it is at a whole minute: `NEW_REGISTRATIONS`),
    at a whole minute or not."""
    grace = draw(st.sampled_from((300, 900)))
    graces = draw(st.booleans())  # each new registration its own grace (misses only: see the test)
    regs, runs = [], []
    for nb in ("a", "b"):
        drawn: list[dict] = []
        for _ in range(draw(st.integers(1, 4))):
            if drawn and draw(st.booleans()):
                reg = draw(st.sampled_from(drawn))
            else:
                reg = dict(notebook_id=nb, team=f"t-{nb}", cron=draw(st.sampled_from(CRONS)),
                           grace_seconds=draw(st.sampled_from((300, 900))) if graces else grace,
                           sla_seconds=1800, environment="prod")
                zone = draw(st.sampled_from(ZONES))
                if zone:
                    reg["timezone"] = zone
                drawn.append(reg)
            regs.append(ev("notebook.schedule.registered", draw(st.integers(-30 * 60, -30)),
                           seconds=draw(st.sampled_from((0, 0, 30.5))), **reg))
        for r in range(draw(st.integers(0, 8))):
            start = draw(st.integers(-30 * 60, 0))
            run = dict(notebook_id=nb, team=f"t-{nb}", run_id=f"{nb}-r{r}", trigger="scheduled", environment="prod")
            runs.append([ev("notebook.run.started", start, **run)])
            if draw(st.booleans()):  # queued before, maybe naming another trigger (the earliest event's wins; at
                # the start's very time the same one: which of two events at one instant is the run's earliest
                # depends on the batching, docs/sli.md's edge cases)
                lead = draw(st.integers(0, 10))
                trigger = draw(st.sampled_from(("scheduled", "manual"))) if lead else "scheduled"
                runs[-1].append(ev("notebook.run.queued", start - lead, **{**run, "trigger": trigger}))
            if draw(st.booleans()):
                outcome = draw(st.sampled_from(("succeeded", "failed")))
                runs[-1].append(ev(f"notebook.run.{outcome}", start + draw(st.integers(1, 60)), **run))
    runs_first = draw(st.booleans())
    run_events = [e for run in runs for e in run]
    order = draw(st.permutations(run_events)) + draw(st.permutations(regs)) if runs_first \
        else draw(st.permutations(regs + run_events))
    first = sum(map(len, runs)) + 1 if runs_first else 1
    cuts = sorted(set(draw(st.lists(st.integers(first, max(first, len(order) - 1)), max_size=4))))
    return order, cuts, runs_first and not graces


def _state(con) -> tuple[set, set, set]:
    """(misses in force, undecided slot outcomes, decided slot outcomes)."""
    misses = set(con.execute("SELECT notebook_id, slot, team, grace_seconds FROM sli_missed_slots "
                             "WHERE retracted_at IS NULL").fetchall())
    undecided = set(con.execute("SELECT notebook_id, slot, team, environment, grace_seconds, deadline "
                                "FROM sli_slot_outcomes WHERE outcome IS NULL").fetchall())
    decided = set(con.execute("SELECT notebook_id, slot, outcome FROM sli_slot_outcomes "
                              "WHERE outcome IS NOT NULL").fetchall())
    return misses, undecided, decided


COMPARED = {"misses": 0, "undecided": 0, "decided": 0, "moved": 0, "unchanged": 0}
SLICES: list[int] = []  # slices of each example's backlog fold


def _every_kind() -> tuple[list[dict], list[int], bool]:
    """A history that exercises every comparison, whatever the random examples draw: notebook a hourly from 20 h
    before `now`, a run serving its 10:00 slot, then (in a later batch) a schedule every 20 minutes from 07:07 that
    moves the decided watermark back; its 12:00 slot is not decided by 12:07 (grace and settle)."""
    reg = dict(notebook_id="a", team="t-a", grace_seconds=300, sla_seconds=1800, environment="prod")
    run = dict(notebook_id="a", team="t-a", run_id="a-r0", trigger="scheduled", environment="prod")
    runs = [ev("notebook.run.started", -125, **run), ev("notebook.run.succeeded", -120, **run)]
    regs = [ev("notebook.schedule.registered", -20 * 60, **reg, cron="0 * * * *"),
            ev("notebook.schedule.registered", -5 * 60, **reg, cron="*/20 * * * *")]
    return runs + regs, [len(runs) + 1], True


def _first_seen_moves() -> tuple[list[dict], list[int], bool]:
    """A run first seen by its end (10:03, in the grace of the 10:00 slot) in one batch, by its start (09:58) in the
    next: the slot is missed (the random examples draw this rarely)."""
    reg = ev("notebook.schedule.registered", -20 * 60, notebook_id="a", team="t-a", cron="0 * * * *",
             grace_seconds=300, sla_seconds=1800, environment="prod")
    run = dict(notebook_id="a", team="t-a", run_id="a-r0", trigger="scheduled", environment="prod")
    return [reg, ev("notebook.run.succeeded", -124, **run), ev("notebook.run.started", -129, **run)], [2], False


def _re_announced() -> tuple[list[dict], list[int], bool]:
    """Notebook a's schedule registered again, equal, in a later batch and within a minute (it changes nothing),
    b's again at a whole minute (it may be on a slot: decided again); a run of each in between (the random examples
    draw the first rarely)."""
    regs = [dict(notebook_id=nb, team=f"t-{nb}", cron=cron, grace_seconds=300, sla_seconds=1800, environment="prod")
            for nb, cron in (("a", "0 * * * *"), ("b", "*/20 * * * *"))]
    runs = [ev("notebook.run.started", -3 * 60 - 5, notebook_id=nb, team=f"t-{nb}", run_id=f"{nb}-r0",
               trigger="scheduled", environment="prod") for nb in ("a", "b")]
    first = [ev("notebook.schedule.registered", -20 * 60, **r) for r in regs]
    again = [ev("notebook.schedule.registered", -4 * 60, seconds=30.5, **regs[0]),
             ev("notebook.schedule.registered", -4 * 60, **regs[1])]
    return first + runs + again, [2, 4], False


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
@example(_every_kind())
@example(_first_seen_moves())
@example(_re_announced())
def test_batches_in_any_order_decide_the_slots_one_fold_decides(case):
    events, cuts, runs_first = case
    with tempfile.TemporaryDirectory() as d, counting_moved() as moved, counting_unchanged() as unchanged:
        whole = dbmod.connect(Path(d) / "whole.duckdb")
        write_events(whole, events)
        fold(whole, CFG, now=NOW)
        want = _state(whole)
        assert_slot_counts_kept(whole)
        whole.close()

        cut = dbmod.connect(Path(d) / "cut.duckdb")
        for a, b in zip([0, *cuts], [*cuts, len(events)]):
            if b > a:
                write_events(cut, events[a:b])
                fold(cut, CFG, now=NOW)
                assert_slot_counts_kept(cut)
        got = _state(cut)
        cut.close()

        # the same batches left to one fold, in slices of one batch: only the last slice decides, so everything is
        # decided as one fold decides it (slo/sli/fold.py: `fold`)
        backlog = dbmod.connect(Path(d) / "backlog.duckdb")
        for a, b in zip([0, *cuts], [*cuts, len(events)]):
            if b > a:
                write_events(backlog, events[a:b])
        SLICES.append(fold(backlog, CFG.model_copy(update={"fold_max_events": 1}), now=NOW).slices)
        assert _state(backlog) == want
        assert_slot_counts_kept(backlog)
        backlog.close()
    assert got[0] == want[0]
    COMPARED["misses"] += len(want[0])
    COMPARED["moved"] += len(moved)
    COMPARED["unchanged"] += len(unchanged)
    if runs_first:
        assert got[1] == want[1]
        # decided alike; the batches may have decided slots of schedules superseded since
        assert want[2] <= got[2]
        COMPARED["undecided"] += len(want[1])
        COMPARED["decided"] += len(want[2])


@contextmanager
def counting_moved() -> Iterator[list[str]]:
    """The notebooks whose watermark a registration moved back, as the folds reported them."""
    moved: list[str] = []
    reset = missed.reset_for_new_registrations

    def counting(cur, floor):
        out = reset(cur, floor)
        moved.extend(out)
        return out

    with mock.patch.object(missed, "reset_for_new_registrations", counting):
        yield moved


@contextmanager
def counting_unchanged() -> Iterator[list[str]]:
    """The notebooks registered in a folded range whose every new registration changed nothing (none staged)."""
    unchanged: list[str] = []
    stage = missed.stage_new_registrations

    def counting(cur, lo, hi, **kw):
        staged = stage(cur, lo, hi, **kw)
        unchanged.extend(nb for (nb,) in cur.execute(
            "SELECT DISTINCT notebook_id FROM events WHERE batch_id > $lo AND batch_id <= $hi "
            "AND type = 'notebook.schedule.registered' AND notebook_id NOT IN (SELECT notebook_id FROM sli_new_regs)",
            {"lo": lo, "hi": hi}).fetchall())
        return staged

    with mock.patch.object(missed, "stage_new_registrations", counting):
        yield unchanged


def test_the_examples_were_not_vacuous():
    """Runs after the property test (file order): misses and undecided slots were compared, registrations
    arriving after their notebook's slots were decided moved watermarks back, some changed nothing, and some
    backlog was folded in slices."""
    if not any(COMPARED.values()):
        pytest.skip("property test not run in this session")
    assert all(COMPARED.values()), COMPARED
    assert max(SLICES) > 1, SLICES  # some backlog was folded in more than one slice


@pytest.mark.parametrize("seconds, due", [(30.5, False), (0, True)], ids=["within-a-minute", "on-a-whole-minute"])
def test_a_scheduler_restart_re_announcing_its_schedules_decides_nothing_again(tmp_path, seconds, due):
    """The same schedules registered again just now (a scheduler re-announcing them at start-up) move no watermark,
    and neither slot tracker enumerates a slot again (they enumerated three days of them per notebook before the
    registration decided the slots after it only); the misses and outcomes stay as they were. A registration
    equal to the version in force makes no notebook due at all, unless its time is a whole minute (it could be a
    slot of its own schedule, which then belongs to neither version): both trackers then look at each notebook's
    two versions and find nothing to decide."""
    con = dbmod.connect(tmp_path / "obs.duckdb")
    regs = [dict(notebook_id=f"n{i}", team="t", cron="*/20 * * * *", grace_seconds=300) for i in range(20)]
    write_events(con, [ev("notebook.schedule.registered", -3 * 24 * 60, **r) for r in regs])
    fold(con, CFG, now=NOW)
    before = _state(con)
    assert len(before[0]) == 20 * 3 * 24 * 3  # three days of slots every 20 minutes, none served
    write_events(con, [ev("notebook.schedule.registered", -2, seconds=seconds, **r) for r in regs])  # 12:05
    enumerated: list[int] = []
    due_slots_us = missed.due_slots_us

    def counting(*args):
        got, due_at = due_slots_us(*args)
        enumerated.append(len(got))
        return got, due_at

    with counting_moved() as moved, counting_unchanged() as unchanged, \
            mock.patch.object(missed, "due_slots_us", counting), mock.patch.object(slots, "due_slots_us", counting):
        assert fold(con, CFG, now=NOW).new_missed == 0
    assert moved == [] and sum(enumerated) == 0
    if due:  # both versions of each notebook, by both trackers
        assert unchanged == [] and len(enumerated) == 2 * 20 * 2
    else:
        assert sorted(unchanged) == sorted(r["notebook_id"] for r in regs) and enumerated == []
    assert _state(con) == before


def _one_fold(tmp_path: Path, name: str, events: list[dict]) -> tuple[set, set, set]:
    con = dbmod.connect(tmp_path / f"{name}.duckdb")
    write_events(con, events)
    fold(con, CFG, now=NOW)
    try:
        return _state(con)
    finally:
        con.close()


HOURLY = dict(notebook_id="n", team="t", cron="0 * * * *", grace_seconds=300, sla_seconds=1800, environment="prod")


@pytest.mark.parametrize("change", [
    {}, {"cron": "30 * * * *"}, {"timezone": "Asia/Kolkata"}, {"grace_seconds": 600}, {"team": "u"},
    {"environment": "staging"}, {"sla_seconds": 900}, {"sla_seconds": None},
], ids=lambda c: ",".join(c) or "same")
def test_a_registration_is_unchanged_only_when_every_field_a_slot_tracker_reads_is_the_same(tmp_path, change):
    """A registration arriving after the slots were decided, within a minute, equal to the version in force at its
    time but for one field: it re-decides the notebook's slots from its time (both trackers), and the slots equal
    one fold of everything; equal in every field, it changes nothing and is staged for neither tracker. One arrives
    late, between two versions already folded, the other after them."""
    first = ev("notebook.schedule.registered", -8 * 60 - 7, **HOURLY)  # 04:00
    third = ev("notebook.schedule.registered", -2 * 60 - 7, **{**HOURLY, "cron": "*/20 * * * *"})  # 10:00
    for late, when in ((True, -5 * 60 - 7), (False, -1 * 60 - 7)):  # 07:00:30 between, 11:00:30 after
        in_force = HOURLY if late else {**HOURLY, "cron": "*/20 * * * *"}
        fields = {k: v for k, v in {**in_force, **change}.items() if v is not None}
        again = ev("notebook.schedule.registered", when, seconds=30.5, **fields)
        con = dbmod.connect(tmp_path / f"cut-{late}.duckdb")
        write_events(con, [first, third])
        fold(con, CFG, now=NOW)
        write_events(con, [again])
        with counting_unchanged() as unchanged:
            fold(con, CFG, now=NOW)
        got = _state(con)
        con.close()
        assert unchanged == ([] if change else ["n"])
        assert got[0] == _one_fold(tmp_path, f"whole-{late}", [first, third, again])[0]


def test_an_equal_registration_on_a_slot_of_its_own_schedule_takes_that_slot(tmp_path):
    """The hourly schedule registered again at 10:00 exactly, equal in every field: the 10:00 slot, decided missed,
    ended the version before and is not the new one's (strictly after its registration), so it is retracted, as one
    fold of both would never have found it; the registration is not taken as unchanged."""
    con = dbmod.connect(tmp_path / "obs.duckdb")
    write_events(con, [ev("notebook.schedule.registered", -5 * 60 - 7, **HOURLY)])  # 07:00
    fold(con, CFG, now=NOW)
    on_slot = NOW.replace(minute=0) - timedelta(hours=2)  # 10:00
    assert ("n", on_slot, "t", 300.0) in _state(con)[0]
    again = ev("notebook.schedule.registered", -2 * 60 - 7, **HOURLY)
    write_events(con, [again])
    with counting_unchanged() as unchanged:
        fold(con, CFG, now=NOW)
    got = _state(con)[0]
    assert unchanged == [] and ("n", on_slot, "t", 300.0) not in got
    first = ev("notebook.schedule.registered", -5 * 60 - 7, **HOURLY)
    assert got == _one_fold(tmp_path, "whole", [first, again])[0]


def test_a_registration_on_a_decided_slot_takes_that_slot_from_the_old_schedule(tmp_path):
    """A slot at the very time of a new registration ended the old schedule (its slots are before the next
    registration) and is not the new one's (its slots are after its registration): once decided missed under the old
    schedule, the registration arriving later retracts it, as one fold of both would never have found it."""
    con = dbmod.connect(tmp_path / "obs.duckdb")
    hourly = dict(notebook_id="n", team="t", cron="0 * * * *", grace_seconds=300)
    write_events(con, [ev("notebook.schedule.registered", -5 * 60 - 7, **hourly)])  # 07:00
    fold(con, CFG, now=NOW)
    on_slot = NOW.replace(minute=0) - timedelta(hours=2)  # 10:00, decided missed under the hourly schedule
    assert (("n", on_slot, "t", 300.0)) in _state(con)[0]
    write_events(con, [ev("notebook.schedule.registered", -2 * 60 - 7, **{**hourly, "cron": "30 * * * *"})])  # 10:00
    fold(con, CFG, now=NOW)
    got = sorted(slot for _, slot, _, _ in _state(con)[0])
    assert on_slot not in got
    assert got == [NOW.replace(minute=0) - timedelta(hours=h) for h in (4, 3)] + \
        [NOW.replace(minute=30) - timedelta(hours=h) for h in (2, 1)]


def test_a_late_run_retracts_a_miss_of_the_longest_grace_with_or_without_the_kept_bound(tmp_path):
    """Late runs retract misses among the slots they can serve only (missed.retract_late: from their first sighting
    less the longest grace of a stored miss, kept in sli_state): a run first seen 50 minutes after its slot serves
    it under a grace of an hour, whether the bound was kept or must be read from the misses again (sli_state
    emptied by a migration)."""
    con = dbmod.connect(tmp_path / "obs.duckdb")
    write_events(con, [ev("notebook.schedule.registered", -6 * 60 - 7, notebook_id=nb, team="t", cron="0 * * * *",
                    grace_seconds=grace) for nb, grace in (("long", 3600), ("short", 300))])
    fold(con, CFG, now=NOW)
    assert con.execute("SELECT value FROM sli_state WHERE key = 'missed_max_grace'").fetchone() == ("3600.0",)
    slot = NOW.replace(minute=0) - timedelta(hours=3)
    assert ("long", slot, "t", 3600.0) in _state(con)[0]
    for n, forget in enumerate((False, True)):
        if forget:
            con.execute("DELETE FROM sli_state WHERE key = 'missed_max_grace'")
        served = slot - timedelta(hours=n)
        run = dict(notebook_id="long", team="t", run_id=f"late-{n}", trigger="scheduled")
        minutes = int((served - NOW).total_seconds() // 60) + 50
        write_events(con, [ev("notebook.run.started", minutes, **run)])
        fold(con, CFG, now=NOW)
        assert ("long", served, "t", 3600.0) not in _state(con)[0], forget


def _fold_apart(tmp_path: Path, batches: list[list[dict]]) -> tuple[set, set]:
    """(misses in force after folding `batches` one by one, after one fold of all of them)."""
    got = []
    for name, parts in (("apart", batches), ("whole", [[e for b in batches for e in b]])):
        con = dbmod.connect(tmp_path / f"{name}.duckdb")
        for part in parts:
            write_events(con, part)
            fold(con, CFG, now=NOW)
        got.append(_state(con)[0])
        con.close()
    return got[0], got[1]


def test_a_run_first_seen_earlier_than_its_slot_no_longer_serves_it(tmp_path):
    """A run whose end arrives first is first seen at its end; within a slot's grace it serves that slot. Its start
    arriving later, before the slot, makes it first seen before the slot: the slot is missed, as one fold of both
    events finds it (slo/sli/missed.py: `reopen_unserved`). The same for a queued event after the start, and for
    an earlier event naming another trigger."""
    slot = NOW.replace(minute=0) - timedelta(hours=2)  # 10:00
    at = int((slot - NOW).total_seconds() // 60)
    reg = ev("notebook.schedule.registered", -6 * 60, notebook_id="n", team="t", cron="0 * * * *", grace_seconds=300)
    run = dict(notebook_id="n", team="t", trigger="scheduled")
    cases = {
        "end first": [[ev("notebook.run.succeeded", at + 3, run_id="r1", **run)],
                      [ev("notebook.run.started", at - 2, run_id="r1", **run)]],
        "queued after started": [[ev("notebook.run.started", at + 2, run_id="r2", **run)],
                                 [ev("notebook.run.queued", at - 1, run_id="r2", **run)]],
        "an earlier event with another trigger": [
            [ev("notebook.run.started", at + 2, run_id="r3", **run)],
            [ev("notebook.run.queued", at + 1, run_id="r3", **{**run, "trigger": "manual"})]],
    }
    for name, (first, later) in cases.items():
        d = tmp_path / name.replace(" ", "-")
        d.mkdir()
        apart, whole = _fold_apart(d, [[reg], first, later])
        assert ("n", slot, "t", 300.0) in whole, name
        assert apart == whole, name


def test_runs_whose_events_arrive_in_order_decide_no_slot_again(tmp_path):
    """Only an attempt whose earliest event came in a later batch than its first one is looked at again
    (run_attempts.first_batch against the batch of the earliest event): runs whose events arrive in time order, in
    one batch or one event per batch, re-decide nothing; the run first seen by its end does, once."""
    con = dbmod.connect(tmp_path / "obs.duckdb")
    write_events(con, [ev("notebook.schedule.registered", -20 * 60, notebook_id="n", team="t", cron="0 * * * *",
                          grace_seconds=300)])
    fold(con, CFG, now=NOW)
    run = dict(notebook_id="n", team="t", trigger="scheduled")
    found: list[list] = []
    moved = missed.first_seen_moved

    def recording(cur):
        found.append(moved(cur))
        return found[-1]

    at = -2 * 60 - 7  # 10:00
    steps = (("notebook.run.queued", 1), ("notebook.run.started", 2), ("notebook.run.succeeded", 9))
    in_order = [ev(t, at + m, run_id="one", **run) for t, m in steps]
    apart = [ev(t, at + 60 + m, run_id="apart", **run) for t, m in steps]
    with mock.patch.object(missed, "first_seen_moved", recording):
        for batch in [in_order, *([e] for e in apart)]:
            write_events(con, batch)
            fold(con, CFG, now=NOW)
        assert found == []  # not even looked for
        write_events(con, [ev("notebook.run.succeeded", at - 60 + 3, run_id="late", **run)])
        fold(con, CFG, now=NOW)
        write_events(con, [ev("notebook.run.started", at - 60 - 2, run_id="late", **run)])
        fold(con, CFG, now=NOW)
    late_slot = NOW.replace(minute=0) - timedelta(hours=3)  # 09:00: the run's end at 09:03, its start at 08:58
    assert found == [[("n", late_slot - timedelta(minutes=2), late_slot + timedelta(minutes=3))]]
    assert ("n", late_slot, "t", 300.0) in _state(con)[0]
    assert [r for (r,) in con.execute("SELECT run_id FROM run_attempts WHERE first_batch < updated_batch "
                                      "ORDER BY run_id").fetchall()] == ["apart", "late"]


def test_both_sides_keeping_the_longest_grace_in_one_fold_still_fold_everything(tmp_path):
    """The run attempts' side keeps the longest grace of a stored miss when it stores one (`reopen_unserved`), as
    the events' side does when it stores misses: with the key absent (a migration emptied sli_state) both write it
    while both transactions are open, which DuckDB refuses; fold() folds again in line what did not commit, and the
    misses equal those of one fold of all the events.

    Whether the two sides' writes overlap is a race the test steers but cannot decide: on a loaded machine (a
    clean-clone CI run beside a benchmark) one fold had no conflict. So the fold is tried on fresh databases up to
    five times, every try is checked against one fold of all the events, and the test needs one try with the
    conflict (almost always the first)."""
    for attempt in range(5):
        if _longest_grace_fold_conflicted(tmp_path / str(attempt)):
            return
    pytest.fail("no try of five had the two sides conflict: the folding again in line was never exercised")


def _longest_grace_fold_conflicted(tmp_path: Path) -> bool:
    """One try of the test above, its results checked; whether the sides conflicted (and were folded again)."""
    tmp_path.mkdir()
    slot = NOW.replace(minute=0) - timedelta(hours=2)  # 10:00
    at = int((slot - NOW).total_seconds() // 60)
    reg = ev("notebook.schedule.registered", -6 * 60, notebook_id="n", team="t", cron="0 * * * *", grace_seconds=300)
    run = dict(notebook_id="n", team="t", trigger="scheduled", run_id="r")
    con = dbmod.connect(tmp_path / "apart.duckdb")
    write_events(con, [reg, ev("notebook.run.succeeded", at + 3, **run)])  # 10:00 decided served, never stored
    fold(con, CFG, now=NOW)
    con.execute("DELETE FROM sli_state WHERE key = 'missed_max_grace'")
    write_events(con, [ev("notebook.run.started", at - 2, **run)])
    later = NOW + timedelta(hours=1)  # the next slot is due: the events' side stores misses too
    conflicts = []
    real_joined, real_events, real_keep = fold_mod._fold_joined, fold_mod._fold_events, missed._keep_max_grace
    began = threading.Event()

    def joined(cur, cfg, now, lo, runs_lo, *rest, **kw):
        conflicts.append(lo != runs_lo)  # a side folded, the other not: folded again in line
        return real_joined(cur, cfg, now, lo, runs_lo, *rest, **kw)

    def events_side(*args):
        began.set()  # its transaction is open
        return real_events(*args)

    def keep(cur, new):
        if threading.current_thread() is not threading.main_thread():
            began.wait(10)  # the run attempts' side writes while the events' side's transaction is open
        return real_keep(cur, new)

    with mock.patch.object(fold_mod, "_fold_joined", joined), mock.patch.object(fold_mod, "_fold_events",
                                                                                 events_side), \
            mock.patch.object(missed, "_keep_max_grace", keep):
        fold(con, CFG, now=later)
    got = _state(con)[0]
    assert con.execute("SELECT value FROM sli_state WHERE key = 'missed_max_grace'").fetchone() == ("300.0",)
    con.close()
    whole = dbmod.connect(tmp_path / "whole.duckdb")
    write_events(whole, [reg, ev("notebook.run.succeeded", at + 3, **run), ev("notebook.run.started", at - 2, **run)])
    fold(whole, CFG, now=later)
    assert ("n", slot, "t", 300.0) in got
    assert got == _state(whole)[0]
    whole.close()
    assert len(conflicts) <= 1  # at most: refused once, then folded again in line
    return len(conflicts) == 1


def test_a_miss_retracted_by_one_registration_is_in_force_again_when_a_later_one_brings_its_slot_back(tmp_path):
    """Hourly from 06:07, every half past from 08:07 (arriving later: the hourly misses after it are retracted),
    hourly again from 10:07 (arriving last): the 11:00 and 12:00 misses are in force again, the same rows, counted
    once (the counter counts detections), as one fold of the three registrations finds them."""
    def reg(minutes: int, cron: str) -> dict:
        return ev("notebook.schedule.registered", minutes, notebook_id="n", team="t", cron=cron, grace_seconds=300)

    regs = [reg(-6 * 60, "0 * * * *"), reg(-4 * 60, "30 * * * *"), reg(-2 * 60, "0 * * * *")]
    con = dbmod.connect(tmp_path / "apart.duckdb")
    for r in regs:
        write_events(con, [r])
        fold(con, CFG, now=NOW)
    got = _state(con)[0]
    at = lambda h, m=0: NOW.replace(hour=h, minute=m)  # noqa: E731
    assert sorted(slot for _, slot, _, _ in got) == [at(7), at(8), at(8, 30), at(9, 30), at(11), at(12)]
    assert con.execute("SELECT count(*) FROM sli_missed_slots").fetchone()[0] == 10  # 6 hourly, 4 half past
    assert_slot_counts_kept(con)
    con.close()
    whole = dbmod.connect(tmp_path / "whole.duckdb")
    write_events(whole, regs)
    fold(whole, CFG, now=NOW)
    assert got == _state(whole)[0]


def _regs_table(con, rows: list[tuple[str, int, str, float]]) -> None:
    """sli_schedule_regs rows (id, minutes from NOW, cron, grace) of notebook n, as stored (no contract check: a
    row stored before the contract's bounds can be unusable)."""
    for rid, minutes, cron, grace in rows:
        con.execute("INSERT INTO sli_schedule_regs (source, id, t, notebook_id, team, cron, grace_seconds) "
                    "VALUES ('s', ?, ?, 'n', 't', ?, ?)", [rid, NOW + timedelta(minutes=minutes), cron, grace])


@pytest.mark.parametrize("start, want", [
    (None, ["a", "b", "c", "d", "e"]),  # every registration
    (-500, ["a", "b", "c", "d", "e"]),  # before the first: every one
    (-300, ["b", "c", "d", "e"]),  # at b's time: b is in force
    (-250, ["b", "c", "d", "e"]),
    (-150, ["c", "d", "e"]),  # c and d share a time: both read, c first (the trackers skip it: d follows at once)
    (0, ["e"]),
])
def test_the_versions_read_start_at_the_one_in_force(tmp_path, start, want):
    """A tracker reads a notebook's registrations from the one in force at its watermark on (missed.versions), not
    the notebook's whole history; ties at that time are all read, in the trackers' order."""
    con = dbmod.connect(tmp_path / "obs.duckdb")
    _regs_table(con, [("a", -400, "0 * * * *", 300), ("b", -300, "*/20 * * * *", 300),
                      ("c", -200, "30 * * * *", 300), ("d", -200, "15 */2 * * *", 300), ("e", -100, "0 * * * *", 600)])
    crons = {"a": "0 * * * *", "b": "*/20 * * * *", "c": "30 * * * *", "d": "15 */2 * * *", "e": "0 * * * *"}
    got, unusable = missed.versions(con, {"n": None if start is None else NOW + timedelta(minutes=start)}, 300.0)
    assert [v.cron for v in got["n"]] == [crons[k] for k in want] and unusable == []


def test_an_unusable_registration_in_force_at_the_start_reads_the_notebook_whole(tmp_path):
    """A registration stored before the contract's bounds (a grace of 1e308 s) is skipped, so the usable one before
    it stays in force: when it is the one in force at the start, the notebook is read whole, as before the bound."""
    con = dbmod.connect(tmp_path / "obs.duckdb")
    _regs_table(con, [("a", -400, "0 * * * *", 300), ("b", -300, "*/20 * * * *", 1e308),
                      ("c", -100, "30 * * * *", 300)])
    got, unusable = missed.versions(con, {"n": NOW - timedelta(minutes=200)}, 300.0)
    assert [v.cron for v in got["n"]] == ["0 * * * *", "30 * * * *"] and unusable == ["n"]
    whole, _ = missed.versions(con, {"n": None}, 300.0)
    assert got == whole
