"""`observatory sli`: the SLIs as a table (or JSON), with the same filters as GET /v1/sli.

By default it prints the platform summary (one line per SLI and window, ratios as percentages); `--level team`,
`--team` or `--notebook-id` go deeper, `--json` prints the API's document. With `--url` (or OBSERVATORY_URL) it asks
a running collector; otherwise it opens the database, which a running collector holds locked: the error then says
to use `--url` in one line.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from collector.engines import select
from collector import settings as S
from collector.settings import option

if TYPE_CHECKING:  # (the CLI imports DuckDB and the SLI engine only for the commands that use them)
    import duckdb

    from slo.sli.config import SliConfig

sli_app = typer.Typer(help="Platform SLIs (M1-M15) computed in DuckDB, as GET /v1/sli serves them.",
                      invoke_without_command=True, add_completion=False)

PERCENT_UNITS = {"ratio"}  # shown as percentages (the stat says what the ratio is)


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def value_text(row: dict) -> str:
    """A row's value as people read it: ratios as percentages, money with its currency, others with the unit."""
    v, unit, stat = row["value"], row["unit"], row["stat"]
    if v is None:
        return f"— ({row.get('absent_reason')})"
    if stat == "mom_change":
        return f"{v * 100:+.1f} %"
    if unit in PERCENT_UNITS:
        return f"{v * 100:.2f} %"
    if unit == "USD":
        return f"{v:,.2f} USD"
    return f"{v:.4g} {unit}"


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@sli_app.callback()
def show(
    ctx: typer.Context,
    sli: list[str] = typer.Option([], "--sli", help="SLI id or name (repeat or comma-separate); default all"),
    window: list[str] = typer.Option([], "--window", "-w", help="Window, e.g. 1h, 1d, 7d, 30d (default: the "
                                                                  "configured windows, OBSERVATORY_SLI_WINDOWS)"),
    team: Optional[str] = typer.Option(None, help="Only this team"),
    notebook_id: Optional[str] = typer.Option(None, "--notebook-id", help="Only this notebook"),
    trigger: Optional[str] = typer.Option(None, help="Only this trigger (M1)"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="RFC 3339 end of the windows; default now"),
    level: list[str] = typer.Option([], "--level", help="platform, team, notebook, trigger (default: platform, or "
                                                         "the level of --team / --notebook-id)"),
    db: Optional[Path] = option("db", "--db", help="DuckDB file, when the collector is not running"),
    url: Optional[str] = option("url", "--url", help="Ask a running collector instead, e.g. http://127.0.0.1:8080"),
    token: Optional[str] = option("token", "--token"),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON document"),
    engine: Optional[str] = select.ENGINE_OPT,
    lake: Optional[str] = select.LAKE_OPT,
    spark_master: Optional[str] = select.SPARK_MASTER_OPT,
    bq_project: Optional[str] = select.BQ_PROJECT_OPT,
    bq_dataset: Optional[str] = select.BQ_DATASET_OPT,
    dry_run: bool = typer.Option(False, "--dry-run", help="BigQuery: print the bytes each statement would scan"),
    progress: bool = typer.Option(True, help="With --db: a progress bar while a backlog is folded in slices (the "
                                             "first computation after `observatory ingest --db` of a large history)"),
) -> None:
    """Print the SLIs (absent ones show — and the reason)."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        settings = S.load(db=db, url=url, token=token)
    except S.SettingsError as err:
        _fail(str(err), 2)
    split = lambda xs: [p.strip() for x in xs for p in x.split(",") if p.strip()]  # noqa: E731
    levels = split(level) or (["notebook"] if notebook_id else ["trigger"] if trigger else
                              ["team"] if team else ["platform"])
    target = settings.collector_to_ask(db, url)
    if target:
        from collector.remote import ClientError, get

        params: list[tuple[str, str]] = [("sli", s) for s in split(sli)] + [("window", w) for w in split(window)]
        params += [("level", lv) for lv in levels]
        for k, v in (("team", team), ("notebook_id", notebook_id), ("trigger", trigger), ("as_of", as_of)):
            if v is not None:
                params.append((k, v))
        try:
            doc = get(target, "/v1/sli", params, settings.token_value()).json()
        except ClientError as err:
            _fail(str(err))
    else:
        from collector.storage import db as dbmod
        from slo.sli import sql as Q
        from slo.sli.compute import compute
        from slo.sli.config import SliQuery, parse_window, resolve_sli

        cfg = settings.sli
        try:
            when = datetime.fromisoformat(as_of.replace("Z", "+00:00")) if as_of else datetime.now(timezone.utc)
            if when.tzinfo is None:
                raise ValueError("--as-of needs a time zone (e.g. 2026-11-21T09:00:00Z)")
            windows = split(window) or list(cfg.windows)
            for w in windows:
                parse_window(w)
            q = SliQuery(as_of=when, windows=windows, slis=[resolve_sli(s) for s in split(sli)] or list(Q.SLIS),
                         team=team, notebook_id=notebook_id, trigger=trigger, levels=tuple(levels))
        except ValueError as exc:
            _fail(str(exc), 2)
        try:
            es = select.settings_from(engine, lake, spark_master=spark_master, bq_project=bq_project,
                                      bq_dataset=bq_dataset)
            eng = select.open_engine(es, dry_run=dry_run)
        except ValueError as exc:
            _fail(str(exc), 2)
        if eng is None:
            try:
                con = dbmod.connect_configured(settings, must_exist=True)
            except dbmod.DatabaseUnavailable as err:
                _fail(str(err), 2)
            try:
                fold_pending(con, cfg, progress)
                rows = compute(con, q, cfg)
            finally:
                con.close()
        else:
            from collector.engines.sli import compute as compute_on

            try:
                rows = compute_on(eng, q, cfg)
                if dry_run:
                    select.print_estimates(getattr(eng, "estimates", []), typer.echo)
                    return
            finally:
                eng.close()
        doc = {"as_of": when.astimezone(timezone.utc).isoformat(), "window": windows, "slis": rows}
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    print_table(doc)


def fold_pending(con: duckdb.DuckDBPyConnection, cfg: SliConfig, progress: bool) -> None:
    """Fold what the database holds beyond the SLI tables (compute would, first), with a bar on stderr once the fold
    takes more than one slice: a first fold of millions of events takes a while (docs/sli.md)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from slo.sli.fold import fold

    bar: Progress | None = None

    def step(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            if not progress or done >= total:  # (one slice: nothing to show)
                return
            bar = Progress(TextColumn("[bold]fold"), BarColumn(), MofNCompleteColumn(), TextColumn("events"),
                           TimeElapsedColumn(), console=Console(stderr=True))
            bar.start()
            bar.add_task("fold", total=total)
        bar.update(bar.task_ids[0], completed=done)

    try:
        fold(con, cfg, progress=step)
    finally:
        if bar is not None:
            bar.stop()


def print_table(doc: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = doc["slis"]
    wide = {c for c, k in (("team", "team"), ("notebook", "notebook_id"), ("trigger", "trigger"))
            if any(r[k] is not None for r in rows)}
    table = Table(title=f"SLIs as of {doc['as_of']}" + ("" if wide else " (platform; --level team for teams)"))
    cols = ["SLI", "name", "window"] + [c for c in ("team", "notebook", "trigger") if c in wide] + \
        ["stat", "value", "good", "bad", "total"]
    for col in cols:
        table.add_column(col, justify="right" if col in ("value", "good", "bad", "total") else "left")
    for r in rows:
        scope = {"team": _fmt(r["team"] or "all"), "notebook": _fmt(r["notebook_id"]), "trigger": _fmt(r["trigger"])}
        table.add_row(r["sli"], r["name"], r["window"], *(scope[c] for c in ("team", "notebook", "trigger")
                                                          if c in wide),
                      r["stat"], value_text(r), _fmt(r["good"]), _fmt(r.get("bad")), _fmt(r["total"]))
    Console(width=200).print(table)
    missing = [r for r in rows if (r["provenance"].get("underived_run_attempts") or 0) > 0]
    if missing:
        worst = max(missing, key=lambda r: r["provenance"]["underived_run_attempts"])
        typer.echo(f"{len(missing)} of these rows miss run attempts of batches the deriver gave up on (at most "
                   f"{worst['provenance']['underived_run_attempts']}, {worst['sli']} over {worst['window']}): "
                   "`observatory derive failures --all` lists the batches (docs/reliability.md)", err=True)
