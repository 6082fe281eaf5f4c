"""alerts/alertmanager.yml (generated from slo/slos.yaml and alerts/teams.yaml by slo/routing.py): rendered from the
environment, valid for the real amtool, routes every alert of ours where the paging policy says (tests/alerts/
policy.py, written apart from the generator), and routes and inhibits in a real Alertmanager.

amtool and alertmanager come from the Debian package `prometheus-alertmanager` (make test installs it): a missing
binary fails these tests.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from slo.alertmanager import render_env_template, template_variables
from tests.alerts.policy import expected_receiver
from tests.support import WebhookSink, free_port

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "alerts" / "alertmanager.yml"
ENV_VARS = ["ALERTMANAGER_DEADMANSSWITCH_URL", "ALERTMANAGER_ONCALL_URL", "ALERTMANAGER_SECURITY_URL",
            "ALERTMANAGER_TEAM_ONCALL_URL", "ALERTMANAGER_TEAM_TICKETS_URL", "ALERTMANAGER_TICKETS_URL",
            "OBSERVATORY_ALERTMANAGER_URL", "OBSERVATORY_INGEST_TOKEN"]


def binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: apt-get install prometheus-alertmanager (make test installs it)"
    return path


def env_for(base: str) -> dict[str, str]:
    return {
        "ALERTMANAGER_ONCALL_URL": f"{base}/oncall",
        "ALERTMANAGER_TICKETS_URL": f"{base}/tickets",
        "ALERTMANAGER_SECURITY_URL": f"{base}/security",
        "ALERTMANAGER_TEAM_ONCALL_URL": f"{base}/team-oncall",
        "ALERTMANAGER_TEAM_TICKETS_URL": f"{base}/team-tickets",
        "ALERTMANAGER_DEADMANSSWITCH_URL": f"{base}/dms",
        "OBSERVATORY_ALERTMANAGER_URL": f"{base}/observatory",
        "OBSERVATORY_INGEST_TOKEN": "obs_test_token",
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("am") / "alertmanager.yml"
    path.write_text(render_env_template(TEMPLATE.read_text(), env_for("http://127.0.0.1:9")))
    return path


def test_template_variables_are_documented():
    text = TEMPLATE.read_text()
    assert template_variables(text) == ENV_VARS
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for var in ENV_VARS:
        assert var in header, f"{var} is not documented in the header"
    assert "pagerduty_configs" in text and "slack_configs" in text  # commented examples


def test_amtool_check_config(rendered):
    r = subprocess.run([binary("amtool"), "check-config", str(rendered)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    # platform on-call, tickets, security, dead man's switch, and on-call + tickets for each of the 6 teams
    assert "SUCCESS" in r.stdout and "16 receivers" in r.stdout and "3 inhibit rules" in r.stdout


def test_render_cli_refuses_missing_variables(tmp_path):
    exe = ROOT / ".venv" / "bin" / "observatory"
    env = {"PATH": "/usr/bin:/bin", **env_for("http://x")}
    env.pop("ALERTMANAGER_SECURITY_URL")
    r = subprocess.run([str(exe), "slo", "render-alertmanager", "--config", str(TEMPLATE), "--out",
                        str(tmp_path / "am.yml")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2
    assert "unset environment variables: ALERTMANAGER_SECURITY_URL" in r.stderr
    assert not (tmp_path / "am.yml").exists()
    env["ALERTMANAGER_SECURITY_URL"] = "http://sec"
    r = subprocess.run([str(exe), "slo", "render-alertmanager", "--config", str(TEMPLATE), "--out",
                        str(tmp_path / "am.yml")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "url: http://sec/" not in (tmp_path / "am.yml").read_text()
    assert "url: http://sec\n" in (tmp_path / "am.yml").read_text()
    assert (tmp_path / "am.yml").stat().st_mode & 0o077 == 0  # holds a token


def routes_test(config: Path, labels: dict[str, str]) -> str:
    r = subprocess.run([binary("amtool"), "config", "routes", "test", f"--config.file={config}",
                        *[f"{k}={v}" for k, v in labels.items()]], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


SLO = {"category": "slo", "sloth_service": "notebooks"}


@pytest.mark.parametrize("labels, receiver", [
    # infrastructure pages wake the platform on-call, whatever the team
    ({**SLO, "alertname": "SchedulerReliabilityBudgetBurn", "severity": "page", "cause": "infra", "team": "platform",
      "sloth_slo": "scheduler-reliability"}, "platform-oncall"),
    ({"alertname": "SLOTrafficAbsent", "severity": "page", "cause": "infra", "team": "platform", **SLO,
      "sloth_slo": "platform-availability"}, "platform-oncall"),
    ({"alertname": "ObservatoryCollectorDown", "severity": "page", "category": "platform", "cause": "infra",
      "team": "platform"}, "platform-oncall"),
    ({"alertname": "NotebookScheduledRunsMissed", "severity": "ticket", "category": "notebook", "cause": "infra",
      "team": "finance"}, "tickets"),
    # user causes: the owning team's tickets; a critical notebook or artifact pages the team's own on-call
    ({**SLO, "alertname": "DataQualityBudgetBurn", "severity": "ticket", "cause": "user", "team": "finance",
      "sloth_slo": "data-quality"}, "team-finance-tickets"),
    ({"alertname": "NotebookConsecutiveFailures", "severity": "page", "category": "notebook", "cause": "user",
      "team": "ml-platform", "notebook": "nb-churn", "owner": "bob"}, "team-ml-platform-oncall"),
    ({"alertname": "CostSpike", "severity": "ticket", "category": "cost", "team": "finance"}, "team-finance-tickets"),
    # severity mapping: `critical` pages; a pure Sloth spec's page has only sloth_severity
    ({"alertname": "SomeCritical", "severity": "critical", "team": "risk"}, "team-risk-oncall"),
    ({"alertname": "SlothPage", "sloth_severity": "page", "sloth_slo": "x", "team": "risk"}, "team-risk-oncall"),
    ({"alertname": "SlothTicket", "sloth_severity": "ticket", "sloth_slo": "x", "team": "risk"}, "team-risk-tickets"),
    # a page of a team nobody registered still wakes someone; nothing is dropped
    ({"alertname": "X", "severity": "page", "team": "nobody"}, "platform-oncall"),
    ({"alertname": "NotebookSecretExposed", "severity": "page", "category": "security", "team": "finance"}, "security"),
    ({"alertname": "Watchdog", "severity": "none", "category": "meta", "team": "platform"}, "deadmansswitch"),
    ({"alertname": "Unlabelled"}, "tickets"),
])
def test_routes(rendered, labels, receiver):
    assert expected_receiver(labels) == receiver  # the policy as written in tests/alerts/policy.py...
    assert routes_test(rendered, labels) == receiver  # ...is what Alertmanager does


def test_every_generated_alert_routes_to_its_receiver(rendered):
    checked = 0
    for name in ("slos.rules.yml", "platform.rules.yml"):
        for g in yaml.safe_load((ROOT / "alerts" / name).read_text())["groups"]:
            for r in g["rules"]:
                if "alert" in r:
                    for team in ("finance", "nobody"):  # a registered team, and one the routes do not know
                        labels = {"alertname": r["alert"], "team": team, **r["labels"]}
                        assert routes_test(rendered, labels) == expected_receiver(labels), labels
                        checked += 1
    assert checked >= 40


def test_grouping_inhibition_and_intervals():
    cfg = yaml.safe_load(TEMPLATE.read_text().replace("${", "").replace("}", ""))
    route = cfg["route"]
    assert route["group_by"] == ["alertname", "sloth_service", "sloth_slo", "team", "notebook"]

    def seconds(d: str) -> int:
        from slo.spec import parse_duration
        return parse_duration(d) // 1000

    routes = route["routes"] + [c for r in route["routes"] for c in r.get("routes", [])]
    for r in routes:
        if r["receiver"].endswith("oncall"):
            assert seconds(r["group_wait"]) <= 60 and 3600 <= seconds(r["repeat_interval"]) <= 12 * 3600
        elif r["receiver"].endswith("tickets"):
            assert seconds(r["repeat_interval"]) >= 12 * 3600
        elif r["receiver"] == "security":
            assert seconds(r["group_wait"]) <= 30
        elif r["receiver"] == "deadmansswitch":
            assert seconds(r["repeat_interval"]) <= 300  # the switch must hear it every few minutes
    inhibit = cfg["inhibit_rules"][0]
    assert inhibit["source_matchers"] == ['severity=~"page|critical"', 'sloth_slo=~".+"']
    assert inhibit["target_matchers"] == ['severity="ticket"', 'sloth_slo=~".+"']
    assert set(inhibit["equal"]) == {"sloth_service", "sloth_slo", "team"}
    # pages are counted by the collector (M13): every paging receiver also posts to it
    for rec in cfg["receivers"]:
        urls = [w["url"] for w in rec["webhook_configs"]]
        assert ("OBSERVATORY_ALERTMANAGER_URL" in urls) == (rec["name"].endswith("oncall") or rec["name"] == "security")


# --- real Alertmanager: routing and inhibition in action ---------------------------------------------------------


def fast_timings(config_text: str) -> str:
    """Our config with every group_wait/group_interval shortened to seconds, nothing else changed."""
    cfg = yaml.safe_load(config_text)

    def shorten(route: dict) -> None:
        for key, value in (("group_wait", "1s"), ("group_interval", "1s"), ("repeat_interval", "1h")):
            if key in route:
                route[key] = value
        for child in route.get("routes", []):
            shorten(child)

    shorten(cfg["route"])
    return yaml.safe_dump(cfg, sort_keys=False)


def start_alertmanager(tmp_path: Path, config_text: str) -> tuple[subprocess.Popen, str]:
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(config_text)
    port = free_port()
    proc = subprocess.Popen(
        [binary("prometheus-alertmanager"), f"--config.file={cfg}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "alertmanager.log", "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("alertmanager did not become ready: " + (tmp_path / "alertmanager.log").read_text())


def test_real_alertmanager_routes_and_inhibits(tmp_path):
    sink = WebhookSink()
    config = fast_timings(render_env_template(TEMPLATE.read_text(), env_for(sink.url)))
    proc, am = start_alertmanager(tmp_path, config)
    try:
        now = datetime.now(timezone.utc)
        infra = {"sloth_service": "notebooks", "sloth_slo": "scheduler-reliability", "category": "slo",
                 "alertname": "SchedulerReliabilityBudgetBurn", "cause": "infra", "team": "platform"}
        user = {"sloth_service": "notebooks", "sloth_slo": "data-quality", "category": "slo",
                "alertname": "DataQualityBudgetBurn", "cause": "user"}
        alerts = [
            {**infra, "severity": "page", "sloth_severity": "page"},
            {**infra, "severity": "ticket", "sloth_severity": "ticket"},  # inhibited by the page
            {**user, "severity": "ticket", "sloth_severity": "ticket", "team": "finance"},
            {"alertname": "NotebookSecretExposed", "severity": "page", "category": "security", "team": "risk"},
            {"alertname": "Watchdog", "severity": "none", "category": "meta", "team": "platform"},
        ]
        body = [{"labels": labels, "annotations": {"summary": labels["alertname"]},
                 "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat()} for labels in alerts]
        assert httpx.post(f"{am}/api/v2/alerts", json=body, timeout=5).status_code == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                sink.alerts("/oncall") and sink.alerts("/team-tickets/finance") and sink.alerts("/security")
                and sink.alerts("/dms") and len(sink.alerts("/observatory")) >= 2):
            time.sleep(0.2)
        time.sleep(2)  # a wrongly routed or uninhibited notification would have arrived by now
        assert {a["labels"]["alertname"] for a in sink.alerts("/oncall")} == {"SchedulerReliabilityBudgetBurn"}
        assert {a["labels"]["alertname"] for a in sink.alerts("/team-tickets/finance")} == {"DataQualityBudgetBurn"}
        assert not sink.alerts("/tickets")  # the infra ticket is inhibited by its page
        assert {a["labels"]["alertname"] for a in sink.alerts("/security")} == {"NotebookSecretExposed"}
        assert {a["labels"]["alertname"] for a in sink.alerts("/dms")} == {"Watchdog"}
        counted = sink.alerts("/observatory")
        assert {a["labels"]["alertname"] for a in counted} == {"SchedulerReliabilityBudgetBurn", "NotebookSecretExposed"}
        assert all(a["fingerprint"] and a["startsAt"] for a in counted)
        auth = {h.get("Authorization") for p, h in sink.headers if p == "/observatory"}
        assert auth == {"Bearer obs_test_token"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        sink.server.shutdown()
