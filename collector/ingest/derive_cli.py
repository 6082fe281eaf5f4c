"""`observatory derive`: the batches the deriver gave up on, deriving them again, or recording that they will not be
(collector/ingest/rederive.py).

Each command works on a running collector (`--url`, the same documents as GET /v1/derive/failures,
POST /v1/derive/retry and POST /v1/derive/dismiss) or on its database file when it is stopped (`--db`); both call
the same functions."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

from collector.settings import Settings, option, settings_or_exit

derive_app = typer.Typer(help="Batches whose events are stored but whose derived rows (run attempts, kernel sessions, "
                              "notebooks, schedules, baselines) are missing, and deriving them again "
                              "(alerts/runbooks/observatory-derive-failures.md).",
                         no_args_is_help=True, add_completion=False)

_DB = option("db", "--db", help="DuckDB file of the collector (when it is not running)")
_URL = option("url", "--url", help="Ask a running collector instead, e.g. http://127.0.0.1:8080")
_TOKEN = option("token", "--token")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _target(db: Optional[Path], url: Optional[str], token: Optional[str]) -> tuple[Settings, str | None]:
    """The settings and the collector to ask (None: the database file), as `observatory sli` decides."""
    settings = settings_or_exit(db=db, url=url, token=token)
    return settings, settings.collector_to_ask(db, url)


def _print(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, default=str))


@derive_app.command("failures")
def failures_cmd(
    all_: bool = typer.Option(False, "--all", help="Also the batches derived again or dismissed since"),
    db: Optional[Path] = _DB, url: Optional[str] = _URL, token: Optional[str] = _TOKEN,
) -> None:
    """List the batches waiting to be derived again, oldest first, as JSON. Exit status 0 when none waits, 3 when
    some do (for scripts and checks), 1 on an error."""
    settings, target = _target(db, url, token)
    if target:
        from collector.remote import ClientError, get

        try:
            doc = get(target, "/v1/derive/failures", {"all": str(all_).lower()}, settings.token_value()).json()
        except ClientError as err:
            _fail(str(err))
    else:
        from collector.ingest import rederive
        from collector.storage import db as dbmod

        try:
            con = dbmod.connect_configured(settings, must_exist=True)
        except dbmod.DatabaseUnavailable as err:
            _fail(str(err))
        try:
            doc = rederive.document(con, include_retried=all_)
        finally:
            con.close()
    _print(doc)
    if doc["outstanding"]:
        raise typer.Exit(3)


@derive_app.command("retry")
def retry_cmd(
    batch: list[int] = typer.Option([], "--batch", help="Only this batch (repeat); default every batch waiting"),
    db: Optional[Path] = _DB, url: Optional[str] = _URL, token: Optional[str] = _TOKEN,
) -> None:
    """Fold the stored events of the waiting batches into the derived tables again, once what made the deriver fail
    is fixed; print what was done as JSON. One transaction: a retry that fails again changes nothing. Exit status 0
    done (or nothing waited), 1 an error (nothing changed)."""
    from collector.ingest import rederive

    ids = batch or None
    _change(db, url, token, "/v1/derive/retry", {"batch_ids": ids},
            lambda store: store.writer.retry_derive(ids).result().as_dict(),
            (rederive.NotOutstanding, rederive.RetryFailed))


@contextlib.contextmanager
def _stopped_store(settings: Settings) -> Iterator[Any]:
    """The database file of a stopped collector with its writer running (which first derives what that collector
    committed and did not derive), closed after."""
    from collector.ingest.store import Store
    from collector.storage import db as dbmod

    if not settings.db.is_file():
        _fail(f"no database at {settings.db}")
    try:
        store = Store(settings, streams=1)
    except dbmod.DatabaseUnavailable as err:  # locked by the running collector (use --url), or a migration failed
        _fail(str(err))
    try:
        store.writer.start()
        yield store
    finally:
        store.close()


@derive_app.command("dismiss")
def dismiss_cmd(
    batch: list[int] = typer.Option(..., "--batch", help="A batch that will not be derived again (repeat; never "
                                                         "implied)"),
    reason: str = typer.Option(..., "--reason", help="Why: stored and listed, with any secret redacted"),
    db: Optional[Path] = _DB, url: Optional[str] = _URL, token: Optional[str] = _TOKEN,
) -> None:
    """Record that batches whose cause cannot be fixed will not be derived again: their derived rows stay missing,
    knowingly, and they no longer count as waiting (the gauge, the ticket). `retry --batch N` still derives one.
    Exit status 0 done, 1 an error (nothing changed)."""
    from collector.ingest import rederive

    _change(db, url, token, "/v1/derive/dismiss", {"batch_ids": batch, "reason": reason},
            lambda store: {"dismissed": store.writer.dismiss_derive(batch, reason).result()},
            (rederive.NotOutstanding, ValueError))


def _change(db: Optional[Path], url: Optional[str], token: Optional[str], path: str, body: dict[str, Any],
            local: Callable[[Any], dict[str, Any]], refused: tuple[type[Exception], ...]) -> None:
    """POST `body` to `path` of a running collector, or do `local(store)` on a stopped one's file (the same
    function the route calls); print the document. `refused`: the errors `local` reports in one line."""
    settings, target = _target(db, url, token)
    if target:
        from collector.remote import ClientError, post

        try:
            doc = post(target, path, body, settings.token_value()).json()
        except ClientError as err:
            _fail(str(err))
    else:
        with _stopped_store(settings) as store:
            try:
                doc = local(store)
            except refused as err:
                _fail(str(err))
    _print(doc)
