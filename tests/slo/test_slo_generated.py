"""The committed rule files are exactly what slo/slos.yaml generates; `slo generate --check` says so, or fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from slo import routing
from slo.cli import slo_app
from slo.model import resolve
from slo.rules import generate
from slo.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_committed_rules_are_fresh():
    spec = load_spec(ROOT / "slo" / "slos.yaml")
    files = generate(spec)
    assert sorted(files) == ["platform.rules.yml", "slos.rules.yml"]
    files["alertmanager.yml"] = routing.render(resolve(spec), routing.load_teams(ROOT / "alerts" / "teams.yaml"))
    for name, text in files.items():
        assert (ROOT / "alerts" / name).read_text() == text, \
            f"alerts/{name} is stale: run `observatory slo generate` and commit"


def _workspace(tmp_path: Path) -> tuple[Path, Path]:
    spec = tmp_path / "slos.yaml"
    shutil.copy(ROOT / "slo" / "slos.yaml", spec)
    out = tmp_path / "alerts"
    shutil.copytree(ROOT / "alerts", out)
    return spec, out


def test_check_passes_on_the_committed_tree():
    r = runner.invoke(slo_app, ["generate", "--check", "--spec", str(ROOT / "slo/slos.yaml"),
                                "--out", str(ROOT / "alerts")])
    assert r.exit_code == 0, r.output
    assert "up to date" in r.output


def test_check_fails_with_a_diff_when_a_file_was_edited(tmp_path):
    spec, out = _workspace(tmp_path)
    rules = out / "slos.rules.yml"
    rules.write_text(rules.read_text().replace("(3 * 0.01)", "(20 * 0.01)", 1))
    r = runner.invoke(slo_app, ["generate", "--check", "--spec", str(spec), "--out", str(out)])
    assert r.exit_code == 1
    removed = [line for line in r.output.splitlines() if line.startswith("-") and "ratio_rate2h" in line]
    added = [line for line in r.output.splitlines() if line.startswith("+") and "ratio_rate2h" in line]
    assert len(removed) == len(added) == 1 and "(20 * 0.01)" in removed[0] and "(3 * 0.01)" in added[0]
    assert "stale" in r.output
    assert "(20 * 0.01)" in rules.read_text()  # --check writes nothing


def test_check_fails_when_the_spec_changed(tmp_path):
    spec, out = _workspace(tmp_path)
    spec.write_text(spec.read_text().replace("objective: 99.9", "objective: 99.95"))
    r = runner.invoke(slo_app, ["generate", "--check", "--spec", str(spec), "--out", str(out)])
    assert r.exit_code == 1
    assert "vector(0.9995)" in r.output


def test_check_fails_on_missing_and_leftover_files(tmp_path):
    spec, out = _workspace(tmp_path)
    (out / "platform.rules.yml").unlink()
    leftover = out / "old.rules.yml"
    leftover.write_text((out / "slos.rules.yml").read_text())
    r = runner.invoke(slo_app, ["generate", "--check", "--spec", str(spec), "--out", str(out)])
    assert r.exit_code == 1
    assert "platform.rules.yml (missing)" in r.output
    assert "old.rules.yml (generated: no longer produced, delete it)" in r.output
    # generate repairs both; a hand-written rule file (no generated header) is left alone
    (out / "mine.rules.yml").write_text("groups: []\n")
    r = runner.invoke(slo_app, ["generate", "--spec", str(spec), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert not leftover.exists() and (out / "platform.rules.yml").exists() and (out / "mine.rules.yml").exists()
    r = runner.invoke(slo_app, ["generate", "--check", "--spec", str(spec), "--out", str(out)])
    assert r.exit_code == 0, r.output


def test_generate_refuses_an_invalid_spec(tmp_path):
    spec, out = _workspace(tmp_path)
    spec.write_text(spec.read_text().replace("objective: 95", "objective: 195"))
    r = runner.invoke(slo_app, ["generate", "--spec", str(spec), "--out", str(out)])
    assert r.exit_code == 2
    assert "slos[5] (reproducibility).objective: Input should be less than 100" in r.output


def test_generate_refuses_an_unfireable_tier(tmp_path):
    spec, out = _workspace(tmp_path)
    before = (out / "slos.rules.yml").read_text()
    # over 90 days the ticket quick factor is 9; with an 80% objective its threshold 9 x 0.2 = 1.8 is unreachable
    spec.write_text(spec.read_text().replace("period: 30d", "period: 90d").replace("objective: 95", "objective: 80"))
    r = runner.invoke(slo_app, ["generate", "--spec", str(spec), "--out", str(out)])
    assert r.exit_code == 2
    assert ("slos[5] (reproducibility): the ticket quick tier (2h/1d, burn factor 9 x error budget 0.2 = 1.8) can "
            "never fire") in r.output
    assert (out / "slos.rules.yml").read_text() == before  # nothing written


def test_generate_refuses_missing_runbooks(tmp_path):
    spec, out = _workspace(tmp_path)
    (out / "runbooks" / "cost-spike.md").unlink()
    r = runner.invoke(slo_app, ["generate", "--spec", str(spec), "--out", str(out)])
    assert r.exit_code == 2
    assert "cost-spike.md does not exist" in r.output


def test_validate_command():
    r = runner.invoke(slo_app, ["validate", "--spec", str(ROOT / "slo/slos.yaml")])
    assert r.exit_code == 0, r.output
    assert ("notebooks/reproducibility: 95% over 30d; page-quick 5m/1h x14.4 (off), page-slow 30m/6h x6 (off), "
            "ticket-quick 2h/1d x3, ticket-slow 6h/3d x1") in r.output


def test_observatory_cli_mounts_slo():
    exe = Path(sys.executable).parent / "observatory"
    r = subprocess.run([str(exe), "slo", "generate", "--check"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_covers_alertmanager_and_the_teams_file(tmp_path):
    spec, out = _workspace(tmp_path)
    (out / "teams.yaml").write_text(routing.teams_text([*routing.load_teams(out / "teams.yaml"), "new-team"]))
    r = runner.invoke(slo_app, ["generate", "--check", "--spec", str(spec), "--out", str(out)])
    assert r.exit_code == 1 and "receiver: team-new-team-tickets" in r.output


def test_teams_command_reads_the_registry(tmp_path):
    from collector.storage import db as dbmod

    db = tmp_path / "o.duckdb"
    con = dbmod.connect(db)
    con.execute("INSERT INTO notebooks (notebook_id, team, updated_at) SELECT id, team, now() FROM (VALUES "
                "('a', 'zeta'), ('b', 'alpha'), ('c', NULL), ('d', 'alpha')) v(id, team)")
    con.close()
    r = runner.invoke(slo_app, ["teams", "--db", str(db), "--out", str(tmp_path / "teams.yaml")])
    assert r.exit_code == 0, r.output
    assert routing.load_teams(tmp_path / "teams.yaml") == ["alpha", "zeta"]
