"""Finance reports from demo billing: every figure against an independent SQL sum on the same lines; XLSX types;
the HTML report rendered by headless Chromium offline (screenshot saved under test-artifacts/)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.cost.png import count_color  # noqa: E402
from fixtures.cost.util import REPO, mem_db  # noqa: E402

from cost import budget, demo, schema  # noqa: E402
from cost.config import load_settings  # noqa: E402
from cost.reports import data, export  # noqa: E402

AS_OF = datetime(2024, 6, 20, 12, 0, tzinfo=timezone.utc)
SETTINGS = load_settings(budgets={"ml": Decimal("100"), "data": Decimal("30"), "finance": Decimal("5")})
ARTIFACTS = REPO / "test-artifacts"
CENT = Decimal("0.01")


def insert_runs(con, runs: pl.DataFrame) -> None:
    con.register("__runs", runs.to_arrow())
    con.execute("INSERT INTO run_attempts (run_id, attempt, notebook_id, team, owner, trigger, environment, state, "
                "queued_at, started_at, ended_at, duration_seconds, first_seen_at, last_event_at) "
                "SELECT run_id, attempt, notebook_id, team, 'demo', 'scheduled', 'prod', 'succeeded', started_at, "
                "started_at, ended_at, duration_seconds, started_at, ended_at FROM __runs")
    con.unregister("__runs")


@pytest.fixture(scope="module")
def con():
    c = mem_db()
    runs = demo.demo_runs(300, now=AS_OF)
    insert_runs(c, runs)
    demo.write_demo_billing(c, demo.demo_billing_lines(runs, 7), SETTINGS)
    return c


def q(con, sql, *params):
    return con.execute(sql, list(params)).fetchall()


def line_total(con, month: str, before: datetime | None = None) -> Decimal:
    """Independent sum of the month's lines (charged before `before` when given)."""
    return q(con, 'SELECT sum("EffectiveCost") FROM cost_line_items WHERE x_billing_month = ? '
                  'AND "ChargePeriodStart" < ?', month, before or datetime(9999, 1, 1, tzinfo=timezone.utc))[0][0]


SAME_POINT_IN_MAY = datetime(2024, 5, 20, 12, 0, tzinfo=timezone.utc)  # AS_OF one calendar month back


def test_report_figures_match_independent_sums(con):
    r = data.build(con, "2024-06", "service", settings=SETTINGS, as_of=AS_OF)
    assert r.summary["total_cost"] == line_total(con, "2024-06", AS_OF) == line_total(con, "2024-06")
    # the running month is compared like for like: May up to 20 May 12:00, not the whole of May
    assert r.summary["previous_total_cost"] == line_total(con, "2024-05", SAME_POINT_IN_MAY)
    assert r.summary["previous_total_cost"] < line_total(con, "2024-05")
    assert (r.summary["days_covered"], r.summary["days_in_month"], r.summary["complete"]) == (20, 30, False)
    assert "20 of 30 days" in r.summary["period"] and any("not over" in n for n in r.notes)
    by_service = dict(q(con, 'SELECT "ServiceName", sum("EffectiveCost") FROM cost_line_items '
                             "WHERE x_billing_month = '2024-06' GROUP BY 1"))
    assert {x["key"]: x["cost"] for x in r.by_key.to_dicts()} == by_service
    prev = dict(q(con, 'SELECT "ServiceName", sum("EffectiveCost") FROM cost_line_items '
                       "WHERE x_billing_month = '2024-05' AND \"ChargePeriodStart\" < ? GROUP BY 1", SAME_POINT_IN_MAY))
    assert {x["key"]: x["previous_cost"] for x in r.by_key.to_dicts()} == prev
    unalloc = q(con, 'SELECT sum("EffectiveCost") FROM cost_line_items WHERE x_billing_month = \'2024-06\' '
                     "AND x_team IS NULL AND x_notebook_id IS NULL AND x_run_id IS NULL")[0][0]
    assert r.summary["unallocated_cost"] == unalloc
    assert r.summary["unallocated_share"] == pytest.approx(float(unalloc / r.summary["total_cost"]))
    # by team sums to the total; invoices reconcile BilledCost
    assert sum(x["cost"] for x in r.by_team.to_dicts()) == r.summary["total_cost"]
    billed = q(con, 'SELECT sum("BilledCost") FROM cost_line_items WHERE x_billing_month = \'2024-06\'')[0][0]
    assert r.summary["billed_total"] == billed == sum(x["billed_cost"] for x in r.invoices.to_dicts())
    # cost per run: direct run lines + proportional shares, over runs with cost
    assert r.summary["runs"] == r.cost_per_run.height > 0
    assert r.summary["cost_per_run"] == (r.summary["run_cost"] / r.summary["runs"]).quantize(Decimal("1e-18"))
    direct = q(con, 'SELECT sum("EffectiveCost") FROM cost_line_items WHERE x_billing_month = \'2024-06\' '
                    "AND x_run_id IS NOT NULL")[0][0]
    assert sum(x["direct"] for x in r.cost_per_run.to_dicts()) == direct
    # drivers: the largest absolute change first, and the change is cost - previous
    ch = [abs(x["change"]) for x in r.drivers.to_dicts()]
    assert ch == sorted(ch, reverse=True)
    assert all(x["change"] == x["cost"] - x["previous_cost"] for x in r.drivers.to_dicts())


def test_forecast_hand_worked():
    daily = pl.DataFrame({"team": ["a"] * 4 + ["b"],
                          "charge_date": [date(2024, 6, d) for d in (1, 17, 18, 19)] + [date(2024, 6, 19)],
                          "cost": [Decimal(x) for x in ("100", "7", "14", "21", "3")]},
                         schema={"team": pl.Utf8, "charge_date": pl.Date, "cost": pl.Decimal(38, 18)})
    fc = {r["team"]: r for r in budget.forecast(daily, "2024-06", AS_OF, lookback=7).to_dicts()}
    # as of 20 Jun 12:00: lookback 13..19 Jun (7 days) -> a: 42/7 = 6 a day; 10.5 days left in June
    assert fc["a"]["mtd"] == Decimal("142") and fc["a"]["run_rate"] == Decimal("6")
    assert fc["a"]["forecast"] == Decimal("142") + Decimal("6") * Decimal("10.5")
    assert abs(fc["b"]["forecast"] - Decimal("7.5")) < Decimal("1e-15")  # 3 + 3/7 x 10.5
    done = budget.forecast(daily, "2024-06", datetime(2024, 7, 2, tzinfo=timezone.utc))
    assert {r["team"]: r["forecast"] for r in done.to_dicts()} == {"a": Decimal("142"), "b": Decimal("3")}
    fc_df = budget.forecast(daily, "2024-06", AS_OF)
    with_b = budget.with_budgets(fc_df, {"a": Decimal("150"), "b": Decimal("2"), "c": Decimal("1")})
    st = {r["team"]: r["status"] for r in with_b.to_dicts()}
    assert st == {"a": "at-risk", "b": "over", "c": "ok"} and fc_df.height == 2


def test_a_closed_month_compares_whole_months(con):
    r = data.build(con, "2024-05", "team", settings=SETTINGS, as_of=AS_OF)
    assert r.summary["total_cost"] == line_total(con, "2024-05")
    assert r.summary["previous_total_cost"] == (line_total(con, "2024-04") or 0)
    assert r.summary["complete"] and "whole month" in r.summary["period"]
    assert data.last_closed_month(AS_OF) == "2024-05"


def test_csv_parquet_outputs(con, tmp_path):
    files = export.write_report(con, "2024-06", "team", "csv", tmp_path / "cost.csv", settings=SETTINGS, as_of=AS_OF)
    names = sorted(p.name for p in files)
    assert "cost.csv" in names and "cost.invoices.csv" in names and "cost.summary.csv" in names
    assert "cost.by_team.csv" not in names  # with --by team the main table is the by-team table: not twice
    main = pl.read_csv(tmp_path / "cost.csv", infer_schema=False)
    assert main.columns == ["Team", "This month", "Previous month", "Change", "Change %", "Share %"]
    # money in cents (half to even), share as a percentage
    exact = {x["key"]: x for x in data.build(con, "2024-06", "team", settings=SETTINGS, as_of=AS_OF)
             .by_team.to_dicts()}
    for row in main.iter_rows(named=True):
        key = schema.UNALLOCATED if row["Team"] == "Unallocated" else row["Team"]
        assert row["This month"] == str(exact[key]["cost"].quantize(CENT, rounding="ROUND_HALF_EVEN"))
        assert float(row["Share %"]) == pytest.approx(round(exact[key]["share"] * 100, 2))
        assert len(row["This month"].split(".")[1]) == 2
    assert abs(sum(Decimal(x) for x in main["This month"]) - line_total(con, "2024-06")) <= CENT * main.height
    assert "Unallocated" in main["Team"].to_list() and schema.UNALLOCATED not in main["Team"].to_list()
    budgets = pl.read_csv(tmp_path / "cost.budgets.csv", infer_schema=False)
    unbudgeted = budgets.filter(pl.col("Team") == "platform").row(0, named=True)
    assert unbudgeted["Budget"] == unbudgeted["Status"] == "no budget set"
    assert budgets.filter(pl.col("Team") == "ml")["Budget"][0] == "100.00"
    files = export.write_report(con, "2024-06", "notebook", "parquet", tmp_path / "cost.parquet", settings=SETTINGS,
                                as_of=AS_OF)
    df = pl.read_parquet(files[0])
    assert df.schema["cost"] == pl.Decimal(38, 18)
    assert sum(df["cost"].to_list()) == line_total(con, "2024-06")


def test_xlsx_reopens_with_types_and_totals(con, tmp_path):
    import openpyxl
    path = export.write_report(con, "2024-06", "team", "xlsx", tmp_path / "cost.xlsx", settings=SETTINGS,
                               as_of=AS_OF)[0]
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames[0] == "Summary" and {"By team", "Drivers", "Invoices", "Daily", "Budgets"} <= set(
        wb.sheetnames)
    summary = {wb["Summary"].cell(r, 1).value: wb["Summary"].cell(r, 2) for r in range(3, 20)}
    total = summary["Total cost (EffectiveCost)"]
    assert isinstance(total.value, float) and total.number_format.startswith("[$USD] #,##0.00")
    assert Decimal(str(total.value)).quantize(CENT) == line_total(con, "2024-06").quantize(CENT)
    assert isinstance(summary["Unallocated share"].value, float) and "%" in summary["Unallocated share"].number_format
    ws = wb["By team"]
    header = [c.value for c in ws[1]]
    assert header[:6] == ["Team", "This month", "Previous month", "Change", "Change %", "Share"]
    ci = header.index("This month") + 1
    costs = [ws.cell(r, ci).value for r in range(2, ws.max_row + 1)]
    assert all(isinstance(v, float) for v in costs)
    assert all("[$USD]" in ws.cell(r, ci).number_format for r in range(2, ws.max_row + 1))  # currency format
    assert "%" in ws.cell(2, header.index("Share") + 1).number_format
    assert "Unallocated" in [ws.cell(r, 1).value for r in range(2, ws.max_row + 1)]
    b = wb["Budgets"]
    bh = [c.value for c in b[1]]
    rows = {b.cell(r, 1).value: [c.value for c in b[r]] for r in range(2, b.max_row + 1)}
    assert rows["platform"][bh.index("Budget")] == "no budget set"
    assert rows["ml"][bh.index("Budget")] == 100.0
    assert Decimal(str(sum(costs))).quantize(CENT) == line_total(con, "2024-06").quantize(CENT)
    daily = wb["Daily"]
    assert isinstance(daily.cell(2, 1).value, datetime)


def test_focus_export_shape(con, tmp_path):
    import pyarrow.parquet as pq
    path = export.write_report(con, "2024-06", "team", "focus", tmp_path / "focus.parquet")[0]
    t = pq.read_table(path)
    assert t.column_names[:57] == list(schema.FOCUS_12_NAMES)
    assert all(n.startswith("x_") for n in t.column_names[57:])
    assert str(t.schema.field("BillingAccountId").type) == "string"
    assert str(t.schema.field("ChargePeriodStart").type) == "timestamp[us, tz=UTC]"
    assert sum(t.column("BilledCost").to_pylist()) == q(
        con, 'SELECT sum("BilledCost") FROM cost_line_items WHERE x_billing_month = \'2024-06\'')[0][0]


def test_team_scoped_report(con):
    r = data.build(con, "2024-06", "team", settings=SETTINGS, team="ml", as_of=AS_OF)
    assert set(r.by_key["key"].to_list()) == {"ml"} and r.invoices.height == 0
    assert set(r.budgets["team"].to_list()) == {"ml"}
    ml = data.build(con, "2024-06", "team", settings=SETTINGS, as_of=AS_OF).by_team.filter(pl.col("key") == "ml")
    assert r.summary["total_cost"] == ml["cost"][0]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian package chromium is required (apt-get install -y chromium)"  # fail, never skip
    return exe


def test_html_renders_offline_in_chromium(con, tmp_path):
    exe = chromium()
    path = export.write_report(con, "2024-06", "team", "html", tmp_path / "cost.html", settings=SETTINGS,
                               as_of=AS_OF)[0]
    text = path.read_text()
    # self-contained: no script, no external resource of any kind
    assert not re.search(r"<script|<link|<img|<iframe|url\(|@import", text, re.I)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert text.count("<svg") == 4
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "cost-report.png"
    pdf = ARTIFACTS / "cost-report.pdf"
    for p in (shot, pdf):
        p.unlink(missing_ok=True)
    common = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
              "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", f"--user-data-dir={tmp_path / 'ud'}"]
    subprocess.run(common + ["--window-size=1200,1400", f"--screenshot={shot}", path.as_uri()],
                   check=True, timeout=90, capture_output=True)
    subprocess.run(common + ["--no-pdf-header-footer", f"--print-to-pdf={pdf}", path.as_uri()],
                   check=True, timeout=90, capture_output=True)
    assert shot.exists() and pdf.exists() and pdf.read_bytes()[:5] == b"%PDF-"
    # the charts are drawn: many pixels of the bar colour (#2b6cb0) and of the previous-month grey (#a0aec0)
    assert count_color(shot, (0x2B, 0x6C, 0xB0)) > 2000
    assert count_color(shot, (0xA0, 0xAE, 0xC0)) > 500


def test_html_prints_each_table_once_with_human_labels(con, tmp_path):
    text = export.write_report(con, "2024-06", "team", "html", tmp_path / "c.html", settings=SETTINGS,
                               as_of=AS_OF)[0].read_text()
    # totals by team (main table) and drivers have a "Previous month" column; the by-team table is not repeated
    assert text.count(">Previous month</th>") == 2
    assert schema.UNALLOCATED not in text and "Unallocated" in text
    assert "no budget set" in text and "20 of 30 days" in text
    by_service = export.write_report(con, "2024-06", "service", "html", tmp_path / "s.html", settings=SETTINGS,
                                     as_of=AS_OF)[0].read_text()
    assert by_service.count(">Previous month</th>") == 3  # by service, by team, drivers


def test_unknown_team_and_empty_month_are_not_silent_zeros(con):
    from cost.errors import CostNotFound

    with pytest.raises(CostNotFound, match="unknown team 'mll'; known teams: .*ml"):
        data.build(con, "2024-06", "team", settings=SETTINGS, team="mll", as_of=AS_OF)
    r = data.build(con, "2023-01", "team", settings=SETTINGS, as_of=AS_OF)
    assert r.summary["total_cost"] == 0
    assert any(n.startswith("No billing data for 2023-01 (loaded months: 2024-") for n in r.notes)
    with pytest.raises(data.CostInputError, match="YYYY-MM, e.g. 2026-11; got '2024-6'"):
        data.build(con, "2024-6", "team", settings=SETTINGS, as_of=AS_OF)
