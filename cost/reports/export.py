"""One entry point for every report format (used by the CLI and the HTTP API)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import duckdb

from cost.config import CostSettings
from cost.errors import CostInputError
from cost.reports import data, html, writers


def write_report(con: duckdb.DuckDBPyConnection, month: str, by: str, fmt: str, out: Path, *,
                 settings: CostSettings | None = None, team: str | Sequence[str] | None = None,
                 as_of: datetime | None = None, notes: list[str] | None = None) -> list[Path]:
    """The report of `month` as `fmt` at `out` (CSV and Parquet: the main table; with the report's notes appended
    to `notes`, when given, so that a caller writing a table can still tell its reader what the figures miss)."""
    if fmt not in writers.FORMATS:
        raise CostInputError(f"--format must be one of {', '.join(writers.FORMATS)}, got {fmt!r}")
    data.check_month(month)
    if fmt == "focus":
        return [writers.write_focus(con, month, out, teams=data.team_list(team))]
    report = data.build(con, month, by, settings=settings, team=team, as_of=as_of)
    if notes is not None:
        notes.extend(report.notes)
    if fmt in ("csv", "parquet"):
        return writers.write_tabular(report, out, fmt)
    if fmt == "xlsx":
        return [writers.write_xlsx(report, out)]
    return [html.write_html(report, out)]
