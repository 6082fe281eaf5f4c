"""A backlog folded in slices (slo/sli/fold.py: `fold`, `SliConfig.fold_max_events`) is one fold of everything.

Each slice commits the batches it folded; only the last decides cron slots, and what the earlier ones leave it to
decide is kept in the database (`_DEFERRED`), so a fold stopped between slices is finished by the next one. Events go
straight through the writer (one ingest batch per `write_events` call) into DuckDB files; every fold runs at one
fixed `now`.
"""

from __future__ import annotations

import json
import random
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.storage import db as dbmod
from slo.sli import fold as fold_mod
from slo.sli import state
from slo.sli.compute import compute
from slo.sli.config import SliConfig, SliQuery
from slo.sli.fold import fold
from tests.contract.test_bulk_equivalence import _gen_events
from tests.support import assert_slot_counts_kept, write_events

NOW = datetime(2026, 11, 20, 12, 7, tzinfo=timezone.utc)
WHOLE = SliConfig(slot_settle_seconds=300, fold_max_events=10**9)


def sliced(most: int) -> SliConfig:
    return SliConfig(slot_settle_seconds=300, fold_max_events=most)


# Every table a fold writes (the rollup deltas as their sums per key: slices append their own rows), without the
# moments of the fold itself (detected, decided, retracted at `now` alike).
_TABLES = (*fold_mod.DERIVED_TABLES, "sli_missed_slots", "sli_slot_outcomes", "sli_missed_counts", "sli_slot_counts")
_MOMENTS = {"detected_at", "decided_at", "retracted_at"}


def _contents(con) -> dict[str, list]:
    out = {}
    for t in _TABLES:
        cols = [c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = $t "
                                          "ORDER BY column_index", {"t": t}).fetchall() if c not in _MOMENTS]
        if t in ("sli_hourly_delta", "sli_hourly", "sli_daily"):
            continue
        out[t] = sorted(map(repr, con.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall()))
    out["rollups"] = con.execute(
        "SELECT sli, h, team, trigger, sum(good), sum(bad), sum(total) FROM "
        "(SELECT * FROM sli_hourly_delta UNION ALL BY NAME SELECT * FROM sli_hourly) "
        "GROUP BY ALL HAVING sum(good) <> 0 OR sum(bad) <> 0 OR sum(total) <> 0 ORDER BY ALL").fetchall()
    out["retracted"] = sorted(con.execute("SELECT notebook_id, slot FROM sli_missed_slots "
                                          "WHERE retracted_at IS NOT NULL").fetchall())
    out["slis"] = {(r["sli"], r["window"], r["team"], r["notebook_id"], r["trigger"], r["stat"]):
                   (r["good"], r["bad"], r["total"], r["value"])
                   for r in compute(con, SliQuery(as_of=NOW, windows=["1h", "1d", "7d"],
                                                  levels=("platform", "team", "notebook", "trigger")), WHOLE,
                                    fold_first=False)}
    return out


def assert_same(got: dict, want: dict) -> None:
    """Equal tables; equal SLIs, their values up to the order of a float sum (slices add them up in other orders)."""
    assert got.keys() == want.keys()
    for table in want:
        if table != "slis":
            assert got[table] == want[table], table
    assert got["slis"].keys() == want["slis"].keys()
    for k, (*counts, value) in want["slis"].items():
        assert got["slis"][k][:3] == tuple(counts), k
        assert got["slis"][k][3] == (value if value is None else pytest.approx(value, rel=1e-12)), k


def _backlog(tmp_path: Path, batches: list[list[dict]], name: str = "backlog") -> Path:
    path = tmp_path / f"{name}.duckdb"
    con = dbmod.connect(path)
    for b in batches:
        write_events(con, b)
    con.close()
    return path


def _folded(src: Path, name: str, cfg: SliConfig, *, counts_kept: bool = True) -> tuple[fold_mod.FoldStats, dict]:
    path = src.with_name(f"{name}.duckdb")
    shutil.copy(src, path)
    con = dbmod.connect(path)
    try:
        steps: list[tuple[int, int]] = []
        st = fold(con, cfg, now=NOW, progress=lambda done, total: steps.append((done, total)))
        # one step per slice, the events folded growing to the backlog's
        assert len(steps) == st.slices and steps[-1][0] == steps[-1][1] > 0
        assert [d for d, _ in steps] == sorted({d for d, _ in steps}) and len({t for _, t in steps}) == 1
        assert state.get(con, fold_mod._DEFERRED) is None
        if counts_kept:  # (not after a miss changed team: the counter keeps it under the team it was detected for)
            assert_slot_counts_kept(con)
        return st, _contents(con)
    finally:
        con.close()


@pytest.mark.parametrize("most", [1, 3_000])
def test_a_backlog_folded_in_slices_is_one_fold_of_everything(tmp_path, most):
    """The bench's mix of events (runs, kernels, schedules, artifacts, registry, checks) over three days, arriving
    in a random order in 8 batches of 1,500: folded a batch or two at a time, every table and every SLI is what one
    fold of the 8 batches gives."""
    gen = _gen_events()
    events = [{**e, "data": json.loads(e["data"])}
              for e in gen.generate(12_000, seed=3, end=NOW - timedelta(minutes=1), days=3).to_dicts()]
    for e in events:
        if e["subject"] is None:
            del e["subject"]
    random.Random(5).shuffle(events)
    src = _backlog(tmp_path, [events[i::8] for i in range(8)])
    st_whole, whole = _folded(src, "whole", WHOLE)
    st_sliced, got = _folded(src, "sliced", sliced(most))
    assert st_whole.slices == 1 and st_sliced.slices == (8 if most == 1 else 4)
    assert whole["sli_missed_slots"] and whole["sli_slot_outcomes"] and whole["sli_run_facts"]  # not vacuous
    assert_same(got, whole)
    assert (st_sliced.attempts, st_sliced.new_missed, st_sliced.slots_decided) >= (
        st_whole.attempts, st_whole.new_missed, st_whole.slots_decided)


HOURLY = dict(notebook_id="n", team="t1", cron="0 * * * *", grace_seconds=300, sla_seconds=1800, environment="prod")
_n = iter(range(10**6))


def ev(type_: str, at: datetime, **data) -> dict:
    return {"specversion": "1.0", "id": f"s{next(_n)}", "source": "test://slices", "type": type_,
            "time": at.isoformat(), "data": data}


def _served_runs(first: datetime, last: datetime) -> list[dict]:
    """A scheduled run starting a minute after each hourly slot from `first` to `last`, succeeded."""
    runs, slot = [], first
    while slot <= last:
        run = dict(notebook_id="n", team="t1", run_id=f"r{slot:%H}", trigger="scheduled", environment="prod")
        runs += [ev("notebook.run.started", slot + timedelta(minutes=1), **run),
                 ev("notebook.run.succeeded", slot + timedelta(minutes=5), duration_seconds=240.0, **run)]
        slot += timedelta(hours=1)
    return runs


def test_the_slices_before_the_last_decide_no_slot(tmp_path):
    """A schedule in the backlog's first batch, corrected in the second (its slots at :30, not :00) with the runs that
    served the corrected slots: a slice that decided the slots at `now` before the correction would find the first
    version's slots missed, and a miss and a slot outcome, once decided, are counted for good. The runs are stored
    (run_attempts) before any slice is folded, so only a registration in a later slice can tell the slices apart."""
    reg = ev("notebook.schedule.registered", NOW - timedelta(hours=5, minutes=30), **HOURLY)
    fixed = ev("notebook.schedule.registered", NOW - timedelta(hours=5, minutes=29), **{**HOURLY, "cron": "30 * * * *"})
    first = NOW.replace(minute=30) - timedelta(hours=5)
    src = _backlog(tmp_path, [[reg], [fixed, *_served_runs(first, NOW - timedelta(minutes=37))]])
    st, got = _folded(src, "sliced", sliced(1))
    assert st.slices == 2
    assert got["sli_missed_slots"] == [] and got["sli_missed_counts"] == []
    assert sum("'ok'" in r for r in got["sli_slot_outcomes"]) == 5 == len(got["sli_slot_outcomes"])
    assert_same(got, _folded(src, "whole", WHOLE)[1])

    # what deciding after the first slice would have done: its six slots (07:00 to 12:00) counted missed for good
    apart = src.with_name("apart.duckdb")
    shutil.copy(src, apart)
    con = dbmod.connect(apart)
    try:
        fold_mod._fold_joined(con, WHOLE, NOW, 0, 0, 1, None, fold_mod.database_path(con), {reg["type"]})
        fold(con, WHOLE, now=NOW)
        assert con.execute("SELECT sum(n) FROM sli_missed_counts").fetchone()[0] == 6
        assert con.execute("SELECT count(*) FROM sli_missed_slots WHERE retracted_at IS NULL").fetchone()[0] == 0
    finally:
        con.close()


@pytest.mark.parametrize("stopped", [False, True], ids=["whole", "stopped-before-the-last-slice"])
def test_registrations_in_earlier_slices_reach_the_last_ones_decisions(tmp_path, monkeypatch, stopped):
    """Two late registrations of a notebook whose slots were decided: the first (its SLA changed) moves the missed
    runs' watermark back, the second (its team changed, in the next slice) is after that watermark, so its reset does
    not return the notebook; the last slice must still store the misses after it under the new team, as one fold of
    both does. Stopped before the last slice decided anything, the next fold does it, from what the database kept."""
    reg = ev("notebook.schedule.registered", NOW - timedelta(hours=10, minutes=30), **HOURLY)
    src = tmp_path / "base.duckdb"
    con = dbmod.connect(src)
    write_events(con, [reg])
    fold(con, WHOLE, now=NOW)  # eleven hourly slots missed (02:00 to 12:00), team t1
    assert con.execute("SELECT count(*) FROM sli_missed_slots WHERE team = 't1'").fetchone()[0] == 11
    later = [ev("notebook.schedule.registered", NOW - timedelta(hours=6, minutes=30), **{**HOURLY, "sla_seconds": 900}),
             ev("notebook.schedule.registered", NOW - timedelta(hours=3, minutes=30),
                **{**HOURLY, "sla_seconds": 900, "team": "t2"}),
             ev("platform.probe", NOW - timedelta(minutes=3), target="ui", ok=True)]
    for e in later:
        write_events(con, [e])
    con.close()

    _, want = _folded(src, "whole", WHOLE, counts_kept=False)
    assert [sum(f"'{t}'" in r for r in want["sli_missed_slots"]) for t in ("t1", "t2")] == [7, 4]

    path = tmp_path / "sliced.duckdb"
    shutil.copy(src, path)
    con = dbmod.connect(path)
    try:
        if stopped:
            real = fold_mod._detect
            monkeypatch.setattr(fold_mod, "_detect", lambda *a: (_ for _ in ()).throw(RuntimeError("stopped")))
            with pytest.raises(RuntimeError, match="stopped"):
                fold(con, sliced(1), now=NOW)
            # the first two slices committed: the notebook moved back, its misses to be stored under the new team
            assert json.loads(state.get(con, fold_mod._DEFERRED)) == {"n": True}
            monkeypatch.setattr(fold_mod, "_detect", real)
        st = fold(con, sliced(1), now=NOW)
        assert st.slices == (1 if stopped else 3)
        assert state.get(con, fold_mod._DEFERRED) is None
        assert_same(_contents(con), want)
    finally:
        con.close()
