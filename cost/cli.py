"""``observatory billing ...`` and ``observatory report cost ...`` (thin: parse, open the store, call, print).

The CLI opens the DuckDB file directly (``--db`` or ``OBSERVATORY_DB``); stop the collector first, DuckDB allows
one writer process.
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Callable, Optional

import typer

from collector.engines import select
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from collector.settings import option
from cost.errors import CostInputError

billing_app = typer.Typer(help="Billing ingest: FOCUS files, AWS CUR (S3), GCP export (BigQuery).",
                          no_args_is_help=True)
sync_app = typer.Typer(help="Sync billing from the cloud, idempotently (manifests / partition watermarks).",
                       no_args_is_help=True)
billing_app.add_typer(sync_app, name="sync")
report_app = typer.Typer(help="Reports for finance.", no_args_is_help=True)


@report_app.callback()
def _report_group() -> None:
    """Reports for finance (a group even with one command: ``observatory report cost``)."""
console = Console(stderr=True)
out = Console()

DB_OPT = option("db", "--db")


def _open(db: Optional[Path], *, must_exist: bool = True):
    """The store for a command; `must_exist=False` only for the commands that load billing into a new file."""
    from collector.storage.db import DatabaseUnavailable
    from cost import db as cost_db
    try:
        return cost_db.connect(_settings(db=db), must_exist=must_exist)
    except DatabaseUnavailable as err:
        console.print(f"[red]error:[/] {escape(str(err))}", soft_wrap=True)
        raise typer.Exit(2) from None


def _fail(err: Exception) -> None:
    console.print(f"[red]error:[/] {escape(str(err))}", soft_wrap=True)
    raise typer.Exit(1)


def _fmt(v: Decimal | None) -> str:
    return "–" if v is None else f"{Decimal(v):,.2f}"


def print_changes(changes, dry_run: bool, title: str) -> None:
    t = Table(title=title + (" (dry run: nothing written)" if dry_run else ""))
    for c in ("partition", "action", "lines before → after", "billed before → after", "Δ effective"):
        t.add_column(c, justify="right" if c != "partition" else "left", overflow="fold")
    for c in changes:
        t.add_row(c.partition, c.action, f"{c.rows_before} → {c.rows_after}",
                  f"{_fmt(c.billed_before)} → {_fmt(c.billed_after)}", _fmt(c.effective_after - c.effective_before))
    out.print(t)
    n = sum(c.changed for c in changes)
    out.print(f"{n} partition(s) {'would change' if dry_run else 'changed'}, "
              f"{len(changes) - n} unchanged.")


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
                    transient=True)


def _callback(progress: Progress, task) -> Callable[[str, int, int], None]:
    def cb(label: str, done: int, total: int) -> None:
        progress.update(task, description=label, completed=done, total=max(total, 1))
    return cb


@billing_app.command("import")
def import_cmd(
    files: list[Path] = typer.Argument(..., help="One delivery: FOCUS/CUR/GCP files (.csv, .csv.gz, .parquet)"),
    format: str = typer.Option(..., "--format", "-f", help="focus | aws-cur | gcp-export"),
    db: Optional[Path] = DB_OPT,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change, write nothing"),
) -> None:
    """Import billing files; each (account, billing period) they contain replaces what was there."""
    from cost import ingest
    con = _open(db, must_exist=False)
    try:
        with _progress() as p:
            task = p.add_task(f"normalising {len(files)} file(s)", total=1)
            res = ingest.import_files(con, files, format, dry_run=dry_run)
            p.update(task, completed=1)
    except CostInputError as err:
        _fail(err)
    out.print(f"{res.rows} line(s) read from {len(files)} file(s), delivery {res.ingest_id}")
    print_changes(res.changes, dry_run, f"billing import ({format})")


@sync_app.command("aws")
def sync_aws(
    bucket: str = typer.Option(..., "--bucket"),
    prefix: str = typer.Option("", "--prefix"),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL_S3",
                                               help="S3-compatible endpoint (tests, MinIO)"),
    region: Optional[str] = typer.Option(None, "--region"),
    period: Optional[list[str]] = typer.Option(None, "--period", help="Only these billing periods (YYYY-MM)"),
    db: Optional[Path] = DB_OPT,
    dry_run: bool = typer.Option(False, "--dry-run"),
) -> None:
    """Read AWS CUR (legacy or 2.0) deliveries from S3 by their manifests; replace re-delivered periods."""
    from cost import aws_sync
    con = _open(db, must_exist=False)
    try:
        with _progress() as p:
            task = p.add_task("listing manifests", total=1)
            res = aws_sync.sync(con, aws_sync.s3_client(endpoint_url, region), bucket, prefix, dry_run=dry_run,
                                progress=_callback(p, task), periods=set(period) if period else None)
    except CostInputError as err:
        _fail(err)
    for pr in res.periods:
        out.print(f"{pr.manifest.billing_period}: {pr.status} (manifest {pr.manifest.manifest_id}, "
                  f"{len(pr.manifest.data_keys)} file(s), {pr.rows} line(s))")
    print_changes(res.changes, dry_run, f"AWS CUR sync {res.target}")


@sync_app.command("gcp")
def sync_gcp(
    table: str = typer.Option(..., "--table", help="PROJECT.DATASET.TABLE of the billing export"),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", envvar="OBSERVATORY_BIGQUERY_ENDPOINT",
                                           help="BigQuery API endpoint (tests); anonymous credentials"),
    project: Optional[str] = typer.Option(None, "--project", help="Project that runs the queries (default: "
                                                                  "the table's)"),
    db: Optional[Path] = DB_OPT,
    dry_run: bool = typer.Option(False, "--dry-run"),
) -> None:
    """Read the GCP billing export from BigQuery; re-read partitions whose watermark moved."""
    from cost import gcp_sync
    con = _open(db, must_exist=False)
    try:
        proj = project or gcp_sync.parse_table(table)[0]
        with _progress() as p:
            task = p.add_task("reading partition watermarks", total=1)
            res = gcp_sync.sync(con, gcp_sync.bigquery_client(proj, endpoint), table, dry_run=dry_run,
                                progress=_callback(p, task))
    except CostInputError as err:
        _fail(err)
    out.print(f"{res.scanned} partition(s) since {res.since} checked, {len(res.partitions)} re-read")
    print_changes(res.changes, dry_run, f"GCP export sync {table}")


@billing_app.command("allocate")
def allocate_cmd(month: Optional[list[str]] = typer.Option(None, "--month", help="YYYY-MM (default: all)"),
                 db: Optional[Path] = DB_OPT) -> None:
    """Recompute the materialised allocation (cost_allocations) from lines and runs."""
    from cost import allocation
    con = _open(db)
    n = allocation.refresh(con, month or None, manage_transaction=True)
    out.print(f"{n} allocation row(s) for {', '.join(month) if month else 'all months'}")


@billing_app.command("status")
def status_cmd(db: Optional[Path] = DB_OPT) -> None:
    """Loaded partitions and the last sync of each source."""
    con = _open(db)
    t = Table(title="billing sources")
    for c in ("source", "target", "last sync", "status", "detail"):
        t.add_column(c)
    for row in con.execute("SELECT source, target, last_sync_at, last_status, detail FROM cost_sync_state "
                           "ORDER BY 1, 2").fetchall():
        t.add_row(*(str(x) for x in row))
    out.print(t)
    t = Table(title="partitions")
    for c in ("partition", "lines", "billed", "effective", "manifest", "updated"):
        t.add_column(c, overflow="fold")
    for p, n, b, e, m, u in con.execute("SELECT partition, row_count, billed_cost, effective_cost, manifest_id, "
                                        "updated_at FROM cost_partitions ORDER BY 1").fetchall():
        t.add_row(p, str(n), _fmt(b), _fmt(e), str(m or ""), str(u))
    out.print(t)


EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".xlsx": "xlsx", ".html": "html", ".htm": "html"}


def report_format(out_path: Path, format: str | None) -> str:
    """The format: --format, else the extension of --out; a pair that disagrees is an error (an .xlsx file holding
    HTML opens as garbage). `focus` writes Parquet, or CSV when --out ends in .csv."""
    from cost.reports.writers import FORMATS

    by_ext = EXTENSIONS.get(out_path.suffix.lower())
    if format is None:
        if by_ext is None:
            raise CostInputError(f"cannot tell the format from {out_path.name!r}: give --format "
                                 f"({' | '.join(FORMATS)}) or end --out in {', '.join(EXTENSIONS)}")
        return by_ext
    if format not in FORMATS:
        raise CostInputError(f"--format must be one of {', '.join(FORMATS)}; got {format!r}")
    ok = {format} | ({"parquet", "csv"} if format == "focus" else set())
    if by_ext is not None and by_ext not in ok:
        raise CostInputError(f"--format {format} does not match --out {out_path.name} (a {out_path.suffix} file is "
                             f"{by_ext}); drop --format or rename the file")
    return format


@report_app.command("cost")
def report_cost(
    out_path: Path = typer.Option(..., "--out", help="Output file; its extension (.html, .xlsx, .csv, .parquet) "
                                                     "sets the format"),
    month: Optional[str] = typer.Option(None, "--month", help="Billing month YYYY-MM (default: the last closed "
                                                              "month)"),
    by: str = typer.Option("team", "--by", help="team | notebook | service"),
    format: Optional[str] = typer.Option(None, "--format", help="csv | parquet | xlsx | html | focus (default: "
                                                                "from the --out extension)"),
    team: Optional[str] = typer.Option(None, "--team", help="Only this team"),
    db: Optional[Path] = DB_OPT,
    url: Optional[str] = option("url", "--url", help="Ask a running collector (GET /v1/cost/report) instead of "
                                                     "opening the database; CSV and Parquet then hold the main table"),
    token: Optional[str] = option("token", "--token"),
    engine: Optional[str] = select.ENGINE_OPT,
    lake: Optional[str] = select.LAKE_OPT,
    spark_master: Optional[str] = select.SPARK_MASTER_OPT,
    bq_project: Optional[str] = select.BQ_PROJECT_OPT,
    bq_dataset: Optional[str] = select.BQ_DATASET_OPT,
) -> None:
    """Monthly cost report: totals, month-over-month, budget and forecast, drivers, unallocated, per run,
    invoices. A closed month is compared with the whole month before; the running month with the same days of
    the month before."""
    from cost.reports import data, export
    try:
        fmt = report_format(out_path, format)
        month = data.check_month(month) if month is not None else data.last_closed_month()
        data.check_by(by)
    except CostInputError as err:
        _fail(err)
    settings = _settings(db=db, url=url, token=token)
    target = settings.collector_to_ask(db, url)
    if target:
        from collector.remote import ClientError, get
        params = {"month": month, "by": by, "format": fmt} | ({"team": team} if team else {})
        try:
            r = get(target, "/v1/cost/report", params, settings.token_value())
        except ClientError as err:
            _fail(err)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(r.content)
        out.print(str(out_path))
        return
    from collector.engines.dialect import UnsupportedConstruct
    try:
        eng = select.open_engine(select.settings_from(engine, lake, spark_master=spark_master,
                                                      bq_project=bq_project, bq_dataset=bq_dataset))
    except ValueError as err:
        _fail(err)
    con = _open(settings.db) if eng is None else eng.cursor()
    notes: list[str] = []
    try:
        paths = export.write_report(con, month, by, fmt, out_path, team=team, settings=settings.cost, notes=notes)
    except (CostInputError, UnsupportedConstruct) as err:
        _fail(err)
    finally:
        if eng is not None:
            eng.close()
    for p in paths:
        out.print(str(p))
    for note in notes:  # (the HTML and XLSX files hold them too; CSV and Parquet do not)
        console.print(note, highlight=False, markup=False, soft_wrap=True)


def _settings(**flags):
    """The effective settings for a command (flags over OBSERVATORY_*), or a one-line error."""
    from collector import settings as S
    try:
        return S.load(**flags)
    except S.SettingsError as err:
        _fail(err)
