"""`observatory slo ...`: generate the rule files from slo/slos.yaml, check they are fresh, render alertmanager.yml.

Thin wrapper: validation is in slo.spec, resolution in slo.model, generation in slo.rules (pure functions),
rendering of alertmanager.yml in slo.alertmanager.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from slo import routing
from slo.alertmanager import RenderError, render_env_template
from slo.model import GenerationError, check_fireable, gofloat, resolve
from slo.rules import diff_outputs, generate as generate_rules, write_outputs
from slo.spec import SpecError, load_spec, with_default_period

slo_app = typer.Typer(help="SLOs as code: Prometheus rules (Sloth-compatible) and Alertmanager config.",
                      no_args_is_help=True)


@slo_app.callback()
def _main() -> None:
    """SLOs as code: Prometheus rules (Sloth-compatible) and Alertmanager config."""


def _fail(lines: list[str], head: str) -> None:
    typer.echo(head, err=True)
    for line in lines:
        typer.echo(f"  - {line}", err=True)
    raise typer.Exit(2)


@slo_app.command()
def generate(
    spec: Path = typer.Option(Path("slo/slos.yaml"), "--spec", help="SLO spec (observatory/v1 or Sloth prometheus/v1)"),
    out: Path = typer.Option(Path("alerts"), "--out", help="directory of the generated *.rules.yml"),
    check: bool = typer.Option(False, "--check", help="write nothing; exit 1 and print a diff if files are stale"),
    runbook_dir: Path | None = typer.Option(
        None, "--runbooks", help="directory the alerts' runbooks must exist in (default OUT/runbooks)"),
    default_period: str | None = typer.Option(
        None, "--default-slo-period", help="period of a spec that sets none (like Sloth's flag; default 30d)"),
    teams: Path | None = typer.Option(
        None, "--teams", help="teams with their own receivers (default OUT/teams.yaml); alertmanager.yml is "
                              "generated next to the rules when the spec is observatory/v1"),
) -> None:
    """Generate Prometheus rule files and alertmanager.yml from the SLO spec (or, with --check, verify them)."""
    try:
        parsed = load_spec(spec)
        if default_period:
            parsed = with_default_period(parsed, default_period)
    except SpecError as exc:
        _fail(exc.errors, f"{spec}: invalid SLO spec")
    except ValueError as exc:
        _fail([str(exc)], "invalid --default-slo-period")
    try:
        files = generate_rules(parsed)
        model = resolve(parsed)
        if model.observatory:
            files[routing.ALERTMANAGER_FILE] = routing.render(model, routing.load_teams(teams or out / "teams.yaml"))
    except GenerationError as exc:
        _fail(exc.errors, f"{spec}: cannot generate rules")
    except ValueError as exc:
        _fail([str(exc)], f"{spec}: cannot generate alertmanager.yml")
    rb_dir = runbook_dir or out / "runbooks"
    missing = [name for name in model.runbooks() if not (rb_dir / name).is_file()]
    if missing:
        _fail([f"{rb_dir / m} does not exist" for m in missing], "alerts link runbooks that are missing")
    if check:
        diffs = diff_outputs(files, out)
        if diffs:
            for d in diffs:
                sys.stdout.write(d if d.endswith("\n") else d + "\n")
            typer.echo(f"{len(diffs)} generated file(s) are stale: run `observatory slo generate` and commit.",
                       err=True)
            raise typer.Exit(1)
        typer.echo(f"{len(files)} rule file(s) in {out} are up to date.")
        return
    written = write_outputs(files, out)
    for path in written:
        typer.echo(f"wrote {path}" if path.exists() else f"removed {path}")
    if not written:
        typer.echo(f"{len(files)} rule file(s) in {out} already up to date.")


@slo_app.command("teams")
def teams_cmd(
    db: Path = typer.Option(..., "--db", help="the collector's DuckDB file (its notebook registry)"),
    out: Path = typer.Option(Path("alerts/teams.yaml"), "--out", help="teams file read by `slo generate`"),
) -> None:
    """Write the registry's teams to alerts/teams.yaml (then run `observatory slo generate` and commit both)."""
    from collector.storage import db as dbmod

    con = dbmod.connect(db, read_only=True)
    try:
        found = routing.registry_teams(con)
    finally:
        con.close()
    out.write_text(routing.teams_text(found))
    typer.echo(f"wrote {out}: {len(found)} teams")


@slo_app.command("render-alertmanager")
def render_alertmanager(
    config: Path = typer.Option(Path("alerts/alertmanager.yml"), "--config", help="template with ${VAR} URLs"),
    out: Path | None = typer.Option(None, "--out", help="write here (default: stdout)"),
) -> None:
    """Fill alertmanager.yml's ${VAR} placeholders (receiver URLs, token) from the environment."""
    try:
        text = render_env_template(config.read_text(), dict(os.environ))
    except RenderError as exc:
        typer.echo(f"{config}: {exc}", err=True)
        raise typer.Exit(2)
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.chmod(0o600)  # it holds webhook URLs and a bearer token
        typer.echo(f"wrote {out}", err=True)


@slo_app.command()
def validate(
    spec: Path = typer.Option(Path("slo/slos.yaml"), "--spec"),
) -> None:
    """Validate the SLO spec and print a one-line summary per SLO."""
    try:
        parsed = load_spec(spec)
    except SpecError as exc:
        _fail(exc.errors, f"{spec}: invalid SLO spec")
    model = resolve(parsed)
    errors = check_fireable(model)
    if errors:
        _fail(errors, f"{spec}: cannot generate rules")
    for s in model.slos:
        tiers = ", ".join(
            f"{t.severity}-{t.tier} {t.short}/{t.long} x{gofloat(t.factor)}" + ("" if t.enabled else " (off)")
            for t in s.tiers)
        typer.echo(f"{parsed.service}/{s.name}: {gofloat(s.slo.objective)}% over {parsed.slo_period(s.slo)}; {tiers}")
    typer.echo(f"{len(parsed.slos)} SLOs, {len(parsed.alerts)} other alerts: OK")
