"""Report writers: CSV, Parquet, XLSX and the FOCUS 1.2 export. (HTML is in html.py.)

CSV and Parquet write the main table (totals by the chosen dimension) to PATH and each other section beside it as
``<stem>.<section>.<ext>`` (summary, by_team, drivers, cost_per_run, budgets, invoices, daily, allocation), with
exact decimals. XLSX puts everything in one workbook: a Summary sheet first, then one typed sheet per section.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from cost import schema
from cost.reports.data import CostReport

FORMATS = ("csv", "parquet", "xlsx", "html", "focus")


def summary_frame(report: CostReport) -> pl.DataFrame:
    rows = [{"item": k, "value": "" if v is None else (format(v, "f") if isinstance(v, Decimal) else str(v))}
            for k, v in report.summary.items()]
    return pl.DataFrame(rows, schema={"item": pl.Utf8, "value": pl.Utf8})


def sibling(path: Path, section: str) -> Path:
    return path.with_name(f"{path.stem}.{section}{path.suffix}")


def write_tabular(report: CostReport, path: Path, fmt: str) -> list[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sections = report.sections()
    main_name = f"by_{report.by}"
    written = []
    for name, df in [(main_name, sections[main_name]), ("summary", summary_frame(report))] + [
            (n, d) for n, d in sections.items() if n != main_name]:
        target = path if name == main_name else sibling(path, name)
        if fmt == "csv":
            df.write_csv(target)
        else:
            df.write_parquet(target)
        written.append(target)
    return written


# --------------------------------------------------------------------------------------------------- XLSX --------
MONEY_COLS = {"cost", "previous_cost", "change", "shared", "direct", "proportional", "mtd", "run_rate", "forecast",
              "budget", "billed_cost", "effective_cost"}
RATIO_COLS = {"change_ratio", "share", "forecast_vs_budget"}


def write_xlsx(report: CostReport, path: Path) -> Path:
    import xlsxwriter
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = xlsxwriter.Workbook(str(path))
    money = wb.add_format({"num_format": "#,##0.00####"})
    pct = wb.add_format({"num_format": "0.0%"})
    day = wb.add_format({"num_format": "yyyy-mm-dd"})
    bold = wb.add_format({"bold": True})
    head = wb.add_format({"bold": True, "bg_color": "#DDE5F0", "border": 1})
    title = wb.add_format({"bold": True, "font_size": 14})

    ws = wb.add_worksheet("Summary")
    ws.write(0, 0, f"Cost report {report.month}" + (f" (team {report.team_scope})" if report.team_scope else ""),
             title)
    s = report.summary
    items = [
        ("Billing month", s["month"], None), ("Previous month", s["previous_month"], None),
        ("Currency", s["currency"], None),
        ("Total cost (EffectiveCost)", s["total_cost"], money), ("Previous month cost", s["previous_total_cost"], money),
        ("Change", s["change"], money), ("Change %", s["change_ratio"], pct),
        ("Unallocated cost", s["unallocated_cost"], money), ("Unallocated share", s["unallocated_share"], pct),
        ("Runs with cost", s["runs"], None), ("Cost per run", s["cost_per_run"], money),
        ("Billed total (invoices)", s["billed_total"], money), ("Budget total", s["budget_total"], money),
        ("Forecast total", s["forecast_total"], money), ("As of", s["as_of"], None),
    ]
    for i, (label, value, fmt) in enumerate(items, start=2):
        ws.write(i, 0, label, bold)
        if value is None:
            ws.write_blank(i, 1, None)
        elif isinstance(value, Decimal):
            ws.write_number(i, 1, float(value), fmt)
        elif isinstance(value, (int, float)):
            ws.write_number(i, 1, value, fmt)
        else:
            ws.write_string(i, 1, str(value))
    for j, note in enumerate(report.notes, start=len(items) + 3):
        ws.write(j, 0, note)
    ws.set_column(0, 0, 30)
    ws.set_column(1, 1, 22)

    names = {f"by_{report.by}": f"By {report.by}", "by_team": "By team", "drivers": "Drivers",
             "cost_per_run": "Cost per run", "budgets": "Budgets", "invoices": "Invoices", "daily": "Daily",
             "allocation": "Allocation"}
    seen = set()
    for key, df in report.sections().items():
        name = names[key]
        if name in seen:
            continue
        seen.add(name)
        sh = wb.add_worksheet(name)
        for c, col in enumerate(df.columns):
            sh.write(0, c, col, head)
            sh.set_column(c, c, max(12, min(40, len(col) + 4)))
        for r, row in enumerate(df.iter_rows(), start=1):
            for c, (col, v) in enumerate(zip(df.columns, row)):
                if v is None:
                    sh.write_blank(r, c, None)
                elif isinstance(v, Decimal):
                    sh.write_number(r, c, float(v), money)
                elif isinstance(v, (date, datetime)):
                    sh.write_datetime(r, c, datetime(v.year, v.month, v.day) if not isinstance(v, datetime)
                                      else v.replace(tzinfo=None), day)
                elif isinstance(v, bool):
                    sh.write_boolean(r, c, v)
                elif isinstance(v, (int, float)):
                    sh.write_number(r, c, v, pct if col in RATIO_COLS else None)
                else:
                    sh.write_string(r, c, str(v))
        if df.height:
            sh.autofilter(0, 0, df.height, max(0, df.width - 1))
        sh.freeze_panes(1, 0)
    wb.close()
    return path


# --------------------------------------------------------------------------------------------------- FOCUS -------
def focus_arrow(con: duckdb.DuckDBPyConnection, month: str, team: str | None = None) -> pa.Table:
    """FOCUS 1.2 export of the month's normalised lines: the 57 columns in spec order with FOCUS types (strings
    explicit, decimals exact, timestamps UTC), then our ``x_`` columns (1.3 additions are left out of a 1.2 file)."""
    cols = [c for c in schema.COLUMNS if c.focus in ("1.2", "x")]
    select = []
    for c in cols:
        if c.kind == "json":
            select.append(f'CAST("{c.name}" AS VARCHAR) AS "{c.name}"')
        elif c.kind == "date":
            select.append(f'CAST("{c.name}" AS VARCHAR) AS "{c.name}"')
        else:
            select.append(f'"{c.name}"')
    where = "x_billing_month = $month" + (" AND x_team = $team" if team else "")
    params = {"month": month} | ({"team": team} if team else {})
    rel = con.sql(f"SELECT {', '.join(select)} FROM {schema.TABLE} WHERE {where} "
                  f"ORDER BY \"BillingAccountId\", \"ChargePeriodStart\", \"ServiceName\"", params=params)
    table = rel.to_arrow_table()
    fields = []
    for c, f in zip(cols, table.schema):
        if c.kind in ("str", "json", "date"):
            fields.append(pa.field(c.name, pa.string()))
        elif c.kind in ("money", "decimal"):
            fields.append(pa.field(c.name, pa.decimal128(38, 18)))
        elif c.kind == "ts":
            fields.append(pa.field(c.name, pa.timestamp("us", tz="UTC")))
        else:
            fields.append(f)
    return table.cast(pa.schema(fields))


def write_focus(con: duckdb.DuckDBPyConnection, month: str, path: Path, team: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = focus_arrow(con, month, team)
    if path.suffix.lower() == ".csv":
        pl.from_arrow(table).with_columns(
            [pl.col(n).dt.strftime("%Y-%m-%dT%H:%M:%SZ") for n in schema.TS_COLUMNS if n in table.column_names]
        ).write_csv(path)
    else:
        pq.write_table(table, path)
    return path
