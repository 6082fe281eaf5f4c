"""Report writers: CSV, Parquet, XLSX and the FOCUS 1.2 export. (HTML is in html.py.)

CSV and Parquet write the main table (totals by the chosen dimension) to PATH and each other section beside it as
``<stem>.<section>.<ext>`` (summary, by_team, drivers, cost_per_run, budgets, invoices, daily, allocation).

- **CSV is for people** (opened in a spreadsheet): the labels of cost/reports/labels.py, money rounded to cents
  (half to even, as a ledger rounds), ratios as percentages with two decimals (`Share %` 12.34 = 12.34 %). Sums of
  rounded cells may differ from the rounded total by a few cents.
- **Parquet is for programs**: machine column names and exact decimals (DECIMAL(38,18)), ratios as fractions.
- **XLSX** puts everything in one workbook (Summary sheet first, one typed sheet per section), money as numbers
  in the billing currency's format, ratios as percentages.
"""
from __future__ import annotations

import csv
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from cost import schema
from cost.reports import labels as L
from cost.reports.data import CostReport

FORMATS = ("csv", "parquet", "xlsx", "html", "focus")
CENT = Decimal("0.01")


def summary_frame(report: CostReport) -> pl.DataFrame:
    rows = [{"item": k, "value": "" if v is None else (format(v, "f") if isinstance(v, Decimal) else str(v))}
            for k, v in report.summary.items()]
    return pl.DataFrame(rows, schema={"item": pl.Utf8, "value": pl.Utf8})


def sibling(path: Path, section: str) -> Path:
    return path.with_name(f"{path.stem}.{section}{path.suffix}")


def csv_cell(label: str, value):
    """A value as the CSV shows it: money to cents, ratios as percentages, blanks empty."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return str(value.quantize(CENT, rounding=ROUND_HALF_EVEN))
    if isinstance(value, float) and label in L.PERCENT:
        return f"{value * 100:.2f}"
    return value


def csv_header(label: str) -> str:
    return label if label.endswith("%") else f"{label} %"


def _write_csv(path: Path, columns: list[str], rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([csv_header(c) if c in L.PERCENT else c for c in columns])
        for row in rows:
            w.writerow([csv_cell(c, v) for c, v in zip(columns, row)])


def write_tabular(report: CostReport, path: Path, fmt: str) -> list[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    main_name = f"by_{report.by}"
    written = []
    if fmt == "csv":
        tables = L.tables(report)
        main = next(t for t in tables if t.name == main_name)
        _write_csv(path, main.columns, main.rows)
        written.append(path)
        summary = sibling(path, "summary")
        _write_csv(summary, ["Item", "Value"],
                   [[csv_header(label) if kind == "percent" else label,
                     csv_cell("Share", v) if kind == "percent" else csv_cell(label, v)]
                    for label, v, kind in L.summary_items(report)])
        written.append(summary)
        for t in tables:
            if t.name != main_name:
                _write_csv(sibling(path, t.name), t.columns, t.rows)
                written.append(sibling(path, t.name))
        return written
    sections = report.sections()
    for name, df in [(main_name, sections[main_name]), ("summary", summary_frame(report))] + [
            (n, d) for n, d in sections.items() if n != main_name]:
        target = path if name == main_name else sibling(path, name)
        df.write_parquet(target)
        written.append(target)
    return written


# --------------------------------------------------------------------------------------------------- XLSX --------


def write_xlsx(report: CostReport, path: Path) -> Path:
    import xlsxwriter
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = xlsxwriter.Workbook(str(path))
    # the billing currency's code in the number format: "USD 1,234.56", negatives in red
    money = wb.add_format({"num_format": f'[${report.currency}] #,##0.00;[Red]-[${report.currency}] #,##0.00'})
    pct = wb.add_format({"num_format": "0.0%"})
    day = wb.add_format({"num_format": "yyyy-mm-dd"})
    bold = wb.add_format({"bold": True})
    head = wb.add_format({"bold": True, "bg_color": "#DDE5F0", "border": 1})
    title = wb.add_format({"bold": True, "font_size": 14})
    muted = wb.add_format({"font_color": "#718096"})

    ws = wb.add_worksheet("Summary")
    ws.write(0, 0, f"Cost report {report.month}" + (f" (team {report.team_scope})" if report.team_scope else ""),
             title)
    items = L.summary_items(report)
    for i, (label, value, kind) in enumerate(items, start=2):
        ws.write(i, 0, label, bold)
        fmt = money if kind == "money" else pct if kind == "percent" else None
        if value is None:
            ws.write_blank(i, 1, None)
        elif isinstance(value, Decimal):
            ws.write_number(i, 1, float(value), fmt)
        elif isinstance(value, (int, float)):
            ws.write_number(i, 1, value, fmt)
        else:
            ws.write_string(i, 1, str(value), muted if value == L.NO_BUDGET else None)
    for j, note in enumerate(report.notes, start=len(items) + 3):
        ws.write(j, 0, note)
    ws.set_column(0, 0, 32)
    ws.set_column(1, 1, 48)

    for t in L.tables(report):
        sh = wb.add_worksheet(t.title)
        for c, col in enumerate(t.columns):
            sh.write(0, c, col, head)
            sh.set_column(c, c, max(14, min(40, len(col) + 4)))
        for r, row in enumerate(t.rows, start=1):
            for c, (col, v) in enumerate(zip(t.columns, row)):
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
                    sh.write_number(r, c, v, pct if col in L.PERCENT else None)
                else:
                    sh.write_string(r, c, str(v), muted if v == L.NO_BUDGET else None)
        if t.rows:
            sh.autofilter(0, 0, len(t.rows), max(0, len(t.columns) - 1))
        sh.freeze_panes(1, 0)
    wb.close()
    return path


# --------------------------------------------------------------------------------------------------- FOCUS -------
def focus_arrow(con: duckdb.DuckDBPyConnection, month: str, teams: list[str] | None = None) -> pa.Table:
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
    where = "x_billing_month = $month" + (" AND list_contains($teams, x_team)" if teams else "")
    params = {"month": month} | ({"teams": list(teams)} if teams else {})
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


def write_focus(con: duckdb.DuckDBPyConnection, month: str, path: Path, teams: list[str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = focus_arrow(con, month, teams)
    if path.suffix.lower() == ".csv":
        pl.from_arrow(table).with_columns(
            [pl.col(n).dt.strftime("%Y-%m-%dT%H:%M:%SZ") for n in schema.TS_COLUMNS if n in table.column_names]
        ).write_csv(path)
    else:
        pq.write_table(table, path)
    return path
