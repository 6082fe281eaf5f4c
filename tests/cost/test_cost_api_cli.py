"""Cost over HTTP (read scope, team-scoped tokens), the CLI commands, the Prometheus gauges."""
from __future__ import annotations

import io
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import auth  # noqa: E402
from fixtures.cost import cur_gen  # noqa: E402
from fixtures.cost.util import DATA, add_runs, focus_line, write_focus_csv  # noqa: E402

from cost.store import record_sync
from cost import budget, db as cost_db, ingest, metrics  # noqa: E402
from cost.cli import billing_app, report_app  # noqa: E402
from cost.config import load_settings  # noqa: E402

NOW = datetime.now(timezone.utc)
MONTH = budget.previous_month(budget.current_month(NOW))  # the last closed month: whole months, any day of the year
PREV = budget.previous_month(MONTH)
IN_MONTH = datetime(int(MONTH[:4]), int(MONTH[5:]), 20, 12, tzinfo=timezone.utc)  # "now" for the gauges


def day(month: str, d: int, h: int = 10) -> str:
    return f"{month}-{d:02d} {h:02d}:00:00"


def seed(con, tmp: Path) -> None:
    add_runs(con, [
        {"run_id": "r1", "notebook_id": "nb-f", "team": "finance", "started_at": day(MONTH, 1),
         "ended_at": day(MONTH, 1, 11)},
        {"run_id": "r2", "notebook_id": "nb-m", "team": "ml", "started_at": day(MONTH, 1),
         "ended_at": day(MONTH, 1, 11)},
    ])
    rows = [focus_line("4.00", day(MONTH, 1), day(MONTH, 1, 11), {"run_id": "r1"}),
            focus_line("6.00", day(MONTH, 1), day(MONTH, 1, 11), {"notebook_id": "nb-m"}),
            focus_line("1.00", day(MONTH, 1), day(MONTH, 1, 11)),
            focus_line("5.00", day(PREV, 3), day(PREV, 3, 11), {"team": "finance"}),
            focus_line("2.00", day(PREV, 3), day(PREV, 3, 11), {"team": "ml"})]
    ingest.import_files(con, [write_focus_csv(tmp / "lines.csv", rows)], "focus")


@pytest.fixture
def api(make_client, db_path, tmp_path):
    con = cost_db.connect(db_path)
    seed(con, tmp_path)
    con.close()
    return make_client()


def test_http_summary_and_team_scope(api):
    assert api.get("/v1/cost/summary").status_code == 401
    r = api.get(f"/v1/cost/summary?month={MONTH}", headers=auth("read"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert Decimal(body["summary"]["total_cost"]) == Decimal("11")
    assert Decimal(body["summary"]["previous_total_cost"]) == Decimal("7")
    teams = {t["key"]: Decimal(t["cost"]) for t in body["by_team"]}
    assert teams == {"finance": Decimal("4"), "ml": Decimal("6"), "__unallocated__": Decimal("1")}
    # a team-scoped token sees its team only, no invoices, no unallocated
    r = api.get(f"/v1/cost/summary?month={MONTH}", headers=auth("team_read"))
    body = r.json()
    assert {t["key"] for t in body["by_team"]} == {"finance"} and body["invoices"] == []
    assert Decimal(body["summary"]["total_cost"]) == Decimal("4")
    assert api.get(f"/v1/cost/summary?month={MONTH}&team=ml", headers=auth("team_read")).status_code == 403
    assert api.get("/v1/cost/summary?month=2024-13", headers=auth("read")).status_code == 422


def test_http_runs_variance_budgets_report_sync(api):
    h = auth("read")
    runs = api.get(f"/v1/cost/runs?month={MONTH}", headers=h).json()
    assert {i["run_id"]: Decimal(i["cost"]) for i in runs["items"]} == {"r1": Decimal("4"), "r2": Decimal("6")}
    var = api.get(f"/v1/cost/variance?month={MONTH}", headers=h).json()
    fin = next(t for t in var["teams"] if t["key"] == "finance")
    assert Decimal(fin["change"]) == Decimal("-1") and fin["change_ratio"] == pytest.approx(-0.2)
    assert api.get(f"/v1/cost/budgets?month={MONTH}", headers=h).status_code == 200
    r = api.get(f"/v1/cost/report?month={MONTH}&format=xlsx", headers=h)
    assert r.status_code == 200 and r.content[:2] == b"PK"
    r = api.get(f"/v1/cost/report?month={MONTH}&format=csv&by=notebook", headers=auth("team_read"))
    df = pl.read_csv(io.BytesIO(r.content))
    assert df["Notebook"].to_list() == ["nb-f", "(no notebook)"]  # last month's team-only line
    r = api.get(f"/v1/cost/report?month={MONTH}&format=focus", headers=h)
    assert r.status_code == 200 and r.content[:4] == b"PAR1"
    s = api.get("/v1/cost/sync", headers=h).json()
    assert s["sources"][0]["source"] == "focus" and s["partitions"][0]["lines"] == 5


def test_cost_metrics_gauges(db_path, tmp_path):
    con = cost_db.connect(db_path)
    seed(con, tmp_path)
    s = load_settings(budgets={"finance": Decimal("50")})
    fams = {f.name: f for f in metrics.cost_metrics(con.cursor(), s, now=IN_MONTH)}
    samples = {(f.name, tuple(sorted(x.labels.items()))): x.value for f in fams.values() for x in f.samples}
    assert samples[("notebook_cost_usd", (("allocation", "direct"), ("billing_period", MONTH),
                                          ("team", "finance")))] == 4.0
    assert samples[("notebook_cost_usd", (("allocation", "proportional"), ("billing_period", MONTH),
                                          ("team", "ml")))] == 6.0
    assert samples[("notebook_cost_usd", (("allocation", "unallocated"), ("billing_period", MONTH),
                                          ("team", "__unallocated__")))] == 1.0
    assert samples[("notebook_cost_per_run_usd", (("team", "finance"),))] == 4.0
    assert samples[("notebook_cost_budget_usd", (("team", "finance"),))] == 50.0
    fc = samples[("notebook_cost_forecast_usd", (("team", "finance"),))]
    assert fc >= 4.0
    # month to date (to the 20th) over the previous month to the same point: 4 / 5 (the line of the 3rd)
    assert samples[("notebook_cost_month_over_month_ratio", (("team", "finance"),))] == pytest.approx(4.0 / 5.0)
    assert ("notebook_cost_month_over_month_ratio", (("team", "__unallocated__"),)) not in samples  # no prev
    syncs = {dict(k[1])["target"]: v for k, v in samples.items()
             if k[0] == "observatory_billing_last_sync_timestamp_seconds" and dict(k[1])["source"] == "focus"}
    assert len(syncs) == 1 and abs(next(iter(syncs.values())) - datetime.now(timezone.utc).timestamp()) < 600
    # per target: a failed sync keeps the last success; a target that never synced is 0 (stale from the start)
    target = next(iter(syncs))
    record_sync(con, "focus", target, "error", "boom")
    record_sync(con, "aws-cur", "s3://never/ok", "error", "denied")
    fams = {f.name: f for f in metrics.cost_metrics(con.cursor(), s, now=NOW)}
    after = {(x.labels["source"], x.labels["target"]): x.value
             for x in fams["observatory_billing_last_sync_timestamp_seconds"].samples}
    assert after == {("focus", target): syncs[target], ("aws-cur", "s3://never/ok"): 0.0}


def test_cli_import_dry_run_report(tmp_path):
    dbf = tmp_path / "o.duckdb"
    runner = CliRunner()
    f = str(DATA / "focus" / "focus_sample_1.0.csv")
    r = runner.invoke(billing_app, ["import", "--format", "focus", "--db", str(dbf), "--dry-run", f])
    assert r.exit_code == 0, r.output
    assert "would change" in r.output and "inserted" in r.output
    r = runner.invoke(billing_app, ["import", "--format", "focus", "--db", str(dbf), f])
    assert r.exit_code == 0 and "4 partition(s) changed" in r.output, r.output
    r = runner.invoke(billing_app, ["import", "--format", "focus", "--db", str(dbf), f])
    assert "0 partition(s) changed, 4 unchanged" in r.output, r.output
    r = runner.invoke(billing_app, ["import", "--format", "aws-cur", "--db", str(dbf), f])
    assert r.exit_code == 1 and "not an AWS CUR file" in r.output
    legacy = cur_gen.write_legacy_csv(cur_gen.amortisation_rows("2024-09"), tmp_path / "cur.csv")
    assert runner.invoke(billing_app, ["import", "-f", "aws-cur", "--db", str(dbf), str(legacy)]).exit_code == 0
    for fmt in ("csv", "parquet", "xlsx", "html", "focus"):
        out = tmp_path / f"r.{ 'parquet' if fmt == 'focus' else fmt}"
        r = runner.invoke(report_app, ["cost", "--month", "2024-09", "--by", "service", "--format", fmt,
                                       "--out", str(out), "--db", str(dbf)])
        assert r.exit_code == 0 and out.exists(), r.output
    r = runner.invoke(report_app, ["cost", "--month", "09-2024", "--out", str(tmp_path / "r.csv"),
                                   "--db", str(dbf)])
    assert r.exit_code == 1 and "YYYY-MM, e.g. 2026-11; got '09-2024'" in r.output
    r = runner.invoke(billing_app, ["status", "--db", str(dbf)])
    assert r.exit_code == 0 and "partitions" in r.output and "aws-cur" in r.output


def test_cli_sync_commands_reject_bad_input(tmp_path):
    runner = CliRunner()
    r = runner.invoke(billing_app, ["sync", "gcp", "--table", "nodots", "--db", str(tmp_path / "x.duckdb")])
    assert r.exit_code == 1 and "PROJECT.DATASET.TABLE" in r.output


def test_old_and_new_runs_window_unused():
    # sanity for the helpers above: the seeded months are the last closed one and the one before
    assert PREV < MONTH < budget.current_month(NOW) and (NOW - timedelta(days=70)).strftime("%Y-%m") <= PREV


def test_report_format_follows_the_extension_and_a_conflict_is_an_error(tmp_path):
    dbf = tmp_path / "o.duckdb"
    runner = CliRunner()
    legacy = cur_gen.write_legacy_csv(cur_gen.amortisation_rows("2024-09"), tmp_path / "cur.csv")
    assert runner.invoke(billing_app, ["import", "-f", "aws-cur", "--db", str(dbf), str(legacy)]).exit_code == 0
    xlsx = tmp_path / "report.xlsx"
    r = runner.invoke(report_app, ["cost", "--month", "2024-09", "--out", str(xlsx), "--db", str(dbf)])
    assert r.exit_code == 0, r.output
    assert xlsx.read_bytes()[:2] == b"PK"  # a workbook, not HTML in an .xlsx
    html_out = tmp_path / "report.html"
    assert runner.invoke(report_app, ["cost", "--month", "2024-09", "--out", str(html_out), "--db", str(dbf)]
                         ).exit_code == 0
    assert html_out.read_text().startswith("<!DOCTYPE html>")
    r = runner.invoke(report_app, ["cost", "--month", "2024-09", "--format", "html", "--out", str(xlsx),
                                   "--db", str(dbf)])
    assert r.exit_code == 1 and "--format html does not match --out report.xlsx" in r.output
    r = runner.invoke(report_app, ["cost", "--month", "2024-09", "--out", str(tmp_path / "report"), "--db", str(dbf)])
    assert r.exit_code == 1 and "cannot tell the format" in r.output
    focus_csv = tmp_path / "focus.csv"
    assert runner.invoke(report_app, ["cost", "--month", "2024-09", "--format", "focus", "--out", str(focus_csv),
                                      "--db", str(dbf)]).exit_code == 0
    assert focus_csv.read_text().startswith("AvailabilityZone") or "BilledCost" in focus_csv.read_text()[:2000]


def test_read_commands_refuse_a_database_that_does_not_exist(tmp_path):
    runner = CliRunner()
    missing = tmp_path / "typo" / "observatory.duckdb"
    for app_, args in ((report_app, ["cost", "--month", "2024-09", "--out", str(tmp_path / "r.html")]),
                       (billing_app, ["status"]), (billing_app, ["allocate"])):
        r = runner.invoke(app_, [*args, "--db", str(missing)])
        assert r.exit_code == 2 and f"no database at {missing}" in r.output, r.output
        assert "Traceback" not in r.output
    assert not missing.exists() and not missing.parent.exists()
    assert not (tmp_path / "r.html").exists()


def test_http_unknown_team_is_404_and_bad_month_a_sentence(api):
    h = auth("read")
    r = api.get(f"/v1/cost/summary?month={MONTH}&team=no-such-team", headers=h)
    assert r.status_code == 404 and "unknown team 'no-such-team'; known teams: finance, ml" in r.json()["detail"]
    r = api.get("/v1/cost/variance?month=2024-13", headers=h)
    assert r.status_code == 422 and r.json()["detail"] == "month must be a billing month from 1970-01 to 2199-12 " \
        "written YYYY-MM, e.g. 2026-11; got '2024-13'"
    r = api.get(f"/v1/cost/report?month={MONTH}&format=pdf", headers=h)
    assert r.status_code == 422 and "format must be one of html, csv" in r.json()["detail"]
    body = api.get("/v1/cost/summary?month=2019-01", headers=h).json()
    assert any(n.startswith("No billing data for 2019-01") for n in body["notes"])


def test_variance_says_which_periods_it_compares(api):
    var = api.get(f"/v1/cost/variance?month={MONTH}", headers=auth("read")).json()
    assert var["current_period"]["complete"] and "whole month" in var["current_period"]["label"]
    assert var["previous_period"]["month"] == PREV
    cur = api.get("/v1/cost/variance", headers=auth("read")).json()  # default: the running month, like for like
    now = datetime.now(timezone.utc)
    assert cur["current_period"]["month"] == budget.current_month(now)
    assert cur["current_period"]["days_covered"] == now.day and not cur["current_period"]["complete"]
    assert f"{now.day} of " in cur["current_period"]["label"]


def test_report_cost_url_asks_the_running_collector(tmp_path):
    """`report cost --url` gives the file the local report gives; without a token it says how to pass one."""
    import subprocess

    from tests.support import OBSERVATORY, Collector, create_token

    dbf = tmp_path / "o.duckdb"
    con = cost_db.connect(dbf)
    seed(con, tmp_path)
    con.close()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OBSERVATORY_")}
    local = tmp_path / "local.csv"
    r = subprocess.run([OBSERVATORY, "report", "cost", "--month", MONTH, "--db", str(dbf), "--out", str(local)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    tokens = tmp_path / "tokens.yaml"
    tok = create_token(tokens, "fin", "read")
    col = Collector(dbf, tokens_file=tokens, token=tok).start()
    try:
        remote = tmp_path / "remote.csv"
        r = subprocess.run([OBSERVATORY, "report", "cost", "--month", MONTH, "--url", col.url, "--out", str(remote)],
                           capture_output=True, text=True, timeout=120, env=env | {"OBSERVATORY_TOKEN": tok})
        assert r.returncode == 0, r.stderr + r.stdout
        assert remote.read_text() == local.read_text()
        assert "Team,This month,Previous month" in remote.read_text()
        r = subprocess.run([OBSERVATORY, "report", "cost", "--url", col.url, "--out", str(tmp_path / "x.csv")],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 1 and "--token" in r.stdout + r.stderr and "OBSERVATORY_TOKEN" in r.stdout + r.stderr
        # while the collector runs, the local path says to use --url in one line
        r = subprocess.run([OBSERVATORY, "report", "cost", "--db", str(dbf), "--out", str(tmp_path / "y.csv")],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 2 and "--url" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr
    finally:
        col.stop()
