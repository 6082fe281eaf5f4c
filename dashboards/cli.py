"""`observatory dashboards`: build (or check) the Grafana dashboards and provisioning files, and lint them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

dashboards_app = typer.Typer(help="Grafana dashboards as code (grafana-foundation-sdk 0.0.21).", no_args_is_help=True)


@dashboards_app.command("build")
def build_cmd(
    check: bool = typer.Option(False, "--check", help="Fail (exit 1) when a committed file differs; write nothing"),
    out: Optional[Path] = typer.Option(None, help="Output directory (default: dashboards/grafana of the package)"),
) -> None:
    """Regenerate dashboards/grafana/{executive,oncall,debug}.json and the provisioning YAML."""
    from dashboards import build

    out_dir = out or build.OUT_DIR
    if check:
        stale = build.stale(out_dir)
        if stale:
            typer.echo("stale generated dashboard files (run `observatory dashboards build`): " + ", ".join(stale),
                       err=True)
            raise typer.Exit(1)
        typer.echo(f"dashboards: {len(build.outputs())} generated files are up to date in {out_dir}")
        return
    changed = build.write(out_dir)
    typer.echo(f"dashboards: wrote {len(changed)} changed file(s) of {len(build.outputs())} into {out_dir}"
               + (": " + ", ".join(changed) if changed else ""))


@dashboards_app.command("lint")
def lint_cmd(
    files: Optional[list[Path]] = typer.Argument(None, help="Dashboard JSON files (default: the generated ones)"),
    schemas: Optional[Path] = typer.Option(None, help="Directory of the Grafana JSON Schemas (*.jsonschema.json)"),
) -> None:
    """Run the dashboard-linter rules (Python port), uid/layout checks and, with --schemas, the JSON Schema."""
    from dashboards import build, lint

    paths = files or [build.OUT_DIR / f"{k}.json" for k in build.BUILDERS]
    problems = lint.lint_files(paths, schemas)
    for p in problems:
        typer.echo(p)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"dashboards: {len(paths)} file(s) clean")
