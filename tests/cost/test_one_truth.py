"""One truth: at one `as_of`, month-over-month cost and cost per run are the same figure on every surface.

Month over month, for every allocated team and the platform: GET /v1/cost/variance (`change_ratio`), GET /v1/sli
M10, the gauge `notebook_cost_month_over_month_ratio` (- 1), the report (JSON summary and the CSV a person opens)
and the executive dashboard's queries (the per-team bar gauge's PromQL evaluated by promtool on the gauge's
samples; the platform stat's and the trend's JSON-API URLs with the dashboard's variables). Cost per run: SLI M4
equals the mean of GET /v1/cost/runs costs over the same runs. Data: the demo platform (runs and billing) in the
previous month, to the same day, and in the running month at AS_OF; an independent sum over the billing lines
checks the current and previous totals.
"""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import yaml

from collector import conventions as C
from cost import metrics as cost_metrics_mod
from cost import variance
from cost.config import load_settings
from dashboards import build, lint
from tests.conftest import auth

AS_OF = datetime(2026, 3, 2, 9, 41, 17, tzinfo=timezone.utc)  # MTD: 2 of 31 days
PREV_CUT = datetime(2026, 2, 2, 9, 41, 17, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A collector (in process) over a database with demo history around both cuts, and the answers of every
    surface at AS_OF."""
    from fastapi.testclient import TestClient

    from collector.app import create_app
    from collector.demo import platform as demo
    from collector.settings import Settings
    from tests.conftest import token_store

    db = tmp_path_factory.mktemp("truth") / "o.duckdb"
    demo.backfill(db, days=3, end=PREV_CUT + timedelta(hours=6))  # the previous month, around the same day
    demo.backfill(db, days=2, end=AS_OF)  # the running month
    client = TestClient(create_app(Settings(db=db, gauge_refresh_seconds=3600), tokens=token_store()))
    client.__enter__()
    yield client
    client.__exit__(None, None, None)


def _get(client, path: str, **params) -> dict:
    r = client.get(path, params={**params, "as_of": AS_OF.isoformat()}, headers=auth("read"))
    assert r.status_code == 200, r.text
    return r.json()


def _independent(client) -> tuple[Decimal, Decimal]:
    """Current and previous period totals straight from the billing lines (no allocation)."""
    with client.app.state.store.read_cursor() as cur:
        q = ('SELECT sum("EffectiveCost") FROM cost_line_items WHERE x_billing_month = ? '
             'AND "ChargePeriodStart" < ?')
        return (cur.execute(q, ["2026-03", AS_OF]).fetchone()[0],
                cur.execute(q, ["2026-02", PREV_CUT]).fetchone()[0])


def test_month_over_month_is_one_figure_on_every_surface(world, tmp_path):
    client = world
    var = _get(client, "/v1/cost/variance")
    assert var["current_period"]["label"].startswith("2026-03 MTD, 2 of 31 days")
    assert var["previous_period"]["to"] == PREV_CUT.isoformat()
    teams = {t["key"]: t for t in var["teams"] if t["change_ratio"] is not None}
    assert len(teams) >= 5 and C.UNALLOCATED in teams
    cur_total, prev_total = _independent(client)
    assert sum(Decimal(t["cost"]) for t in var["teams"]) == cur_total
    assert sum(Decimal(t["previous_cost"]) for t in var["teams"]) == prev_total
    platform = float((cur_total - prev_total) / prev_total)

    # SLI M10, per team and for the platform
    rows = _get(client, "/v1/sli", sli="M10", window="1d", level="platform,team")["slis"]
    m10 = {r["team"]: r["value"] for r in rows}
    assert m10.pop(None) == pytest.approx(platform, rel=1e-9)
    assert m10 == pytest.approx({k: t["change_ratio"] for k, t in teams.items()}, rel=1e-9)

    # the gauge the refresher exports (the same function, at the same moment)
    with client.app.state.store.read_cursor() as cur:
        fams = cost_metrics_mod.cost_metrics(cur, load_settings(), now=AS_OF)
    gauge = {s.labels["team"]: s.value for f in fams if f.name == C.COST_MOM_RATIO for s in f.samples}
    assert {k: v - 1 for k, v in gauge.items()} == pytest.approx({k: t["change_ratio"] for k, t in teams.items()},
                                                                rel=1e-9)

    # the report: JSON summary (platform) and the CSV people open (percent, two decimals)
    summary = _get(client, "/v1/cost/summary", month="2026-03")
    assert summary["summary"]["change_ratio"] == pytest.approx(platform, rel=1e-9)
    assert "2 of 31 days" in summary["summary"]["period"]
    r = client.get("/v1/cost/report", params={"month": "2026-03", "format": "csv", "as_of": AS_OF.isoformat()},
                   headers=auth("read"))
    table = {row["Team"]: row for row in csv.DictReader(io.StringIO(r.text))}
    for key, t in teams.items():
        row = table["Unallocated" if key == C.UNALLOCATED else key]
        assert float(row["Change %"]) == pytest.approx(round(t["change_ratio"] * 100, 2), abs=0.006)

    # the executive dashboard
    d = json.loads(build.render_dashboard("executive"))
    exprs = [t["expr"] for _, _, t in lint.prom_targets(d) if C.COST_MOM_RATIO in t["expr"]]
    assert exprs, "no dashboard panel shows the month-over-month gauge"
    for expr in exprs:
        got = _promtool_eval(lint.expand(expr, {"team": ".*"}), gauge, tmp_path)
        assert got == pytest.approx({k: t["change_ratio"] for k, t in teams.items()}, rel=1e-9)
    api = {t["url"]: t for _, _, t in lint.api_targets(d)}
    all_teams = ",".join(sorted(k for k in teams if k != C.UNALLOCATED))
    expand = lambda url: (url.replace("${billing_period}", "2026-03").replace("${team:csv}", all_teams)  # noqa
                          + "&as_of=" + AS_OF.strftime("%Y-%m-%dT%H:%M:%SZ"))
    mom_urls = [u for u, t in api.items() if any(c["selector"] == "change_ratio" for c in t["columns"])
                and t["root_selector"] == "summary"]
    assert mom_urls
    for url in mom_urls:
        body = client.get(expand(url), headers=auth("read")).json()
        assert "summary" in body, (expand(url), body)
        assert body["summary"]["change_ratio"] == pytest.approx(platform, rel=1e-9)
    (trend_url,) = [u for u in api if u.startswith("/v1/cost/trend")]
    body = client.get(expand(trend_url), headers=auth("read")).json()
    this_month = {i["team"]: Decimal(i["cost"]) for i in body["items"] if i["month"] == "2026-03"}
    assert this_month == {k: Decimal(t["cost"]) for k, t in teams.items()}


def _promtool_eval(expr: str, gauge: dict[str, float], tmp) -> dict[str, float]:
    """Evaluate `expr` with promtool over the gauge's samples; returns team -> value (read back from promtool's
    own failure message, which prints what the expression gave)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus; `make test` installs it)"
    series = [{"series": f'{C.COST_MOM_RATIO}{{job="observatory", team="{team}"}}', "values": f"{v!r}x3"}
              for team, v in sorted(gauge.items())]
    test = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [{"expr": expr, "eval_time": "1m", "exp_samples": []}]}]}
    path = tmp / "t.yml"
    path.write_text(yaml.safe_dump(test))
    r = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "got:" in r.stdout + r.stderr, r.stdout + r.stderr  # no expectation: it lists
    got = {}
    for m in re.finditer(r'team="([^"]+)"\} ([-+0-9.eE]+)', r.stdout + r.stderr):  # got: {job=…, team="a"} 2.3E-01
        got[m.group(1)] = float(m.group(2))
    assert got, r.stdout + r.stderr
    return got


def test_cost_per_run_m4_is_the_mean_of_the_runs_costs(world):
    client = world
    runs = _get(client, "/v1/cost/runs", month="2026-03", limit=10000)
    assert runs["runs"] == len(runs["items"]) > 20
    proportional = [i for i in runs["items"] if Decimal(i["proportional"]) > 0]
    assert proportional, "the demo spreads notebook- and team-tagged lines over runs"
    cost = {i["run_id"]: Decimal(i["cost"]) for i in runs["items"]}
    assert all(Decimal(i["cost"]) == Decimal(i["direct"]) + Decimal(i["proportional"]) for i in runs["items"])
    # the runs whose last attempt ended in M4's window, with allocated cost
    with client.app.state.store.read_cursor() as cur:
        ended = dict(cur.execute(
            "SELECT run_id, coalesce(arg_max(team, ended_at), 'unknown') FROM run_attempts "
            "WHERE ended_at IS NOT NULL GROUP BY run_id HAVING max(ended_at) >= ? AND max(ended_at) < ?",
            [AS_OF - timedelta(days=1), AS_OF]).fetchall())
    same = {r: c for r, c in cost.items() if r in ended}
    assert len(same) > 10
    rows = _get(client, "/v1/sli", sli="M4", window="1d", level="platform,team")["slis"]
    m4 = {r["team"]: (r["value"], r["total"]) for r in rows}
    assert m4[None][1] == len(same)
    assert m4[None][0] == pytest.approx(float(sum(same.values()) / len(same)), rel=1e-9)
    for team in {ended[r] for r in same}:
        mine = [c for r, c in same.items() if ended[r] == team]
        assert m4[team] == (pytest.approx(float(sum(mine) / len(mine)), rel=1e-9), len(mine))
    # the period helper the surfaces share says what it compared
    cur_p, prev_p = variance.periods("2026-03", AS_OF)
    assert (cur_p.days_covered, cur_p.days_in_month, prev_p.cut) == (2, 31, PREV_CUT)
