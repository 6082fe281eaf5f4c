"""`observatory`: the command line. Each command is a thin wrapper over the same functions the HTTP API uses."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from collector import areas
from collector.settings import Settings

app = typer.Typer(
    name="observatory",
    help="Notebook Observatory: collector, SLIs, SLO rules, billing and dashboards for notebook platforms.",
    no_args_is_help=True,
    add_completion=False,
)
tokens_app = typer.Typer(help="Manage API tokens (stored as SHA-256 digests).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")

DEFAULT_DB = Settings().db
DEFAULT_TOKENS = Path(os.environ.get("OBSERVATORY_TOKENS_FILE", "var/tokens.yaml"))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind"),
    port: int = typer.Option(8080, help="TCP port"),
    db: Path = typer.Option(DEFAULT_DB, help="DuckDB file (env OBSERVATORY_DB)"),
    no_auth: bool = typer.Option(False, "--no-auth", help="Disable tokens (only allowed on a loopback address)"),
    tokens_file: Path = typer.Option(DEFAULT_TOKENS, help="Token file (YAML with sha256 digests)"),
    demo: bool = typer.Option(False, help="Backfill demo history when the database is empty and stream live demo traffic"),
    demo_days: int = typer.Option(30, help="Days of demo history to backfill"),
    demo_rate: float = typer.Option(5.0, help="Live demo events per second"),
    log_level: str = typer.Option("INFO"),
) -> None:
    """Run the collector (HTTP API, writer, /metrics) on an embedded DuckDB file."""
    import uvicorn

    from collector.app import create_app
    from collector.settings import Settings
    from collector.telemetry import setup_logging

    if no_auth and not _is_loopback(host):
        typer.echo(f"error: --no-auth is only allowed when binding to a loopback address, not {host!r}", err=True)
        raise typer.Exit(2)
    setup_logging(log_level)
    settings = Settings(db=db, host=host, port=port, auth=not no_auth, tokens_file=tokens_file, log_level=log_level)
    _check_database(db)
    demo_token: str | None = None
    if demo:
        from collector.api.auth import write_token

        if not no_auth:
            demo_token = write_token(tokens_file, "demo", ["ingest", "read", "admin"])
        _backfill_demo(db, demo_days)
    application = create_app(settings)
    base = f"http://{host}:{port}"
    if demo:
        application.state.startup_hooks.append(lambda a: _start_live_demo(base, demo_token, demo_rate))
    typer.echo(f"Notebook Observatory collector on {base}")
    typer.echo(f"  API docs:  {base}/docs")
    typer.echo(f"  metrics:   {base}/metrics")
    typer.echo(f"  database:  {db}")
    if demo_token:
        typer.echo(f"  token:     {demo_token}   (scopes ingest, read, admin; rotated on every start)")
        typer.echo(f"  try:       curl -H 'Authorization: Bearer {demo_token}' {base}/metrics")
    elif no_auth:
        typer.echo("  auth:      disabled (loopback only)")
    sys.stdout.flush()
    uvicorn.run(application, host=host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=settings.shutdown_timeout_seconds)
    # The store is closed (everything acknowledged is committed). A worker thread still inside a computation
    # that no interrupt reaches must not keep the process alive: exit at the latest after the shutdown timeout.
    watchdog = threading.Timer(settings.shutdown_timeout_seconds, os._exit, args=(0,))
    watchdog.daemon = True
    watchdog.start()


def _check_database(db: Path) -> None:
    """Open the database once before serving: a locked or corrupted file is one clear line and exit 1."""
    from collector.storage import db as dbmod

    try:
        dbmod.connect(db).close()
    except (dbmod.duckdb.Error, OSError) as exc:
        typer.echo(f"error: {dbmod.open_error(db, exc)}", err=True)
        raise typer.Exit(1) from None


def _backfill_demo(db: Path, days: int) -> None:
    from collector.demo import platform as demo_mod
    from collector.storage import db as dbmod

    con = dbmod.connect(db)
    try:
        n = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    finally:
        con.close()
    if n:
        typer.echo(f"demo: {n} events already stored, no backfill")
        return
    typer.echo(f"demo: backfilling {days} days of history into {db} …")
    summary = demo_mod.backfill(db, days=days)
    typer.echo(f"demo: {summary}")


def _start_live_demo(base: str, token: str | None, rate: float) -> None:
    from collector.demo import platform as demo_mod

    t = threading.Thread(target=demo_mod.stream_live, args=(base, token, rate), daemon=True, name="demo-live")
    t.start()


@app.command()
def ingest(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="JSON, NDJSON or Parquet files"),
    db: Optional[Path] = typer.Option(None, help="Write directly into this DuckDB file (collector not running)"),
    url: Optional[str] = typer.Option(None, help="Post to a running collector, e.g. http://127.0.0.1:8080"),
    token: Optional[str] = typer.Option(None, envvar="OBSERVATORY_TOKEN", help="Bearer token for --url"),
    batch_size: int = typer.Option(5000, help="Events per request (--url) or per chunk (--db)"),
    progress: bool = typer.Option(True, help="Show a progress bar"),
) -> None:
    """Load event files with the same validation, redaction, dedup and dead-lettering as the API."""
    from collector.ingest import files as file_ingest

    if (db is None) == (url is None):
        typer.echo("error: give exactly one of --db or --url", err=True)
        raise typer.Exit(2)
    try:
        if db is not None:
            summary = file_ingest.ingest_files_to_db(files, db, chunk_rows=max(batch_size, 100_000), progress=progress)
        else:
            summary = file_ingest.ingest_files_to_url(files, url, token, batch_size=batch_size, progress=progress)
    except file_ingest.IngestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(summary, indent=2))
    if summary.get("rejected"):
        raise typer.Exit(3)


@app.command("demo")
def demo_cmd(
    days: int = typer.Option(30, help="Days of history to generate"),
    seed: int = typer.Option(7, help="Random seed: the same seed gives the same platform"),
    db: Optional[Path] = typer.Option(None, help="Backfill directly into this DuckDB file"),
    out: Optional[Path] = typer.Option(None, help="Write the history as NDJSON to this file"),
    url: Optional[str] = typer.Option(None, help="Collector URL for --live (and for backfill over HTTP)"),
    token: Optional[str] = typer.Option(None, envvar="OBSERVATORY_TOKEN"),
    live: bool = typer.Option(False, help="After any backfill, stream live traffic to --url until interrupted"),
    rate: float = typer.Option(5.0, help="Live events per second"),
) -> None:
    """Deterministic synthetic platform: teams, notebooks, schedules, runs, kernels, checks, probes, secrets."""
    from collector.demo import platform as demo_mod

    end = datetime.now(timezone.utc)
    if out is not None:
        n = demo_mod.write_ndjson(out, days=days, seed=seed, end=end)
        typer.echo(f"wrote {n} events to {out}")
    if db is not None:
        typer.echo(str(demo_mod.backfill(db, days=days, seed=seed, end=end)))
    if url is not None and not live:
        typer.echo(str(demo_mod.backfill_url(url, token, days=days, seed=seed, end=end)))
    if live:
        if url is None:
            typer.echo("error: --live needs --url", err=True)
            raise typer.Exit(2)
        demo_mod.stream_live(url, token, rate, seed=seed)


@app.command()
def schema(
    type: Optional[str] = typer.Option(None, "--type", help="Only this event type"),
) -> None:
    """Print the JSON Schema of the event types (the same document as GET /v1/schema)."""
    from collector.contract.events import json_schemas

    schemas = json_schemas()
    if type is not None:
        if type not in schemas:
            typer.echo(f"error: unknown event type {type!r}", err=True)
            raise typer.Exit(2)
        schemas = {type: schemas[type]}
    typer.echo(json.dumps(schemas, indent=2))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def run(ctx: typer.Context) -> None:
    """Execute a notebook with papermill and report the run: NOTEBOOK [-p KEY VALUE]… [--output OUT] [--collector URL] (see --help)."""
    from collector.emitters import papermill_runner

    raise typer.Exit(papermill_runner.main(list(ctx.args)))


@tokens_app.command("create")
def tokens_create(
    name: str = typer.Option(..., help="Token name (rotates an existing token of that name)"),
    scopes: str = typer.Option("ingest", help="Comma-separated: ingest,read,admin"),
    team: Optional[str] = typer.Option(None, help="Limit read endpoints to one team"),
    file: Path = typer.Option(DEFAULT_TOKENS, help="Token file"),
) -> None:
    """Create a token; prints it once (only its digest is stored)."""
    from collector.api.auth import SCOPES, write_token

    scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
    bad = set(scope_list) - set(SCOPES)
    if bad:
        typer.echo(f"error: unknown scopes {sorted(bad)}; use {list(SCOPES)}", err=True)
        raise typer.Exit(2)
    typer.echo(write_token(file, name, scope_list, team))


for _name, _group in areas.cli_groups():
    app.add_typer(_group, name=_name)

if __name__ == "__main__":
    app()
