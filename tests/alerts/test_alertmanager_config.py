"""alerts/alertmanager.yml: rendered from the environment, valid for the real amtool, routes every alert of ours to
the intended receiver, and inhibits a ticket under a page of the same SLO in a real Alertmanager.

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
from tests.support import WebhookSink, free_port

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "alerts" / "alertmanager.yml"
ENV_VARS = ["ALERTMANAGER_ONCALL_URL", "ALERTMANAGER_SECURITY_URL", "ALERTMANAGER_TICKETS_URL",
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
    assert "SUCCESS" in r.stdout and "3 receivers" in r.stdout and "2 inhibit rules" in r.stdout


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


@pytest.mark.parametrize("labels, receiver", [
    ({"alertname": "ScheduledRunSuccessBudgetBurn", "severity": "page", "category": "slo", "team": "data",
      "sloth_service": "notebooks", "sloth_slo": "scheduled-run-success"}, "oncall"),
    ({"alertname": "ScheduledRunSuccessBudgetBurn", "severity": "ticket", "category": "slo", "team": "data",
      "sloth_service": "notebooks", "sloth_slo": "scheduled-run-success"}, "tickets"),
    ({"alertname": "NotebookConsecutiveFailures", "severity": "page", "category": "notebook", "team": "ml",
      "notebook": "nb-churn", "owner": "bob"}, "oncall"),
    ({"alertname": "PlatformAvailabilityBudgetBurn", "severity": "page", "category": "slo", "team": "platform"},
     "oncall"),
    ({"alertname": "ObservatoryCollectorDown", "severity": "page", "category": "platform", "team": "platform"},
     "oncall"),
    ({"alertname": "ObservatoryDeadLettersGrowing", "severity": "ticket", "category": "platform",
      "team": "platform"}, "tickets"),
    ({"alertname": "CostSpike", "severity": "ticket", "category": "cost", "team": "finance"}, "tickets"),
    ({"alertname": "NotebookSecretExposed", "severity": "page", "category": "security", "team": "data"}, "security"),
    ({"alertname": "NotebookSecretExposed", "severity": "page", "category": "security", "team": "ml"}, "security"),
    ({"alertname": "SomethingSecurity", "severity": "ticket", "category": "security", "team": "ml"}, "security"),
    ({"alertname": "Unlabelled"}, "tickets"),  # nothing is dropped
])
def test_routes(rendered, labels, receiver):
    assert routes_test(rendered, labels) == receiver


def _expected_receiver(labels: dict[str, str]) -> str:
    if labels.get("category") == "security":
        return "security"
    return {"page": "oncall", "ticket": "tickets"}[labels["severity"]]


def test_every_generated_alert_routes_to_its_receiver(rendered):
    checked = 0
    for name in ("slos.rules.yml", "platform.rules.yml"):
        for g in yaml.safe_load((ROOT / "alerts" / name).read_text())["groups"]:
            for r in g["rules"]:
                if "alert" in r:
                    labels = {"alertname": r["alert"], "team": "data", **r["labels"]}
                    assert routes_test(rendered, labels) == _expected_receiver(labels), labels
                    checked += 1
    assert checked >= 20


def test_grouping_inhibition_and_intervals():
    cfg = yaml.safe_load(TEMPLATE.read_text().replace("${", "").replace("}", ""))
    route = cfg["route"]
    assert route["group_by"] == ["alertname", "sloth_service", "sloth_slo", "team", "notebook"]
    by_receiver = {r["receiver"]: r for r in route["routes"]}

    def seconds(d: str) -> int:
        from slo.spec import parse_duration
        return parse_duration(d) // 1000

    page, ticket = by_receiver["oncall"], by_receiver["tickets"]
    assert seconds(page["group_wait"]) <= 60 and 3600 <= seconds(page["repeat_interval"]) <= 12 * 3600
    assert seconds(ticket["repeat_interval"]) >= 12 * 3600
    assert seconds(by_receiver["security"]["group_wait"]) <= 30
    inhibit = cfg["inhibit_rules"][0]
    assert inhibit["source_matchers"] == ['severity="page"', 'sloth_slo=~".+"']
    assert inhibit["target_matchers"] == ['severity="ticket"', 'sloth_slo=~".+"']
    assert set(inhibit["equal"]) == {"sloth_service", "sloth_slo", "team"}
    # pages are counted by the collector (M13): both paging receivers also post to it
    for name in ("oncall", "security"):
        rec = next(r for r in cfg["receivers"] if r["name"] == name)
        assert "OBSERVATORY_ALERTMANAGER_URL" in [w["url"] for w in rec["webhook_configs"]]


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
        slo = {"sloth_service": "notebooks", "sloth_slo": "scheduled-run-success", "category": "slo",
               "alertname": "ScheduledRunSuccessBudgetBurn"}
        alerts = [
            {**slo, "severity": "page", "sloth_severity": "page", "team": "data"},
            {**slo, "severity": "ticket", "sloth_severity": "ticket", "team": "data"},  # inhibited by the page
            {**slo, "severity": "ticket", "sloth_severity": "ticket", "team": "ml"},  # other team: delivered
            {"alertname": "NotebookSecretExposed", "severity": "page", "category": "security", "team": "data"},
        ]
        body = [{"labels": labels, "annotations": {"summary": labels["alertname"]},
                 "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat()} for labels in alerts]
        assert httpx.post(f"{am}/api/v2/alerts", json=body, timeout=5).status_code == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                sink.alerts("/oncall") and sink.alerts("/tickets") and sink.alerts("/security")
                and len(sink.alerts("/observatory")) >= 2):
            time.sleep(0.2)
        time.sleep(2)  # a wrongly routed or uninhibited notification would have arrived by now
        pages = sink.alerts("/oncall")
        assert {(a["labels"]["alertname"], a["labels"]["team"]) for a in pages} == {
            ("ScheduledRunSuccessBudgetBurn", "data")}
        tickets = sink.alerts("/tickets")
        assert {(a["labels"]["severity"], a["labels"]["team"]) for a in tickets} == {("ticket", "ml")}
        security = sink.alerts("/security")
        assert {a["labels"]["alertname"] for a in security} == {"NotebookSecretExposed"}
        counted = sink.alerts("/observatory")
        assert {a["labels"]["alertname"] for a in counted} == {"ScheduledRunSuccessBudgetBurn", "NotebookSecretExposed"}
        assert all(a["fingerprint"] and a["startsAt"] for a in counted)
        auth = {h.get("Authorization") for p, h in sink.headers if p == "/observatory"}
        assert auth == {"Bearer obs_test_token"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        sink.server.shutdown()
