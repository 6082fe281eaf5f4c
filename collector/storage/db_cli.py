"""`observatory db`: work on the collector's database file itself, with the collector stopped.

There is no HTTP twin: a running collector holds the file (DuckDB allows one process), and these commands need it
not to (collector/storage/compact.py)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Optional

import typer

from collector.settings import option, settings_or_exit

db_app = typer.Typer(help="The collector's database file, with the collector stopped: a compact copy.",
                     no_args_is_help=True, add_completion=False)


@db_app.command("compact")
def compact_cmd(
    out: Path = typer.Option(..., "--out", dir_okay=False,
                             help="The new file to write (never overwritten: an existing file is an error)"),
    db: Optional[Path] = option("db", "--db", help="DuckDB file of the stopped collector"),
    progress: bool = typer.Option(True, help="Show a status line on stderr while the copy runs"),
) -> None:
    """Copy the database into a new file without the free space of dropped or rewritten tables, and check the copy.

    The source is opened read-only and left as it is. Every table's rows, the catalog and the sequences are
    compared with the source's, and a copy that differs is deleted. Prints what was copied and both sizes as
    JSON. To use the copy, with the collector still stopped, move it over the source and delete the source's
    `.wal` if there is one: the copy holds what that log held, and DuckDB refuses to open a file beside a log that
    is not its own. Exit status 0 for a checked copy, 1 for an error (the collector still running, --out exists,
    a mismatch)."""
    from collector.storage import db as dbmod
    from collector.storage.compact import CompactError, compact

    settings = settings_or_exit(db=db)
    status: contextlib.AbstractContextManager = contextlib.nullcontext()
    if progress:
        from rich.console import Console

        status = Console(stderr=True).status(f"copying {settings.db} into {out}")
    try:
        with status:
            done = compact(settings.db, out, memory_limit=settings.duckdb_memory_limit)
    except (CompactError, dbmod.DatabaseUnavailable) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(done.as_dict(), indent=2))
