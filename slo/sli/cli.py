"""`observatory sli`: the SLIs as a table (or JSON), with the same filters as GET /v1/sli."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from collector.settings import Settings

sli_app = typer.Typer(help="Platform SLIs (M1-M15) computed in DuckDB, as GET /v1/sli serves them.",
                      invoke_without_command=True, add_completion=False)


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


@sli_app.callback()
def show(
    ctx: typer.Context,
    sli: list[str] = typer.Option([], "--sli", help="SLI id or name (repeat or comma-separate); default all"),
    window: list[str] = typer.Option([], "--window", "-w", help="Window, e.g. 1h, 1d, 7d, 30d"),
    team: Optional[str] = typer.Option(None, help="Only this team"),
    notebook_id: Optional[str] = typer.Option(None, "--notebook-id", help="Only this notebook"),
    trigger: Optional[str] = typer.Option(None, help="Only this trigger (M1)"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="RFC 3339 end of the windows; default now"),
    level: list[str] = typer.Option([], "--level", help="platform, team, notebook, trigger"),
    db: Path = typer.Option(Settings().db,
                            help="DuckDB file (when the collector is not running)"),
    url: Optional[str] = typer.Option(None, help="Ask a running collector instead, e.g. http://127.0.0.1:8080"),
    token: Optional[str] = typer.Option(None, envvar="OBSERVATORY_TOKEN", help="Bearer token for --url"),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON document"),
) -> None:
    """Print the SLIs (absent ones show — and the reason)."""
    if ctx.invoked_subcommand is not None:
        return
    split = lambda xs: [p.strip() for x in xs for p in x.split(",") if p.strip()]  # noqa: E731
    if url:
        import httpx

        params: list[tuple[str, str]] = [("sli", s) for s in split(sli)] + [("window", w) for w in split(window)]
        params += [("level", lv) for lv in split(level)]
        for k, v in (("team", team), ("notebook_id", notebook_id), ("trigger", trigger), ("as_of", as_of)):
            if v is not None:
                params.append((k, v))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = httpx.get(url.rstrip("/") + "/v1/sli", params=params, headers=headers, timeout=60)
        if r.status_code != 200:
            typer.echo(f"error: HTTP {r.status_code}: {r.text}", err=True)
            raise typer.Exit(1)
        doc = r.json()
    else:
        from collector.storage import db as dbmod
        from slo.sli import sql as Q
        from slo.sli.compute import compute
        from slo.sli.config import DEFAULT_LEVELS, SliConfig, SliQuery, parse_window, resolve_sli

        cfg = SliConfig()
        try:
            when = datetime.fromisoformat(as_of.replace("Z", "+00:00")) if as_of else datetime.now(timezone.utc)
            if when.tzinfo is None:
                raise ValueError("--as-of needs a time zone (e.g. 2026-11-21T09:00:00Z)")
            windows = split(window) or list(cfg.windows)
            for w in windows:
                parse_window(w)
            q = SliQuery(as_of=when, windows=windows,
                                slis=[resolve_sli(s) for s in split(sli)] or list(Q.SLIS),
                                team=team, notebook_id=notebook_id, trigger=trigger,
                                levels=tuple(split(level)) or DEFAULT_LEVELS)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        con = dbmod.connect(db)
        try:
            rows = compute(con, q, cfg)
        finally:
            con.close()
        doc = {"as_of": when.astimezone(timezone.utc).isoformat(), "window": windows, "slis": rows}
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"SLIs as of {doc['as_of']}")
    for col in ("SLI", "name", "window", "team", "notebook", "trigger", "stat", "value", "good", "total", "unit"):
        table.add_column(col, justify="right" if col in ("value", "good", "total") else "left")
    for r in doc["slis"]:
        value = _fmt(r["value"]) if r["value"] is not None else f"— ({r.get('absent_reason')})"
        table.add_row(r["sli"], r["name"], r["window"], _fmt(r["team"] or "all"), _fmt(r["notebook_id"]),
                      _fmt(r["trigger"]), r["stat"], value, _fmt(r["good"]), _fmt(r["total"]), r["unit"])
    Console(width=200).print(table)
