"""What people read in a report: human column labels, one name for the unallocated share, "no budget set" instead
of blanks. The HTML, XLSX and CSV writers all print these tables, so the three say the same thing the same way;
Parquet and the JSON API keep the machine names (`cost`, `previous_cost`, `__unallocated__`) for programs.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl

from cost.reports.data import CostReport
from cost.schema import UNALLOCATED

UNALLOCATED_NAME = "Unallocated"  # the one name of the unallocated share in every human format
NO_BUDGET = "no budget set"

TOTALS = {"key": None, "cost": "This month", "previous_cost": "Previous month", "change": "Change",
          "change_ratio": "Change %", "share": "Share", "shared": "Shared unallocated"}
COLUMNS = {
    "budgets": {"team": "Team", "mtd": "Month to date", "run_rate": "Daily run rate", "forecast": "Forecast",
                "budget": "Budget", "forecast_vs_budget": "Forecast / budget", "status": "Status"},
    "cost_per_run": {"run_id": "Run", "team": "Team", "notebook_id": "Notebook", "direct": "Direct",
                     "proportional": "Proportional", "cost": "Cost"},
    "invoices": {"provider": "Provider", "billing_account_id": "Billing account", "invoice_id": "Invoice",
                 "currency": "Currency", "lines": "Lines", "billed_cost": "Billed cost",
                 "effective_cost": "Effective cost"},
    "daily": {"charge_date": "Date", "cost": "Cost"},
    "allocation": {"allocation": "Allocation", "cost": "Cost"},
}
KEY_LABEL = {"team": "Team", "notebook": "Notebook", "service": "Service", "driver": "Team / service"}
MONEY = {"This month", "Previous month", "Change", "Shared unallocated", "Month to date", "Daily run rate",
         "Forecast", "Budget", "Direct", "Proportional", "Cost", "Billed cost", "Effective cost"}
PERCENT = {"Change %", "Share", "Forecast / budget"}
BUDGET_COLUMNS = ("Budget", "Forecast / budget", "Status")
TITLES = {"by_team": "By team", "by_notebook": "By notebook", "by_service": "By service", "drivers": "Drivers",
          "cost_per_run": "Cost per run", "budgets": "Budgets", "invoices": "Invoices", "daily": "Daily",
          "allocation": "Allocation"}


@dataclass(frozen=True)
class Table:
    """One section as people read it: `name` is the machine name (file suffix), `title` the heading."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]


def name_of(value: Any, by: str = "team") -> Any:
    """One name for the unallocated share, and a word for a missing key."""
    if value == UNALLOCATED or value == "unallocated":
        return UNALLOCATED_NAME
    if value == "(none)":
        return f"(no {by})"
    if isinstance(value, str) and value.startswith(UNALLOCATED + " / "):
        return UNALLOCATED_NAME + value[len(UNALLOCATED):]
    return value


def _table(name: str, df: pl.DataFrame, mapping: dict[str, str | None], key_label: str, by: str) -> Table:
    cols = [c for c in df.columns if c in mapping]
    labels = [mapping[c] or key_label for c in cols]
    rows = []
    for r in df.select(cols).iter_rows():
        row = []
        for label, v in zip(labels, r):
            if label in (key_label, "Team", "Allocation"):
                v = name_of(v, by)
                if label == "Allocation" and isinstance(v, str):
                    v = v.capitalize()
            row.append(v)
        rows.append(row)
    if name == "budgets":
        for row in rows:
            if row[labels.index("Budget")] is None:
                for label in BUDGET_COLUMNS:
                    row[labels.index(label)] = NO_BUDGET
    return Table(name, TITLES[name], labels, rows)


def tables(report: CostReport) -> list[Table]:
    """Every section once (with --by team, "by team" is the main table, not printed twice)."""
    out = []
    for name, df in report.sections().items():
        if any(t.name == name for t in out):
            continue
        if name.startswith("by_"):
            key = name[3:]
            out.append(_table(name, df, TOTALS, KEY_LABEL[key], key))
        elif name == "drivers":
            out.append(_table(name, df, TOTALS, KEY_LABEL["driver"], "service"))
        else:
            out.append(_table(name, df, COLUMNS[name], "", report.by))
    return out


def summary_items(report: CostReport) -> list[tuple[str, Any, str | None]]:
    """(label, value, kind) of the summary, kind 'money', 'percent' or None; the XLSX, CSV and HTML summaries."""
    s = report.summary
    return [
        ("Billing month", s["month"], None),
        ("Period", s["period"], None),
        ("Compared with", s["previous_period"], None),
        ("Currency", s["currency"], None),
        ("Total cost (EffectiveCost)", s["total_cost"], "money"),
        ("Previous month cost (same days)", s["previous_total_cost"], "money"),
        ("Change", s["change"], "money"), ("Change %", s["change_ratio"], "percent"),
        ("Unallocated cost", s["unallocated_cost"], "money"), ("Unallocated share", s["unallocated_share"], "percent"),
        ("Runs with cost", s["runs"], None), ("Cost per run", s["cost_per_run"], "money"),
        ("Run attempts not derived (not in cost per run)", s["underived_run_attempts"], None),
        ("Billed total (invoices)", s["billed_total"], "money"),
        ("Budget total", s["budget_total"] if s["budget_total"] is not None else NO_BUDGET, "money"),
        ("Forecast total", s["forecast_total"], "money"), ("As of", s["as_of"], None),
    ]


def is_money(label: str, value: Any) -> bool:
    return label in MONEY and isinstance(value, Decimal)
