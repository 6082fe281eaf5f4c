"""Cost reports say what they miss while batches wait to be derived again (cost/reports/data.py:
`underived_attempts`). A run attempt in a batch the deriver gave up on is not in `run_attempts`, so the allocation
spreads notebook- and team-tagged lines over the other runs only. What must hold: the report's summary, `GET
/v1/cost/runs` and their notes count the month's such attempts (a plain-Python count from the posted events: attempts
whose events there reach into the month), a team token counts its team's only, `observatory report cost` prints the
note even for a CSV; each run's cost is a plain-Python allocation over the runs derived, then, after a retry, over all
of them, with the count back at 0 and the note gone."""

from __future__ import annotations

import csv
import subprocess
from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal

from cost import ingest as cost_ingest
from tests.conftest import auth
from tests.fixtures.cost.util import focus_line, write_focus_csv
from tests.ingest.test_rederive import _ingest
from tests.support import OBSERVATORY, event, refuse_to_derive

MONTH = "2026-10"
START, CUT = datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc)
# run -> (notebook, team, started, ended); the refused ones' batches are given up on
RUNS = {
    "r-f1": ("nb-f", "finance", "2026-10-10 10:00", "2026-10-10 11:00"),
    "r-f2": ("nb-f", "finance", "2026-10-10 10:00", "2026-10-10 11:00"),
    "r-m1": ("nb-m", "ml", "2026-10-10 10:00", "2026-10-10 12:00"),
    "r-m2": ("nb-m", "ml", "2026-09-30 23:30", "2026-10-01 00:30"),  # reaches into the month
    "r-m3": ("nb-m", "ml", "2026-09-20 10:00", "2026-09-20 11:00"),  # all before it
}
REFUSED = ("r-f2", "r-m2", "r-m3")
# (cost, start, end, tags)
LINES = [
    ("10.00", "2026-10-10 10:00", "2026-10-10 11:00", {"notebook_id": "nb-f"}),
    ("6.00", "2026-10-10 10:00", "2026-10-10 12:00", {"notebook_id": "nb-m"}),
    ("3.00", "2026-10-10 10:00", "2026-10-10 11:00", {"run_id": "r-f2"}),
    ("4.00", "2026-10-01 00:00", "2026-10-01 01:00", {"team": "ml"}),
]


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)


def _events() -> list[list[dict]]:
    """One batch per run: its start and its success."""
    out = []
    for run, (nb, team, s, e) in RUNS.items():
        d = {"run_id": run, "notebook_id": nb, "team": team}
        out.append([event(f"{run}-s", "notebook.run.started", d, time_=_t(s).isoformat()),
                    event(f"{run}-e", "notebook.run.succeeded", {**d, "duration_seconds": (_t(e) - _t(s)).seconds},
                          time_=_t(e).isoformat())])
    return out


def _missing(events: list[list[dict]], team: str | None = None) -> int:
    """The refused runs' attempts whose events reach into [START, CUT), of `team` when given."""
    spans: dict[tuple, list] = defaultdict(list)
    for batch in events:
        for e in batch:
            d = e["data"]
            if d["run_id"] in REFUSED:
                spans[(d["run_id"], d.get("attempt") or 1, d["team"])].append(datetime.fromisoformat(e["time"]))
    return sum(1 for (_, _, t), ts in spans.items() if min(ts) < CUT and max(ts) >= START and team in (None, t))


def _allocated(runs: set[str]) -> dict[str, Decimal]:
    """Each run's cost: a run-tagged line to its run; a notebook- (else team-) tagged line over the runs of `runs` of
    that notebook (team) overlapping its charge period, by the overlap's length."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    for cost, s, e, tags in LINES:
        if "run_id" in tags:
            out[tags["run_id"]] += Decimal(cost)
            continue
        key, val = ("notebook_id", tags["notebook_id"]) if "notebook_id" in tags else ("team", tags["team"])
        overlap = {}
        for r in runs:
            nb, team, rs, re_ = RUNS[r]
            o = (min(_t(e), _t(re_)) - max(_t(s), _t(rs))).total_seconds()
            if {"notebook_id": nb, "team": team}[key] == val and o > 0:
                overlap[r] = Decimal(o)
        for r, o in overlap.items():
            out[r] += Decimal(cost) * o / sum(overlap.values())
    return dict(out)


def _unallocated(runs: set[str]) -> Decimal:
    """The unallocated cost: run-tagged lines whose run is not in `runs` and whose tags name no team (the lines
    here name no notebook of another team)."""
    return sum((Decimal(c) for c, _, _, tags in LINES if "run_id" in tags and tags["run_id"] not in runs
                and "team" not in tags), Decimal(0))


def _runs(c, kind: str = "read") -> dict:
    r = c.get("/v1/cost/runs", params={"month": MONTH, "limit": 100}, headers=auth(kind))
    assert r.status_code == 200, r.text
    return r.json()


def test_cost_reports_count_the_runs_they_miss(make_client, db_path, tmp_path, monkeypatch):
    events = _events()
    for run in REFUSED:
        refuse_to_derive(monkeypatch, run)
    w, con = _ingest(db_path, events)
    monkeypatch.undo()
    cost_ingest.import_files(con, [write_focus_csv(tmp_path / "lines.csv",
                                                   [focus_line(c, s, e, tags) for c, s, e, tags in LINES])], "focus")
    assert con.execute("SELECT count(*) FROM derive_failures").fetchone()[0] == len(REFUSED)
    w.stop()
    con.close()
    missing = _missing(events)
    assert missing == 2 and _missing(events, "finance") == 1  # the data is as meant: not vacuous

    # the CLI, on a CSV (which holds the main table only): the note on stderr
    got = subprocess.run([OBSERVATORY, "report", "cost", "--db", str(db_path), "--month", MONTH,
                          "--out", str(tmp_path / "c.csv")], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert f"{missing} run attempts of {MONTH}, whole month" in got.stderr and "derive retry" in got.stderr
    with open(tmp_path / "c.summary.csv", newline="") as f:  # (writers.sibling)
        items = {row["Item"]: row["Value"] for row in csv.DictReader(f)}
    assert items["Run attempts not derived (not in cost per run)"] == str(missing)

    c = make_client()
    doc = _runs(c)
    assert doc["underived_run_attempts"] == missing
    assert any("could not derive" in n for n in doc["notes"])
    # the other runs of the refused runs' notebook got their share; a direct line still reaches its run
    derived = {r for r in RUNS if r not in REFUSED}
    want = _allocated(derived)
    assert {i["run_id"]: Decimal(i["cost"]) for i in doc["items"]} == want and want["r-f2"] == Decimal("3.00")
    summary = c.get("/v1/cost/summary", params={"month": MONTH}, headers=auth("read")).json()
    assert summary["summary"]["underived_run_attempts"] == missing
    # a line tagged with a run not derived has no run to take its team from: unallocated, as the note says
    assert Decimal(summary["summary"]["unallocated_cost"]) == _unallocated(derived) > 0
    assert any("could not derive" in n for n in summary["notes"])
    # a team token: its team's attempts only
    team_doc = _runs(c, "team_read")
    assert team_doc["underived_run_attempts"] == _missing(events, "finance")
    assert any(n.startswith(f"1 run attempt of {MONTH}, whole month") and " has events " in n
               for n in team_doc["notes"])
    # derived again: nothing missing, the shares spread over every run
    assert c.post("/v1/derive/retry", headers=auth("admin")).status_code == 200
    doc = _runs(c)
    assert doc["underived_run_attempts"] == 0 and not any("could not derive" in n for n in doc["notes"])
    assert {i["run_id"]: Decimal(i["cost"]) for i in doc["items"]} == _allocated(set(RUNS))
    summary = c.get("/v1/cost/summary", params={"month": MONTH}, headers=auth("read")).json()
    assert Decimal(summary["summary"]["unallocated_cost"]) == _unallocated(set(RUNS)) == 0
