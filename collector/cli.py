"""`observatory`: the command line. Each command is a thin wrapper over the same functions the HTTP API uses."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from collector import areas
from collector.ingest import allocators
from collector.settings import Settings, option, settings_or_exit
from collector.storage import db as dbmod
from collector.storage.db import DatabaseUnavailable

app = typer.Typer(
    name="observatory",
    help="Notebook Observatory: collector, SLIs, SLO rules, billing and dashboards for notebook platforms.",
    no_args_is_help=True,
    add_completion=False,
)
tokens_app = typer.Typer(help="Manage API tokens (stored as SHA-256 digests).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")

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
    host: Optional[str] = option("host", "--host"),
    port: Optional[int] = option("port", "--port"),
    db: Optional[Path] = option("db", "--db"),
    auth: Optional[bool] = option("auth", "--auth/--no-auth"),
    tokens_file: Optional[Path] = option("tokens_file", "--tokens-file"),
    metrics_public: Optional[bool] = option("metrics_public", "--metrics-public/--no-metrics-public"),
    log_level: Optional[str] = option("log_level", "--log-level"),
    lake_export_to: Optional[str] = option("lake_export_to", "--lake-export-to"),
    lake_export_every: Optional[str] = option("lake_export_every", "--lake-export-every"),
    lake_collector_id: Optional[str] = option("lake_collector_id", "--lake-collector-id"),
    demo: bool = typer.Option(False, help="Backfill demo history when the database is empty and stream live demo traffic"),
    demo_days: int = typer.Option(30, help="Days of demo history to backfill"),
    demo_rate: float = typer.Option(5.0, help="Live demo events per second"),
) -> None:
    """Run the collector (HTTP API, writer, /metrics) on an embedded DuckDB file.

    Every option has an OBSERVATORY_* variable (README, Configuration); an option given wins over the variable."""
    import uvicorn

    from collector.app import create_app
    from collector.telemetry import setup_logging

    settings = settings_or_exit(host=host, port=port, db=db, auth=auth, tokens_file=tokens_file,
                                metrics_public=metrics_public, log_level=log_level, lake_export_to=lake_export_to,
                                lake_export_every=lake_export_every, lake_collector_id=lake_collector_id)
    host, port, db = settings.host, settings.port, settings.db
    if not settings.auth and not _is_loopback(host):
        typer.echo(f"error: --no-auth is only allowed when binding to a loopback address, not {host!r}", err=True)
        raise typer.Exit(2)
    setup_logging(settings.log_level)
    allocators.tune(settings.tune_allocators)  # the start-up log line says what was set
    _refuse_busy_port(host, port)  # before anything slow or anything written (the demo backfill, the token file)
    demo_token: str | None = None
    try:
        if demo:
            _backfill_demo(settings, demo_days)
            if settings.auth:
                from collector.api.auth import write_token

                demo_token = write_token(settings.tokens_file, "demo", ["ingest", "read", "admin"])
            quiet_request_log()
        else:
            # A file locked by another collector, or a migration that fails: one line now, not a trace at startup.
            dbmod.connect_configured(settings).close()
        application = create_app(settings)
    except DatabaseUnavailable as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    base = f"http://{host}:{port}"
    if demo:
        application.state.startup_hooks.append(lambda a: _start_live_demo(base, demo_token, demo_rate))
    typer.echo(banner(settings, demo_token, demo))
    sys.stdout.flush()
    uvicorn.run(application, host=host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=settings.shutdown_timeout_seconds)
    # The store is closed (everything acknowledged is committed). A worker thread still inside a computation
    # that no interrupt reaches must not keep the process alive: exit at the latest after the shutdown timeout.
    # Reached after a SIGINT (uvicorn raises it again as a KeyboardInterrupt, which `uvicorn.run` swallows); a
    # SIGTERM, raised again with its default action, ends the process before this line, waiting for no thread.
    watchdog = threading.Timer(settings.shutdown_timeout_seconds, os._exit, args=(0,))
    watchdog.daemon = True
    watchdog.start()


def _refuse_busy_port(host: str, port: int) -> None:
    """Fail in a second, with the fix, when the address is taken: not after a backfill, and before `serve --demo`
    rotates the token of the collector that holds the port (its tokens file stays as it is)."""
    try:
        with socket.create_server((host, port), reuse_port=False) as _:
            pass
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        typer.echo(f"error: cannot listen on {host}:{port} ({reason}); is a collector already running there? "
                   "Use another port: --port N, OBSERVATORY_PORT=N, or `make run PORT=N`", err=True)
        raise typer.Exit(1) from None


class _QuietRequests(logging.Filter):
    """Drops the per-request lines of answered requests (status < 400); errors and every other line stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.getMessage() == "request" and getattr(record, "status", 500) < 400)


def quiet_request_log() -> None:
    """The live demo posts every fraction of a second: its request lines would bury the banner and every other
    log line, so successful requests are not logged (`--log-level DEBUG` keeps them; failed ones always show)."""
    http = logging.getLogger("collector.http")
    if http.getEffectiveLevel() > logging.DEBUG and not any(isinstance(f, _QuietRequests) for f in http.filters):
        http.addFilter(_QuietRequests())


def banner(settings: Settings, demo_token: str | None, demo: bool) -> str:
    """What `serve` prints: where things are, and for the demo the next steps of README's quick start."""
    base = f"http://{settings.host}:{settings.port}"
    lines = [f"Notebook Observatory collector on {base}",
             f"  API docs:  {base}/docs",
             f"  metrics:   {base}/metrics",
             f"  database:  {settings.db}"]
    if demo_token:
        lines += [f"  token:     {demo_token}   (scopes ingest, read, admin; rotated on every start,"
                  f" digest in {settings.tokens_file})"]
    elif not settings.auth:
        lines += ["  auth:      disabled (loopback only)"]
    if demo:
        export = f"export OBSERVATORY_TOKEN={demo_token}" if demo_token else "(no token needed: auth is off)"
        lines += ["",
                  "Next steps (in another terminal):",
                  f"  {export}",
                  f"  export OBSERVATORY_URL={base}",
                  "  .venv/bin/observatory sli                      # platform SLIs from the running collector",
                  "  .venv/bin/observatory report cost --out report.html   # last closed month, for finance",
                  f"  curl -H \"Authorization: Bearer $OBSERVATORY_TOKEN\" {base}/v1/cost/summary",
                  "  docker compose --profile demo up              # Prometheus, Alertmanager, Grafana on :3000",
                  "Live demo traffic is flowing; successful requests are not logged (--log-level DEBUG logs them)."]
    return "\n".join(lines)


def _backfill_demo(settings: Settings, days: int) -> None:
    from collector.demo import platform as demo_mod

    db = settings.db
    con = dbmod.connect_configured(settings)
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
    token: Optional[str] = option("token", "--token"),
    batch_size: int = typer.Option(5000, help="Events per request (--url). With --db, events per commit: whole "
                                              f"DuckDB row groups of {dbmod.ROW_GROUP_ROWS:,} events, at least one "
                                              "(a larger value rounds down to a multiple)"),
    progress: bool = typer.Option(True, help="Show a progress bar"),
) -> None:
    """Load event files with the same validation, redaction, dedup and dead-lettering as the API.

    The target is explicit (exactly one of --db or --url): loading into the wrong place is hard to undo. Exit
    status: 0 every event stored or a duplicate, 3 some rejected (dead-lettered, samples in the summary), 1 an
    error (with --db also: chunks stored whose derived rows could not be written), 2 a usage error."""
    from collector.ingest import files as file_ingest

    if (db is None) == (url is None):
        typer.echo("error: give exactly one of --db or --url", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit(token=token)
    allocators.tune(settings.tune_allocators)
    try:
        if db is not None:
            summary = file_ingest.ingest_files_to_db(files, db, chunk_rows=dbmod.whole_row_groups(batch_size),
                                                     progress=progress)
        else:
            summary = file_ingest.ingest_files_to_url(files, url, settings.token_value(), batch_size=batch_size,
                                                      progress=progress)
    except file_ingest.IngestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(summary, indent=2))
    if summary.get("derive_failures"):
        typer.echo(f"error: the events of {summary['derive_failures']} chunk(s) are stored, their derived rows (run "
                   "attempts, kernel sessions, notebooks, schedules) are not: `observatory derive failures --db` "
                   "lists them, `observatory derive retry --db` derives them again once the cause is fixed",
                   err=True)
        raise typer.Exit(1)
    if summary.get("rejected"):
        raise typer.Exit(3)


@app.command("demo")
def demo_cmd(
    days: int = typer.Option(30, help="Days of history to generate"),
    seed: int = typer.Option(7, help="Random seed: the same seed gives the same platform"),
    db: Optional[Path] = typer.Option(None, help="Backfill directly into this DuckDB file"),
    out: Optional[Path] = typer.Option(None, help="Write the history as NDJSON to this file"),
    url: Optional[str] = typer.Option(None, help="Collector URL for --live (and for backfill over HTTP)"),
    token: Optional[str] = option("token", "--token"),
    live: bool = typer.Option(False, help="After any backfill, stream live traffic to --url until interrupted"),
    rate: float = typer.Option(5.0, help="Live events per second"),
) -> None:
    """Deterministic synthetic platform: teams, notebooks, schedules, runs, kernels, checks, probes, secrets.

    Give at least one target: --db, --out or --url (with --live to keep streaming)."""
    from collector.demo import platform as demo_mod

    if db is None and out is None and url is None:
        typer.echo("error: give a target: --db FILE (history into a database), --out FILE (NDJSON), "
                   "--url URL (history over HTTP; add --live to keep streaming)", err=True)
        raise typer.Exit(2)
    if live and url is None:
        typer.echo("error: --live needs --url", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit(token=token)
    allocators.tune(settings.tune_allocators)
    token = settings.token_value()
    end = datetime.now(timezone.utc)
    if out is not None:
        n = demo_mod.write_ndjson(out, days=days, seed=seed, end=end)
        typer.echo(f"wrote {n} events to {out}")
    if db is not None:
        typer.echo(str(demo_mod.backfill(db, days=days, seed=seed, end=end)))
    if url is not None and not live:
        typer.echo(str(demo_mod.backfill_url(url, token, days=days, seed=seed, end=end)))
    if live:
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
    file: Optional[Path] = option("tokens_file", "--file"),
) -> None:
    """Create a token; prints it once (only its digest is stored)."""
    from collector.api.auth import SCOPES, write_token

    scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
    bad = set(scope_list) - set(SCOPES)
    if bad:
        typer.echo(f"error: unknown scopes {sorted(bad)}; use {list(SCOPES)}", err=True)
        raise typer.Exit(2)
    typer.echo(write_token(settings_or_exit(tokens_file=file).tokens_file, name, scope_list, team))


for _name, _group in areas.cli_groups():
    app.add_typer(_group, name=_name)

if __name__ == "__main__":
    app()
