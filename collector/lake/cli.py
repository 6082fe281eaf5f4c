"""`observatory lake`: export the collector's tables to a lake (directory, s3://, gs://)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from collector.settings import option, settings_or_exit

lake_app = typer.Typer(help="Export events, run attempts, alerts and FOCUS cost lines as Hive-partitioned Parquet "
                            "(docs/scale.md).", no_args_is_help=True, add_completion=False)


@lake_app.command("export")
def export_cmd(
    to: str = typer.Option(..., "--to", help="Lake location: DIR, s3://bucket/prefix or gs://bucket/prefix"),
    db: Optional[Path] = option("db", "--db", help="DuckDB file of the collector (when it is not running)"),
    collector_id: Optional[str] = option(
        "lake_collector_id", "--collector-id",
        help="Names this collector's files in the lake; none: <host>-<hash of the database path>"),
    s3_endpoint_url: Optional[str] = typer.Option(None, "--s3-endpoint-url", envvar="AWS_ENDPOINT_URL",
                                                  help="S3-compatible endpoint (MinIO, moto)"),
) -> None:
    """Write what changed since this collector's last export; print the report as JSON."""
    from collector.lake import export as lake_export
    from collector.lake.stores import open_store
    from collector.storage import db as dbmod

    # The settings are read when the command runs, not when the CLI is imported: an invalid OBSERVATORY_* value is
    # then one line and exit 2 (settings_or_exit), not a traceback from every `observatory` command.
    settings = settings_or_exit(db=db, lake_collector_id=collector_id)
    db, collector_id = settings.db, settings.lake_collector_id
    try:
        store = open_store(to, s3_endpoint_url=s3_endpoint_url)
        cid = collector_id or lake_export.default_collector_id(db)
        con = dbmod.connect_configured(settings)
        try:
            rep = lake_export.export(con, store, cid)
        finally:
            con.close()
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except dbmod.DatabaseUnavailable as exc:  # locked by the running collector, or a migration that failed
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(rep.as_dict(), indent=1))
