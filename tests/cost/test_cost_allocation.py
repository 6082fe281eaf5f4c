"""Allocation: hand-worked direct, proportional and unallocated examples; totals always preserved."""
from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.cost.util import D, add_runs, focus_line, mem_db, write_focus_csv  # noqa: E402

from cost import allocation, ingest  # noqa: E402
from cost.schema import UNALLOCATED  # noqa: E402

RUNS = [
    {"run_id": "r1", "notebook_id": "nb-a", "team": "ml", "started_at": "2024-05-02 10:00:00", "ended_at": "2024-05-02 10:30:00"},
    {"run_id": "r2", "notebook_id": "nb-a", "team": "ml", "started_at": "2024-05-02 10:30:00", "ended_at": "2024-05-02 11:30:00"},
    {"run_id": "r3", "notebook_id": "nb-b", "team": "ml", "started_at": "2024-05-02 10:15:00", "ended_at": "2024-05-02 10:45:00"},
    {"run_id": "r4", "notebook_id": "nb-c", "team": "data", "started_at": "2024-05-02 09:00:00", "ended_at": "2024-05-02 09:10:00"},
]
H = ("2024-05-02 10:00:00", "2024-05-02 11:00:00")
LINES = [
    focus_line("10.00", *H, {"run_id": "r1"}),                       # direct to r1
    focus_line("9.00", *H, {"Notebook-ID": "nb-a"}),                 # nb-a: r1 1800 s, r2 1800 s -> 4.50 each
    focus_line("7.00", *H, {"team": "ml"}),                          # ml runs in 10-11: r1, r2, r3, 1800 s each
    focus_line("5.00", *H, {"Team": "data"}),                        # data has no run in 10-11: stays with team
    focus_line("3.00", *H),                                          # untagged
    focus_line("2.00", "2024-05-02 00:00:00", "2024-05-03 00:00:00", {"notebook_id": "nb-a"}),  # r1 1800, r2 3600
]


@pytest.fixture()
def con(tmp_path):
    c = mem_db()
    add_runs(c, RUNS)
    ingest.import_files(c, [write_focus_csv(tmp_path / "lines.csv", LINES)], "focus")
    return c


def per(df: pl.DataFrame, key: str) -> dict:
    out = {}
    for r in df.to_dicts():
        out[r[key]] = out.get(r[key], Decimal(0)) + r["effective_cost"]
    return out


def test_line_level_allocation_class(con):
    got = dict(con.execute('SELECT "EffectiveCost"::VARCHAR, x_allocation FROM cost_line_items').fetchall())
    assert got == {"10.000000000000000000": "direct", "9.000000000000000000": "proportional",
                   "7.000000000000000000": "proportional", "5.000000000000000000": "proportional",
                   "3.000000000000000000": "unallocated", "2.000000000000000000": "proportional"}


def test_hand_worked_allocation(con):
    df = allocation.allocate(con, ["2024-05"])
    teams = per(df, "team")
    assert teams == {"ml": D("28"), "data": D("5"), UNALLOCATED: D("3")}
    runs = per(df.filter(pl.col("run_id").is_not_null()), "run_id")
    third = D(7) / 3
    assert abs(runs["r1"] - (D("10") + D("4.5") + third + D(2) / 3)) < D("1e-8")
    assert abs(runs["r2"] - (D("4.5") + third + D(4) / 3)) < D("1e-8")
    assert abs(runs["r3"] - third) < D("1e-8")
    assert "r4" not in runs
    by_alloc = per(df, "allocation")
    assert by_alloc == {"direct": D("15"), "proportional": D("18"), "unallocated": D("3")}
    # the data line stayed with its team, no run
    data = df.filter(pl.col("team") == "data").to_dicts()
    assert [(r["run_id"], r["allocation"]) for r in data] == [(None, "direct")]
    # notebook nb-a: its own 9 + 2, plus r1's and r2's thirds of the team line
    notebooks = per(df, "notebook_id")
    assert abs(notebooks["nb-a"] - (D("21") + 2 * third)) < D("1e-8")  # 10 (r1 direct) + 9 + 2 + 2 x 7/3
    assert abs(notebooks["nb-b"] - third) < D("1e-8")


def test_allocated_total_equals_billed_total_exactly(con):
    df = allocation.allocate(con)
    total = con.execute('SELECT sum("EffectiveCost"), sum("BilledCost") FROM cost_line_items').fetchall()[0]
    assert sum(df["effective_cost"].to_list()) == total[0] == D("36")
    assert sum(df["billed_cost"].to_list()) == total[1]


def test_refresh_materialises_and_matches(con):
    n = allocation.refresh(con, ["2024-05"])
    assert n > 0
    got = dict(con.execute("SELECT team, sum(effective_cost) FROM cost_allocations GROUP BY 1").fetchall())
    assert got == {"ml": D("28"), "data": D("5"), UNALLOCATED: D("3")}
    per_run = dict(con.execute("SELECT run_id, sum(effective_cost) FROM cost_allocations WHERE run_id IS NOT NULL "
                               "GROUP BY 1").fetchall())
    assert sum(per_run.values()) == D("28")


def test_custom_tag_keys(tmp_path):
    from cost.config import load_settings
    c = mem_db()
    s = load_settings(tag_keys={"team": ["cost_center"], "notebook_id": ["nb"], "run_id": ["job"]})
    ingest.import_files(c, [write_focus_csv(tmp_path / "l.csv", [
        focus_line("1.5", *H, {"Cost-Center": "fin", "team": "ignored"}),
        focus_line("2.5", *H, {"job": "r9"}),
    ])], "focus", s)
    got = c.execute('SELECT x_team, x_run_id, x_allocation FROM cost_line_items ORDER BY "BilledCost"').fetchall()
    assert got == [("fin", None, "proportional"), (None, "r9", "direct")]


@pytest.mark.parametrize("mode,expected", [
    ("weighted", {"ml": D("28") + D(3) * 28 / 33, "data": D("5") + D(3) * 5 / 33}),
    ("even", {"ml": D("29.5"), "data": D("6.5")}),
])
def test_share_unallocated(con, mode, expected):
    df = allocation.allocate(con, ["2024-05"])
    totals = df.group_by("team").agg(pl.col("effective_cost").sum().alias("cost"))
    shared = allocation.share_unallocated(totals, mode)
    got = {r["team"]: r["total"] for r in shared.to_dicts()}
    assert set(got) == {"ml", "data"}
    for t, v in expected.items():
        assert abs(got[t] - v) < D("1e-15")
    assert sum(got.values()) == D("36")
    none = allocation.share_unallocated(totals, "none")
    assert {r["team"]: r["total"] for r in none.to_dicts()}[UNALLOCATED] == D("3")


money = st.decimals(min_value=D("-50"), max_value=D("1000"), places=6, allow_nan=False, allow_infinity=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(money, st.integers(0, 23), st.integers(1, 48),
                          st.sampled_from([None, "run", "nb", "team"]), st.integers(0, 5)), min_size=1, max_size=25),
       st.lists(st.tuples(st.integers(0, 47), st.integers(0, 300), st.integers(0, 5)), max_size=12))
def test_property_allocation_preserves_totals(tmp_path_factory, lines, runs):
    c = mem_db()
    add_runs(c, [{"run_id": f"r{i}", "notebook_id": f"nb{k % 3}", "team": f"t{k % 2}",
                  "started_at": f"2024-05-{3 + h // 24:02d} {h % 24:02d}:00:00",
                  "ended_at": f"2024-05-{3 + (h * 60 + m) // 1440:02d} {((h * 60 + m) // 60) % 24:02d}:{(h * 60 + m) % 60:02d}:00"}
                 for i, (h, m, k) in enumerate(runs)])
    rows = []
    for cost, h, dur, kind, k in lines:
        end_h = h + dur
        tags = {"run": {"run_id": f"r{k}"}, "nb": {"notebook_id": f"nb{k % 3}"}, "team": {"team": f"t{k % 2}"},
                None: None}[kind]
        rows.append(focus_line(str(cost), f"2024-05-03 {h:02d}:00:00",
                               f"2024-05-{3 + end_h // 24:02d} {end_h % 24:02d}:00:00", tags))
    path = write_focus_csv(tmp_path_factory.mktemp("p") / "l.csv", rows)
    ingest.import_files(c, [path], "focus")
    df = allocation.allocate(c)
    total = c.execute('SELECT sum("EffectiveCost") FROM cost_line_items').fetchall()[0][0]
    assert sum(df["effective_cost"].to_list()) == total == sum(r[0] for r in lines)
