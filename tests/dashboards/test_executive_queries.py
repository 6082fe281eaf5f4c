"""The executive dashboard's SLO panels compute what they say, checked by promtool on hand-made series:

- "Scheduled run success, SLO scope (30d)" is the scheduled-run-success SLO's own scope (its recording rules,
  weighted by traffic over the teams), not the all-trigger M1 gauge;
- "SLO attainment against objective" lists every SLO's period attainment next to its objective;
- the cost panels' JSON-API URLs follow $team and $billing_period.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import yaml

from collector import conventions as C
from dashboards import build, lint

EVAL = "10m"


def _panel(d: dict, pid: int) -> dict:
    (p,) = [p for p in lint.data_panels(d) if p["id"] == pid]
    return p


def _eval(expr: str, series: list[tuple[str, float]], tmp) -> dict[str, float]:
    """Evaluate `expr` at 10m over constant series with promtool; returns {labels text: value}."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus; `make test` installs it)"
    test = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": [{"series": s, "values": f"{v!r}x10"} for s, v in series],
        "promql_expr_test": [{"expr": expr, "eval_time": EVAL, "exp_samples": []}]}]}
    path = tmp / "t.yml"
    path.write_text(yaml.safe_dump(test))
    r = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert "got:" in out, out
    got_line = out.split("got:", 1)[1].strip()
    if got_line.startswith("nil"):
        return {}
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"(\{[^}]*\}) ([-+0-9.eE]+)", got_line)}


def _slo_series(slo: str, team: str, err: float, tot: float) -> list[tuple[str, float]]:
    labels = f'sloth_id="notebooks-{slo}", sloth_service="notebooks", sloth_slo="{slo}", team="{team}"'
    return [(f"{C.sli_error_events('5m')}{{{labels}, sloth_window=\"5m\"}}", err),
            (f"{C.sli_total_events('5m')}{{{labels}, sloth_window=\"5m\"}}", tot)]


def test_scheduled_run_success_shows_the_slo_scope_weighted_by_traffic(tmp_path):
    d = json.loads(build.render_dashboard("executive"))
    (t,) = _panel(d, 205)["targets"]
    assert C.SLI_RATIO not in t["expr"]  # not the all-trigger, all-environment M1 gauge
    series = (_slo_series("scheduled-run-success", "a", 0.1, 10.0) + _slo_series("scheduled-run-success", "b", 1.0, 2.0)
              + _slo_series("kernel-stability", "a", 5.0, 5.0))  # another SLO must not count
    got = _eval(lint.expand(t["expr"], {"team": "a|b"}), series, tmp_path)
    # traffic-weighted: 1 - (0.1 + 1.0) / (10 + 2), not the mean of the teams' ratios
    assert list(got.values()) == [1 - 1.1 / 12.0] or abs(list(got.values())[0] - (1 - 1.1 / 12.0)) < 1e-12
    only_a = _eval(lint.expand(t["expr"], {"team": "a"}), series, tmp_path)
    assert abs(list(only_a.values())[0] - (1 - 0.1 / 10.0)) < 1e-12


def test_slo_attainment_table_lists_each_slo_with_its_objective(tmp_path):
    d = json.loads(build.render_dashboard("executive"))
    p = _panel(d, 208)
    att, obj = p["targets"]
    series = (_slo_series("scheduled-run-success", "a", 0.1, 10.0) + _slo_series("scheduled-run-success", "b", 1.0, 2.0)
              + _slo_series("kernel-stability", "a", 0.5, 100.0)
              + [(f'{C.OBJECTIVE_RATIO}{{sloth_slo="scheduled-run-success", sloth_id="x"}}', 0.99),
                 (f'{C.OBJECTIVE_RATIO}{{sloth_slo="kernel-stability", sloth_id="y"}}', 0.995)])
    got = _eval(lint.expand(att["expr"], {"team": ".*"}), series, tmp_path)
    assert {k: round(v, 12) for k, v in got.items()} == {
        '{sloth_slo="kernel-stability"}': round(1 - 0.5 / 100.0, 12),
        '{sloth_slo="scheduled-run-success"}': round(1 - 1.1 / 12.0, 12)}
    objectives = _eval(obj["expr"], series, tmp_path)
    assert objectives == {'{sloth_slo="kernel-stability"}': 0.995, '{sloth_slo="scheduled-run-success"}': 0.99}
    names = p["transformations"][1]["options"]["renameByName"]
    assert names["Value #A"] == "Attainment" and names["Value #B"] == "Objective"


def test_cost_api_panels_follow_team_and_billing_period():
    d = json.loads(build.render_dashboard("executive"))
    cost = [(p, t) for p, _, t in lint.api_targets(d) if t["url"].startswith("/v1/cost/")]
    assert len(cost) >= 6
    for p, t in cost:
        assert "team=${team:csv}" in t["url"], (p["title"], t["url"])
        if not t["url"].startswith("/v1/cost/trend"):
            assert "month=${billing_period}" in t["url"], (p["title"], t["url"])
    titles = {p["title"] for p, _ in cost}
    assert "Cost trend by month" in titles and "Month over month" in titles
